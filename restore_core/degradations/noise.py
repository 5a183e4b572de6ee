"""Synthetic noise: pure functions on float32 images in [0, 1] (H x W x C or H x W).

* :func:`gaussian_noise` — additive white Gaussian noise of std ``sigma / 255``.
* :func:`poisson_gaussian_noise` — signal-dependent shot noise plus read noise:
  ``y = x + n``, ``n ~ N(0, a * x + b^2)`` (the heteroscedastic model of raw sensors).
* :func:`jpeg_noise` — JPEG compression artefacts at a given quality.
* :func:`camera_noise` — a camera's noise as it reaches a photograph: Poisson-Gaussian
  on the sensor's colour mosaic, then demosaicing, the sRGB tone curve and, at times,
  JPEG (correlated between neighbours, strongest in the shadows; not white).
* :func:`add_noise` — a random draw of one of them from :class:`NoiseConfig` ranges.

How much noise an image holds is read in :mod:`restore_core.degradations.noise_level`
(torch); this module is NumPy alone, so making noisy pairs needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np


def gaussian_noise(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``clean + N(0, (sigma/255)^2)``, clipped to [0, 1]; ``sigma`` on the 0-255 scale."""
    noisy = clean + rng.normal(0.0, sigma / 255.0, clean.shape).astype(np.float32)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def poisson_gaussian_noise(clean: np.ndarray, shot: float, read: float, rng: np.random.Generator) -> np.ndarray:
    """``clean + N(0, shot * clean + read^2)`` (shot and read on the [0, 1] scale)."""
    std = np.sqrt(np.maximum(shot * clean + read**2, 0.0))
    noisy = clean + rng.standard_normal(clean.shape).astype(np.float32) * std
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def jpeg_noise(clean: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at ``quality`` (1-100) and decode: blocking and ringing artefacts."""
    pixels = np.round(np.clip(clean, 0, 1) * 255).astype(np.uint8)
    if pixels.ndim == 3:
        pixels = pixels[..., ::-1]
    ok, buffer = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok
    decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if decoded.ndim == 3:
        decoded = decoded[..., ::-1]
    return decoded.astype(np.float32) / 255.0


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1's sRGB decoding curve, [0, 1] -> linear light in [0, 1]."""
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """sRGB's encoding curve, linear light -> [0, 1] (clipped first)."""
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055).astype(np.float32)


# OpenCV names a Bayer pattern by the colours of the second row's second and third
# pixels: a mosaic whose top-left 2 x 2 block is R G / G B is its "BayerBG". Keys: the
# colour (0 R, 1 G, 2 B) at (0, 0), (0, 1), (1, 0), (1, 1).
_BAYER_PATTERNS = {
    (0, 1, 1, 2): (cv2.COLOR_BayerBG2RGB, cv2.COLOR_BayerBG2RGB_EA),  # RGGB
    (2, 1, 1, 0): (cv2.COLOR_BayerRG2RGB, cv2.COLOR_BayerRG2RGB_EA),  # BGGR
    (1, 0, 2, 1): (cv2.COLOR_BayerGB2RGB, cv2.COLOR_BayerGB2RGB_EA),  # GRBG
    (1, 2, 0, 1): (cv2.COLOR_BayerGR2RGB, cv2.COLOR_BayerGR2RGB_EA),  # GBRG
}


def camera_noise(clean: np.ndarray, shot: float, read: float, rng: np.random.Generator, jpeg_quality: int | None = None,
                 pattern: tuple[int, int, int, int] = (0, 1, 1, 2), edge_aware: bool = True) -> np.ndarray:
    """A camera's noise on a clean sRGB photograph (H x W x 3 in [0, 1]): the
    photograph taken back to linear light, sampled through the colour filter ``pattern``
    (the colours at the top-left 2 x 2 block, 0 R, 1 G, 2 B: RGGB by default), given
    Poisson-Gaussian noise there, ``N(0, shot * x + read^2)`` on the sensor's [0, 1] scale
    (:func:`poisson_gaussian_noise`'s model), demosaiced by OpenCV (edge-aware or
    bilinear), encoded with the sRGB curve and, when ``jpeg_quality`` is given, through
    JPEG. Unlike white noise it is correlated between neighbouring pixels (demosaicing
    fills two thirds of the samples from their neighbours) and strongest in the shadows
    (the tone curve's slope). Grey images (H x W or H x W x 1) skip the mosaic: noise in
    linear light, then the curve."""
    grey = clean.ndim == 2 or clean.shape[2] == 1
    linear = srgb_to_linear(np.clip(clean, 0.0, 1.0))
    if grey:
        noisy = linear_to_srgb(poisson_gaussian_noise(linear, shot, read, rng))
    else:
        # An odd side gets its last row or column repeated (the mosaic tiles 2 x 2 blocks),
        # cut off again below.
        linear = np.pad(linear, ((0, clean.shape[0] % 2), (0, clean.shape[1] % 2), (0, 0)), mode="edge")
        height, width = linear.shape[:2]
        mosaic = np.empty((height, width), np.float32)
        for index, (row, col) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            mosaic[row::2, col::2] = linear[row::2, col::2, pattern[index]]
        mosaic = poisson_gaussian_noise(mosaic, shot, read, rng)
        bilinear, edge = _BAYER_PATTERNS[tuple(pattern)]
        demosaiced = cv2.demosaicing(np.round(mosaic * 65535).astype(np.uint16), edge if edge_aware else bilinear)
        noisy = linear_to_srgb(demosaiced.astype(np.float32) / 65535)[: clean.shape[0], : clean.shape[1]]
    if jpeg_quality is not None:
        noisy = jpeg_noise(noisy, jpeg_quality)
    return noisy.reshape(clean.shape).astype(np.float32)


NOISE_KINDS = ("gaussian", "poisson-gaussian", "jpeg", "camera")


@dataclass(frozen=True)
class NoiseConfig:
    """Ranges for :func:`add_noise`; ``kinds`` are drawn with equal probability."""

    kinds: tuple[str, ...] = ("gaussian",)
    sigma: tuple[float, float] = (5.0, 50.0)  # Gaussian, 0-255 scale (blind range)
    shot: tuple[float, float] = (0.001, 0.02)
    read: tuple[float, float] = (0.005, 0.05)
    jpeg_quality: tuple[int, int] = (20, 70)
    # camera: on the sensor's linear scale (a phone at base ISO to a dim room), JPEG on
    # this share of the images at a quality in camera_jpeg_quality
    camera_shot: tuple[float, float] = (0.0002, 0.01)
    camera_read: tuple[float, float] = (0.0005, 0.005)
    camera_jpeg_probability: float = 0.5
    camera_jpeg_quality: tuple[int, int] = (60, 95)

    # (lowest, highest) a field (each end of a range) may take; None: no bound
    LIMITS: ClassVar[dict] = {
        "sigma": (0, None), "shot": (0, None), "read": (0, None), "jpeg_quality": (0, 100), "camera_shot": (0, None),
        "camera_read": (0, None), "camera_jpeg_probability": (0, 1), "camera_jpeg_quality": (0, 100),
    }
    CHOICES: ClassVar[dict] = {"kinds": NOISE_KINDS}


def meant_on_the_unit_scale(low: float, high: float) -> str | None:
    """Gaussian levels ``low``-``high`` (0-255 scale) read as the 0-1 scale's, where every
    one lies between 0 and 1 (``0.1`` -> ``"25.5"``, ``0.02``-``0.2`` -> ``"[5.1, 51]"``):
    most likely what was meant, since on the 0-255 scale they are a fraction of one 8-bit
    step and add next to no noise. None where a level reaches 1 or all are 0."""
    if not 0 < high < 1:
        return None
    return f"{low * 255:.4g}" if low == high else f"[{low * 255:.4g}, {high * 255:.4g}]"


def scale_caution(config: NoiseConfig) -> str | None:
    """A caution for Gaussian levels of ``config`` that look given on the 0-1 scale
    (:func:`meant_on_the_unit_scale`; ``shot`` and ``read`` are on the 0-1 scale, ``sigma``
    is not). None otherwise."""
    low, high = config.sigma
    if "gaussian" not in config.kinds or (meant := meant_on_the_unit_scale(low, high)) is None:
        return None
    given = f"{low:g}" if low == high else f"{low:g}-{high:g}"
    return (f"noise sigma {given} is on the 0-255 scale of 8-bit samples, where it is a fraction of one step (next to no "
            f"noise); {given} on the 0-1 scale is sigma={meant}")


def add_noise(clean: np.ndarray, rng: np.random.Generator, config: NoiseConfig = NoiseConfig()) -> np.ndarray:
    kind = config.kinds[int(rng.integers(len(config.kinds)))]
    if kind == "gaussian":
        return gaussian_noise(clean, float(rng.uniform(*config.sigma)), rng)
    if kind == "poisson-gaussian":
        return poisson_gaussian_noise(clean, float(rng.uniform(*config.shot)), float(rng.uniform(*config.read)), rng)
    if kind == "jpeg":
        return jpeg_noise(clean, int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1)))
    if kind == "camera":
        shot, read = rng.uniform(*config.camera_shot), rng.uniform(*config.camera_read)
        quality = int(rng.integers(config.camera_jpeg_quality[0], config.camera_jpeg_quality[1] + 1))
        pattern = list(_BAYER_PATTERNS)[int(rng.integers(len(_BAYER_PATTERNS)))]
        return camera_noise(clean, float(shot), float(read), rng, quality if rng.random() < config.camera_jpeg_probability else None,
                            pattern, edge_aware=bool(rng.random() < 0.5))
    raise ValueError(f"unknown noise kind {kind!r}; use {', '.join(NOISE_KINDS)}")
