"""Pure tensor functions for running a model on images of any size.

* :func:`pad_to_multiple` / :func:`run_padded`: reflect-pad so height and width
  are multiples of the model's size multiple, run, crop back.
* :func:`tile_starts` / :func:`blend_window` / :func:`run_tiled`: split a large
  image into overlapping tiles, run each, and blend the overlaps with a
  smooth window so seams do not show. Only one tile (plus the output
  accumulators) is resident at a time.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

Model = Callable[[torch.Tensor], torch.Tensor]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad N x C x H x W ``x`` at the bottom/right to multiples of ``multiple``.

    Returns the padded tensor and the original (H, W). Reflection needs the pad
    to be smaller than the image side; for tiny images replicate padding is used.
    """
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, (height, width)


def run_padded(model: Model, x: torch.Tensor, multiple: int) -> torch.Tensor:
    """``model(x)`` for any H x W: pad to ``multiple``, run, crop."""
    padded, (height, width) = pad_to_multiple(x, multiple)
    return model(padded)[..., :height, :width]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with at least
    ``overlap`` pixels shared between neighbours; the last tile ends at ``length``."""
    if tile >= length:
        return [0]
    stride = max(tile - overlap, 1)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def blend_window(height: int, width: int, overlap: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """A 1 x 1 x H x W weight that ramps linearly from ~0 to 1 over ``overlap`` pixels
    at every border, so overlapping tiles cross-fade. Never exactly zero, so an
    image border covered by a single tile keeps its full value after normalisation."""

    def ramp(n: int) -> torch.Tensor:
        w = torch.ones(n, device=device, dtype=dtype)
        r = min(overlap, n // 2)
        if r > 0:
            edge = (torch.arange(r, device=device, dtype=dtype) + 1) / (r + 1)
            w[:r] = edge
            w[n - r :] = edge.flip(0)
        return w

    return (ramp(height)[:, None] * ramp(width)[None, :])[None, None]


def run_tiled(model: Model, x: torch.Tensor, tile: int, overlap: int, multiple: int) -> torch.Tensor:
    """Run ``model`` over ``x`` (N x C x H x W) in overlapping ``tile``-sized tiles.

    Tiles are rounded up to ``multiple``; edge tiles are shifted inwards (never
    padded) when the image is large enough, so every tile sees real pixels.
    The output is the weighted average of tile outputs (:func:`blend_window`).
    """
    height, width = x.shape[-2:]
    tile = max(multiple, -(-tile // multiple) * multiple)
    if tile >= height and tile >= width:
        return run_padded(model, x, multiple)
    tile_h, tile_w = min(tile, height), min(tile, width)
    output = None
    weight_sum = torch.zeros((1, 1, height, width), device=x.device, dtype=torch.float32)
    window = blend_window(tile_h, tile_w, overlap, device=x.device)  # every tile has this size
    for top in tile_starts(height, tile_h, overlap):
        for left in tile_starts(width, tile_w, overlap):
            patch = x[..., top : top + tile_h, left : left + tile_w]
            restored = run_padded(model, patch, multiple).float()
            if output is None:
                output = torch.zeros((x.shape[0], restored.shape[1], height, width), device=x.device, dtype=torch.float32)
            output[..., top : top + tile_h, left : left + tile_w] += restored * window
            weight_sum[..., top : top + tile_h, left : left + tile_w] += window
    assert output is not None
    return output.div_(weight_sum)  # in place: no second full-size buffer
