"""A camera sensor's noise, read off a raw file's colour mosaic before development.

Raw samples carry Poisson-Gaussian noise (Foi et al., "Practical Poissonian-Gaussian
noise modeling and fitting for single-image raw-data", IEEE TIP 2008, Eq. 2-3): a
sample whose clean value is ``x`` (in [0, 1] of the white level, black subtracted)
varies with

    var(x) = gain * x + floor

(``gain``: photon shot noise through the sensor's conversion gain; ``floor``: read
noise). On the mosaic the noise is white, so Donoho and Johnstone's estimator applies
there as on a photograph (:func:`restore_core.degradations.noise_level.estimate_noise_level`),
per colour plane and per brightness: the fit below is Foi's, simplified (blocks binned
by their mean, the flattest fifth of each bin speaking for its variance, a straight
line through the bins). After demosaicing, white balance, the colour matrix and the
tone curve the same noise is correlated, coloured and strongest in the shadows; how
strong it is there is best measured by developing the file once more with one more
draw of this noise (:mod:`restore_core.io.camera_raw`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from restore_core.degradations.noise_level import MAD_TO_SIGMA

BLOCK = 8  # Haar coefficients a side per block (16 x 16 samples of one colour plane)
BRIGHTNESS_BINS = 10
FLATTEST_SHARE = 0.2  # of each bin's blocks: texture only adds to a block's estimate
MIN_BLOCKS_PER_BIN = 8
# Blocks this close to black or to the white level are left out: clipping there shrinks the noise.
DARKEST, BRIGHTEST = 0.002, 0.9


@dataclass(frozen=True)
class SensorNoise:
    """``var = gain * x + floor`` for a raw sample of clean value ``x`` in [0, 1]."""

    gain: float
    floor: float

    def std(self, x: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(self.gain * np.clip(x, 0.0, 1.0) + self.floor, 0.0))


def estimate_sensor_noise(mosaic: np.ndarray) -> SensorNoise | None:
    """The noise model of a 2 x 2 colour-filter mosaic (Bayer: RGGB, BGGR, GRBG, GBRG),
    ``mosaic`` H x W float in [0, 1] of the white level, black subtracted. None when the
    image is too small or too uniform to fit (fewer than two brightness bins).

    Each of the four colour planes (every other sample in both directions) is cut into
    2 x 2 cells; a cell's diagonal Haar detail ``(a - b - c + d) / 2`` keeps the noise's
    variance and cancels any plane or gradient, its mean ``(a + b + c + d) / 4`` is the
    brightness. Per block of 8 x 8 cells the noise's standard deviation is ``median |HH|
    / 0.6745``; the blocks are binned by brightness into 10 equal-count bins, the 20th
    percentile of each bin's variances taken, and ``gain`` and ``floor`` fitted to them by
    least squares (each kept >= 0). On the McMaster and CBSD68 photographs made into
    mosaics with known noise it read gain 0.0121 for 0.015, 0.0059 for 0.006 and 0.0029
    for 0.002 (texture reads as noise when there is little of it), and floor 3.6e-4 for
    4e-4 of Gaussian noise alone (session 37)."""
    height, width = mosaic.shape[0] // 4 * 4, mosaic.shape[1] // 4 * 4
    if height < 4 * BLOCK or width < 4 * BLOCK:
        return None
    means, variances = [], []
    for dy in (0, 1):
        for dx in (0, 1):
            plane = mosaic[dy:height:2, dx:width:2].astype(np.float32)
            a, b, c, d = plane[0::2, 0::2], plane[0::2, 1::2], plane[1::2, 0::2], plane[1::2, 1::2]
            detail, level = (a - b - c + d) / 2, (a + b + c + d) / 4
            rows, cols = detail.shape[0] // BLOCK, detail.shape[1] // BLOCK
            as_blocks = lambda cells: cells[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK).swapaxes(1, 2).reshape(rows * cols, -1)  # noqa: E731
            means.append(as_blocks(level).mean(axis=1))
            variances.append((np.median(np.abs(as_blocks(detail)), axis=1) / MAD_TO_SIGMA) ** 2)
    mean, variance = np.concatenate(means), np.concatenate(variances)
    kept = (mean > DARKEST) & (mean < BRIGHTEST)
    mean, variance = mean[kept], variance[kept]
    if mean.size < 2 * MIN_BLOCKS_PER_BIN:
        return None
    edges = np.quantile(mean, np.linspace(0.0, 1.0, BRIGHTNESS_BINS + 1))
    bin_mean, bin_variance = [], []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (mean >= low) & (mean <= high)
        if inside.sum() >= MIN_BLOCKS_PER_BIN:
            bin_mean.append(float(np.median(mean[inside])))
            bin_variance.append(float(np.quantile(variance[inside], FLATTEST_SHARE)))
    if len(bin_mean) < 2:
        return None
    return _fit_line(np.array(bin_mean), np.array(bin_variance))


def _fit_line(x: np.ndarray, variance: np.ndarray) -> SensorNoise:
    """Least-squares ``variance = gain * x + floor`` with both terms >= 0."""
    (gain, floor), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], axis=1), variance, rcond=None)
    if floor < 0:
        gain, floor = max(0.0, float((x * variance).sum() / (x * x).sum())), 0.0
    elif gain < 0:
        gain, floor = 0.0, float(variance.mean())
    return SensorNoise(float(gain), float(floor))


def draw_sensor_noise(mosaic: np.ndarray, noise: SensorNoise, seed: int = 0) -> np.ndarray:
    """One draw of ``noise`` for the samples of ``mosaic`` (float32, same shape), its
    variance taken at each sample's own value (the clean one is not known; at the noise
    levels of photographs the difference is small)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(mosaic.shape, dtype=np.float32) * noise.std(mosaic).astype(np.float32)
