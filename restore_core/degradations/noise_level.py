"""How much noise an image holds, on the 0-255 scale, for N x C x H x W batches in [0, 1]
(torch): what a non-blind denoiser is told, in training and at ``restore denoise``.

* :func:`measured_noise_level` — the level a noisy/clean pair shows (what a
  non-blind denoiser is told in training).
* :func:`estimate_noise_level` — the level of a noisy image alone (the first look of
  ``restore denoise --sigma auto``, and all of ``--sigma quick``).
* :func:`residual_noise_level` — the level read off what a denoiser removed, through
  the denoiser's calibration table (the second look of ``--sigma auto``).
* :func:`first_looks`, :func:`level_for_correlated_noise` — the first look at full and
  half resolution, of the image and of its colour, and the level to tell for noise that
  is correlated between neighbouring pixels (a camera's, demosaiced), which both looks
  read low.

The noise itself is drawn in :mod:`restore_core.degradations.noise`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


def measured_noise_level(degraded: torch.Tensor, clean: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    """Noise level of each pair in a batch (N x C x H x W in [0, 1]) on the 0-255 scale:
    ``255 * std(degraded - clean)`` over the pixels whose clean value lies in
    ``(margin, 1 - margin)``, where clipping to [0, 1] hardly cuts the noise (all pixels
    when fewer than 5 % qualify). Measured, not recorded, so it serves real noisy pairs
    too. On 128x128 photo patches with Gaussian noise it reads, on average, 1.00 x sigma
    at sigma 5, 0.98 x at 25 and 0.92 x at 50 (clipping still shows there)."""
    residual = (degraded - clean).flatten(1).float()
    mid = ((clean > margin) & (clean < 1 - margin)).flatten(1)
    mid = torch.where(mid.float().mean(dim=1, keepdim=True) >= 0.05, mid, torch.ones_like(mid))
    count = mid.sum(dim=1).clamp(min=2)
    mean = (residual * mid).sum(dim=1) / count
    variance = (((residual - mean[:, None]) * mid) ** 2).sum(dim=1) / (count - 1)
    return 255.0 * variance.sqrt()


# Median absolute deviation of Gaussian noise / its standard deviation (Phi^-1(0.75)).
MAD_TO_SIGMA = 0.6745
# Block size (in diagonal-detail coefficients, so 2x that in pixels), the quantile of the
# block estimates that is kept, and that quantile's ratio to sigma on pure Gaussian noise:
# the 10 % quantile of the (lower) medians of 64 |N(0, s^2)| samples, / 0.6745, is 0.805 x s
# (measured on 4 x 262,144 blocks; tests/test_degradations.py checks it on pure noise).
NOISE_BLOCK = 8
NOISE_BLOCK_QUANTILE = 0.10
NOISE_BLOCK_QUANTILE_TO_SIGMA = 0.805
# Blocks with more of their pixels at 0 or 255 than this are left out.
MAX_CLIPPED_FRACTION = 0.02
# A block estimate needs this many blocks to be worth more than the global median.
MIN_NOISE_BLOCKS = 16


def _diagonal_detail(x: torch.Tensor) -> torch.Tensor:
    """The finest diagonal Haar wavelet coefficients ``(a - b - c + d) / 2`` of every 2x2
    block (N x C x H/2 x W/2); for white noise of std s they are N(0, s^2)."""
    return (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2


def estimate_noise_level(images: torch.Tensor) -> torch.Tensor:
    """Noise level of each image of an N x C x H x W batch in [0, 1], on the 0-255 scale,
    from the image alone. Donoho & Johnstone (1994) read white noise's sigma off the
    finest diagonal Haar detail, ``median |HH| / 0.6745``; over a whole photograph texture
    adds to that median (light noise reads high) and clipped, saturated areas take from
    it (heavy noise reads low). So the estimate is made per block of 8 x 8 coefficients
    (16 x 16 pixels), blocks with over 2 % clipped pixels (0 or 255) are dropped, and the
    10 % quantile of the block estimates, divided by its value on pure noise (0.805),
    is the channel's level: the flattest unclipped tenth of the image speaks for the noise.
    Averaged over channels. On the first 16 CBSD68 images with the benchmark's noise it
    reads 1.5 on the clean images, 6.0 at sigma 5, 15.8 at 15, 25.7 at 25 and 47.4 at 50
    (the whole-image median read 3.0, 6.7, 15.7, 24.6 and 44.7); ``restore denoise`` in its
    default ``--sigma auto`` gained 0.4 dB on clean photos and 0.2 dB at sigma 5 by it.
    Images with fewer than 16 unclipped blocks (under about 64 x 64 pixels) get the
    whole-image median. NaN (unknown) for images under 2 x 2 pixels. It takes 0.9-1.2 s
    for a 12-megapixel image on one (busy) CPU thread."""
    x = images.float()
    height, width = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    if height == 0 or width == 0:
        return x.new_full((x.shape[0],), float("nan"))
    x = x[..., :height, :width]
    detail = _diagonal_detail(x).abs()
    whole_median = lambda: detail.flatten(2).median(dim=2).values / MAD_TO_SIGMA  # noqa: E731  (N x C)

    b = NOISE_BLOCK
    rows, cols = detail.shape[-2] // b, detail.shape[-1] // b
    if rows * cols < MIN_NOISE_BLOCKS:
        return 255.0 * whole_median().mean(dim=1)
    n, c = x.shape[:2]
    blocks = detail[..., : rows * b, : cols * b].reshape(n, c, rows, b, cols, b).transpose(3, 4)
    block_estimate = blocks.reshape(n, c, rows * cols, b * b).median(dim=-1).values / MAD_TO_SIGMA
    clipped = ((x - 0.5).abs_() >= 0.5 - 0.5 / 255).float()  # at 0 or 255
    clipped = torch.nn.functional.avg_pool2d(clipped.flatten(0, 1)[:, None], kernel_size=2 * b)
    clipped = clipped.reshape(n, c, rows * cols) > MAX_CLIPPED_FRACTION
    kept = block_estimate.masked_fill(clipped, float("nan"))
    level = torch.nanquantile(kept, NOISE_BLOCK_QUANTILE, dim=-1) / NOISE_BLOCK_QUANTILE_TO_SIGMA
    enough = (~clipped).sum(dim=-1) >= MIN_NOISE_BLOCKS
    if not enough.all():
        level = torch.where(enough, level, whole_median())
    return 255.0 * level.mean(dim=1)


def calibrated_noise_level(residual_level: torch.Tensor, calibration: Sequence[tuple[float, float]]) -> torch.Tensor:
    """Map the level a denoiser's residual shows to the level of its input, through the
    denoiser's calibration table: pairs ``(residual level, input level)`` measured on
    synthetic noise (:func:`restore_core.training.calibration.measure_noise_calibration`),
    sorted by residual level. Piecewise linear between pairs; below the first pair, its
    input level (residuals that small are quantisation and removed texture, not noise);
    above the last, proportional to the last pair's ratio."""
    if not calibration:
        raise ValueError("an empty calibration table")
    residual_points, input_points = zip(*sorted(calibration))
    r = residual_level.detach().double().cpu().numpy()
    level = np.interp(r, residual_points, input_points)  # the first pair's level below it
    beyond = r > residual_points[-1]
    level[beyond] = r[beyond] * input_points[-1] / max(residual_points[-1], 1e-6)
    return torch.from_numpy(np.maximum(level, 0.0)).to(residual_level)


def residual_noise_level(noisy: torch.Tensor, denoised: torch.Tensor, calibration: Sequence[tuple[float, float]]) -> torch.Tensor:
    """Noise level of each noisy image (N x C x H x W in [0, 1], 0-255 scale) from what a
    denoiser took out of it: :func:`measured_noise_level` of the pair (noisy, denoised),
    which reads a few percent under the truth (the denoiser leaves some noise in), mapped
    through that denoiser's calibration table (:func:`calibrated_noise_level`). A
    denoiser is a far better judge of what is noise than a wavelet band: on the 68
    BSD68_sigma25 images, from the shipped grey model's output for their central 256 x 256
    crops, the error against the true level was -0.27 +- 0.94 (the one-look
    :func:`estimate_noise_level`: +1.01 +- 1.37); on textured photographs (grass,
    gravel) 1.1 against 3.1 on average."""
    return calibrated_noise_level(measured_noise_level(noisy, denoised.to(noisy.dtype)), calibration)


# A camera's noise, demosaiced, is correlated between neighbouring pixels, in colour as
# in brightness. White noise's colour reads alike at full and half resolution; a camera's
# reads over 1.8x higher at half (1.8-4.2 on the photographs the ramps were set on) ...
CORRELATED_CHROMA_RATIO_RAMP = (1.5, 2.0)
# ... and its colour at half resolution reads at least this much (0-255 scale), which a
# clean photograph's colour does not (0-2.6, mostly under 1.5): texture is mostly brightness.
CORRELATED_CHROMA_LEVEL_RAMP = (2.0, 3.5)
# ... while the image itself reads at least this much higher at half resolution too
# (2.25-4.2 on those developments; under 1.2 for white noise of level 15-40 saved as a
# 4:2:0 JPEG, whose colour at full resolution is gone and so reads "correlated").
CORRELATED_RATIO_RAMP = (1.4, 1.8)
# A denoiser that learnt white noise removes a demosaiced noise of standard deviation s
# best told about 2 s: the factor restore_core.io.camera_raw measured on developed raw
# files (TOLD_PER_DEVELOPED_STD), and here too (best level / 2 x the coarse look: 0.8-1.5).
TOLD_PER_CORRELATED_STD = 2.0


@dataclass(frozen=True)
class FirstLooks:
    """What the first look of ``--sigma auto`` reads off each image of a batch (each a
    tensor of N levels, 0-255 scale, NaN where the image is too small):
    :func:`estimate_noise_level` of the image (``fine``) and of its 2 x 2 averages, times
    2 (``coarse``: white noise of level s reads s there too, the mean of four samples
    having deviation s / 2; noise correlated between neighbours reads higher, up to its
    full per-pixel deviation, since the finest diagonal detail holds little of it), and
    the same two of its colour, ``(R - G) / 2`` and ``(B - G) / 2``."""

    fine: torch.Tensor
    coarse: torch.Tensor
    chroma_fine: torch.Tensor
    chroma_coarse: torch.Tensor


def _half_resolution_level(images: torch.Tensor) -> torch.Tensor:
    """:func:`estimate_noise_level` of the 2 x 2 averages, times 2 (NaN under 4 x 4 pixels)."""
    if min(images.shape[-2:]) < 4:
        return images.new_full((images.shape[0],), float("nan"))
    return 2.0 * estimate_noise_level(torch.nn.functional.avg_pool2d(images, 2))


def first_looks(images: torch.Tensor) -> FirstLooks:
    """:class:`FirstLooks` of an N x C x H x W batch in [0, 1] (grey images, C = 1 or
    three equal channels, have no colour: their colour looks read 0)."""
    x = images.float()
    if x.shape[1] == 3:
        chroma = torch.cat([x[:, :1] - x[:, 1:2], x[:, 2:] - x[:, 1:2]], dim=1) / 2 + 0.5
    else:
        chroma = torch.full_like(x[:, :1], 0.5)
    return FirstLooks(estimate_noise_level(x), _half_resolution_level(x), estimate_noise_level(chroma), _half_resolution_level(chroma))


def correlated_noise_weight(looks: FirstLooks) -> torch.Tensor:
    """How sure the first looks are that each image's noise is a camera's, correlated
    between neighbouring pixels, 0-1: the product of ramps on the colour's coarse look
    over its fine look (:data:`CORRELATED_CHROMA_RATIO_RAMP`), on the colour's coarse
    look itself (:data:`CORRELATED_CHROMA_LEVEL_RAMP`) and on the image's coarse look
    over its fine look (:data:`CORRELATED_RATIO_RAMP`). Read mainly on colour, not
    brightness: a textured photograph's brightness reads 2-4x higher at half resolution
    too, its colour far less. 0 where a look is unknown (NaN)."""

    def ramp(value: torch.Tensor, low_high: tuple[float, float]) -> torch.Tensor:
        low, high = low_high
        return ((value - low) / (high - low)).clamp(0, 1)

    weight = (
        ramp(looks.chroma_coarse / looks.chroma_fine.clamp(min=0.3), CORRELATED_CHROMA_RATIO_RAMP)
        * ramp(looks.chroma_coarse, CORRELATED_CHROMA_LEVEL_RAMP)
        * ramp(looks.coarse / looks.fine.clamp(min=0.5), CORRELATED_RATIO_RAMP)
    )
    return torch.nan_to_num(weight, nan=0.0)


def level_for_correlated_noise(level: torch.Tensor, looks: FirstLooks) -> torch.Tensor:
    """The level to tell a denoiser trained on white noise: ``level`` (either look's
    estimate) raised towards :data:`TOLD_PER_CORRELATED_STD` times the coarse look, by
    :func:`correlated_noise_weight`: ``level + w * max(0, 2 * coarse - level)``; just
    ``level`` for white noise and clean photographs (w = 0). Both looks read a camera's
    demosaiced noise far too low: on 14 photographs developed from raw files with
    Poisson-Gaussian noise (gain 0.006), the second look read 7.8 on average where 30.4
    restored best; told this instead (32.6), 28.48 dB against 26.71. The ramps were
    set on those 14 (at 4 Poisson-Gaussian and 4 Gaussian sensor noises, white noise
    5-40, clean); on 7 other photographs, +0.07 to +2.74 dB at 6 sensor noises, +0.21 and
    +3.29 on 5 enlarged 3x, the same pixels at white noise 5-25, -0.06 clean (README)."""
    weight = correlated_noise_weight(looks).to(level)
    raised = level + weight * (TOLD_PER_CORRELATED_STD * looks.coarse.to(level) - level).clamp(min=0)
    return torch.where(torch.isnan(raised), level, raised)
