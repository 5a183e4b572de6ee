"""Geometric self-ensemble: average a model over the 8 symmetries of the square.

The "+" models of EDSR (Lim et al., 2017) and the ``x8`` test mode of BasicSR and
KAIR: for each of the 8 dihedral transforms T_k (4 rotations, each with and
without a flip), restore T_k(y) and map the result back,

    x̂ = (1/8) Σ_k T_k⁻¹( f(T_k(y)) ).

A network trained with random flips and rotations makes slightly different
errors on each view, so the mean is a little better (typically 0.1-0.3 dB) at 8x
the compute. Degradations with a direction (rain streaks, motion blur) are
rotated with the image, so the model sees the same problem in every view.
"""

from __future__ import annotations

from typing import Callable

import torch

Model = Callable[[torch.Tensor], torch.Tensor]
TRANSFORMS = 8
ALL = tuple(range(TRANSFORMS))
# The 4 transforms that keep the image's axes: identity, half turn, left-right and
# up-down flips. Rain falls down: a model that only ever saw near-vertical streaks
# meets sideways rain in a quarter-turned view.
AXIS_PRESERVING = (0, 2, 4, 6)
# Identity and the left-right mirror: haze thickens with distance, which in most
# photographs grows upwards; upside-down views are outside what dehazing models learn.
LEFT_RIGHT = (0, 4)

# The views each task's models are given, chosen by measurement on the embedded sets
# (shipped models, PSNR Y, none vs this choice vs all 8): derain 22.63 / 22.74 / 20.99
# (quarter turns make the streaks horizontal), deblur (held-out blur) 25.93 / 26.01,
# denoise 29.79 / 30.01, dehaze 25.05 / 25.04 / 23.55 (up-down flips invert the haze).
TRANSFORMS_FOR_TASK: dict[str, tuple[int, ...]] = {
    "derain": AXIS_PRESERVING,
    "deblur": ALL,
    "denoise": ALL,
    "dehaze": LEFT_RIGHT,
    "auto": LEFT_RIGHT,  # the image may be hazy
}
# Which of a task's views to keep when fewer are asked for (--ensemble-views): identity,
# the mirror, the half turn, the upside-down mirror, then the quarter turns. Four views
# of the shipped denoiser on CBSD68 (float protocol) gave 30.761 dB, eight 30.782, one 30.666.
VIEW_PREFERENCE = (0, 4, 2, 6, 1, 5, 3, 7)


def views_for_task(task: str, count: int | None = None) -> tuple[int, ...]:
    """The views ``--self-ensemble`` averages for ``task``: all of the task's views, or
    the first ``count`` of them in :data:`VIEW_PREFERENCE` order (sorted)."""
    if task not in TRANSFORMS_FOR_TASK:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TRANSFORMS_FOR_TASK)}")
    allowed = TRANSFORMS_FOR_TASK[task]
    if count is None:
        return allowed
    if not 1 <= count <= len(allowed):
        raise ValueError(f"--ensemble-views: {task} models take 1 to {len(allowed)} views, got {count}")
    return tuple(sorted([view for view in VIEW_PREFERENCE if view in allowed][:count]))


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """T_k of an N x C x H x W tensor: rotate by ``k % 4`` quarter turns, then flip
    left-right when ``k >= 4``. Odd ``k % 4`` swaps height and width."""
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return y.flip(-1) if k >= 4 else y


def inverse_dihedral(y: torch.Tensor, k: int) -> torch.Tensor:
    """T_k⁻¹: undo the flip, then the rotation."""
    if k >= 4:
        y = y.flip(-1)
    return torch.rot90(y, -(k % 4), dims=(-2, -1))


def self_ensemble(model: Model, x: torch.Tensor, transforms: tuple[int, ...] = ALL) -> torch.Tensor:
    """Mean of ``T_k⁻¹(model(T_k(x)))`` over ``transforms``, accumulated in float32.

    The caller pads ``x`` to the model's size multiple on both sides first (a
    quarter turn swaps them)."""
    total: torch.Tensor | None = None
    for k in transforms:
        view = inverse_dihedral(model(dihedral(x, k)), k).float()
        # The first view is copied: a model may return (a view of) its input.
        total = view.clone() if total is None else total.add_(view)
    assert total is not None
    return total.div_(len(transforms))
