"""Pure tensor functions for running a model on images of any size.

* :func:`pad_to_multiple` / :func:`run_padded`: reflect-pad so height and width
  are multiples of the model's size multiple, run, crop back.
* :func:`tile_spans` / :func:`blend_window` / :func:`run_tiled`: split a large
  image into overlapping tiles, run each, and blend the overlaps with a
  smooth window so seams do not show. Only one tile (plus the output
  accumulators) is resident at a time.
* :func:`run_whole_or_tiled`: the whole image, or tiles of half the size, a quarter,
  ... while the device runs out of memory (training's validation of large images).
* :func:`central_crop`: the probe a two-look model (``--sigma auto``) runs first.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

from restore_core.engine.memory import MIN_AUTO_TILE

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


def default_overlap(tile: int) -> int:
    """The overlap used when none is given: half the tile, at most 96 pixels.

    Deep U-Nets look far: the shipped derainer (version 3, which removes a veil of rain
    from the whole scene) moved PSNR by 0.145 dB on the bundled camera sample with
    256-pixel tiles and 32-pixel overlaps, 0.099 dB with 64 and 0.082 dB with 96."""
    return min(96, tile // 2)


# The side of the central crop a model that looks twice (restore denoise --sigma auto)
# restores first: big enough to hold its share of flat and textured areas, small enough
# that the first look adds little to a large photo (a 256 x 256 crop is 0.5 % of 12 MP).
PROBE_SIDE = 256


def central_crop(x: torch.Tensor, side: int = PROBE_SIDE) -> torch.Tensor:
    """The central ``side`` x ``side`` window of N x C x H x W ``x`` (the whole of a
    shorter side): a view, no copy."""
    height, width = x.shape[-2:]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return x[..., top : top + side, left : left + side]


def dense_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N x C x H x W) laid out channels_last with the strides such a tensor is
    made with: a copy unless it has them already.

    ``x.contiguous(memory_format=torch.channels_last)`` is not enough: an HWC image seen
    as a batch of one (``torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)``, no copy)
    counts as channels_last-contiguous to torch with a batch stride of 3 (a dimension of
    size 1 may have any stride), the strides flow on through the model's elementwise
    operations, and oneDNN copied each convolution's input to its own layout: 0.57 s of
    the shipped denoiser's 2.3 s on a 1280x720 photograph (1.65 s with this copy of its
    input, 3 ms) on this project's 2-core machine, whenever no padding had made a new tensor.
    """
    _, c, h, w = x.shape
    if x.stride() == (c * h * w, 1, w * c, c):
        return x
    return torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last).copy_(x)


def run_padded(model: Model, x: torch.Tensor, multiple: int) -> torch.Tensor:
    """``model(x)`` for any H x W: pad to ``multiple``, run, crop."""
    padded, (height, width) = pad_to_multiple(x, multiple)
    return model(padded)[..., :height, :width]


def tile_cautions(tile: int, overlap: int | None = None) -> list[str]:
    """What a chosen tile size (and overlap) costs, for the user: tiles under
    :data:`MIN_AUTO_TILE` see too little context and run slower, and an overlap over half
    the tile restores each pixel more than four times. Empty when ``tile`` is 0 (whole images)."""
    cautions = []
    if tile and tile < MIN_AUTO_TILE:
        cautions.append(f"--tile {tile}: tiles under {MIN_AUTO_TILE} pixels see too little around them (128-pixel tiles "
                        f"moved the shipped derainer's PSNR by up to 0.15 dB) and run slower; use {MIN_AUTO_TILE} or more")
    if tile and overlap and overlap > tile // 2:
        times = (tile / (tile - overlap)) ** 2
        cautions.append(f"--tile-overlap {overlap} of --tile {tile}: each pixel is restored about {times:.0f} times "
                        "(an overlap of half the tile or less keeps it at 4 or fewer)")
    return cautions


def tile_spans(length: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """``(start, end)`` of tiles covering ``[0, length)``.

    Starts are multiples of ``multiple``: a network that downsamples k times by 2 is
    shift-equivariant only by multiples of 2^k, so a tile must see the whole image's
    downsampling phase, or its output differs everywhere, not just at its borders.
    Neighbours share at least ``overlap`` pixels; tiles are ``tile`` long except the
    last, which ends at ``length`` (up to ``tile + multiple - 1`` long)."""
    if tile >= length:
        return [(0, length)]
    stride = max((tile - overlap) // multiple * multiple, multiple)
    last = (length - tile) // multiple * multiple
    starts = list(range(0, last, stride))
    return [(s, s + tile) for s in starts] + [(last, length)]


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

    Tiles are rounded up to ``multiple`` and start on multiples of it
    (:func:`tile_spans`); the last row and column of tiles end at the image border.
    The output is the weighted average of tile outputs (:func:`blend_window`).
    """
    height, width = x.shape[-2:]
    tile = max(multiple, -(-tile // multiple) * multiple)
    if tile >= height and tile >= width:
        return run_padded(model, x, multiple)
    output = None
    weight_sum = torch.zeros((1, 1, height, width), device=x.device, dtype=torch.float32)
    windows: dict[tuple[int, int], torch.Tensor] = {}  # by tile size: only the last row/column differ
    for top, bottom in tile_spans(height, tile, overlap, multiple):
        for left, right in tile_spans(width, tile, overlap, multiple):
            size = (bottom - top, right - left)
            if size not in windows:
                windows[size] = blend_window(*size, overlap, device=x.device)
            window = windows[size]
            restored = run_padded(model, x[..., top:bottom, left:right], multiple).float()
            if output is None:
                output = torch.zeros((x.shape[0], restored.shape[1], height, width), device=x.device, dtype=torch.float32)
            output[..., top:bottom, left:right] += restored * window
            weight_sum[..., top:bottom, left:right] += window
    assert output is not None
    return output.div_(weight_sum)  # in place: no second full-size buffer


MIN_OOM_TILE = 64  # the smallest tile an out-of-memory retry goes down to


def run_whole_or_tiled(model: Model, x: torch.Tensor, multiple: int) -> torch.Tensor:
    """``model`` over the whole of ``x``; out of memory (a GPU holding a training run's
    state beside it), again in tiles of half the longer side, then a quarter, ... down
    to :data:`MIN_OOM_TILE`, with the default overlap. A tiled result differs from the
    whole image's by less than 0.1 dB on the shipped models (tests/test_cli.py)."""
    tile = 0
    while True:
        try:
            return run_tiled(model, x, tile, default_overlap(tile), multiple) if tile else run_padded(model, x, multiple)
        except torch.OutOfMemoryError:
            tile = (tile or max(x.shape[-2:])) // 2
            tile -= tile % multiple
            if tile < max(MIN_OOM_TILE, multiple):
                raise
            if x.is_cuda:
                torch.cuda.empty_cache()
