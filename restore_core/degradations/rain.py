"""Synthetic rain: pure functions that turn a clean image into a rainy one.

The model follows the additive composite used to build Rain100L/H
(Yang et al., JORDER) with the heavy-rain extension of a haze veil::

    rainy = (1 - veil) * (clean + sum_l S_l + sheet) + veil * A        (then clipped to [0, 1])

Each streak layer ``S_l`` is made of sparse random seeds (``density``), thickened
by a Gaussian of ``width`` pixels, then smeared along a direction by a linear
motion-blur kernel of ``length`` pixels at ``angle`` degrees (the motion blur of
a falling drop during the exposure), normalised and scaled to ``brightness``.
Several layers with nearby angles and different lengths give the depth variety
of real rain. The optional ``sheet`` (:func:`rain_sheet`) is the soft, uneven lift of
dense rain close to the camera seen in the Photoshop-rendered sets of Fu et al. (DDN, and
the heavy images of SemiIRR): a smooth random field, brighter in some parts of the frame,
with a faint texture of wide streaks; unlike the veil it does not scale the image down.
All randomness comes from a ``numpy.random.Generator``.

Images are float32 arrays in [0, 1], H x W x C (RGB) or H x W.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import cv2
import numpy as np


@dataclass(frozen=True)
class StreakLayer:
    """Parameters of one layer of rain streaks."""

    density: float  # fraction of pixels that seed a streak
    length: float  # streak length in pixels (motion-blur kernel length)
    angle: float  # degrees from vertical; positive leans right
    width: float  # Gaussian sigma of the streak cross-section, pixels
    brightness: float  # peak added intensity of a streak, in [0, 1]


@dataclass(frozen=True)
class RainConfig:
    """Ranges from which :func:`sample_rain` draws a random rain scene."""

    layers: tuple[int, int] = (1, 3)
    density: tuple[float, float] = (0.002, 0.02)
    length: tuple[float, float] = (10.0, 50.0)
    angle: tuple[float, float] = (-35.0, 35.0)
    angle_spread: float = 8.0  # max deviation of extra layers from the main angle
    width: tuple[float, float] = (0.3, 1.6)
    brightness: tuple[float, float] = (0.25, 0.95)
    heavy_probability: float = 0.5  # chance of a Rain100H-like scene with a haze veil
    veil: tuple[float, float] = (0.05, 0.3)
    veil_light: tuple[float, float] = (0.7, 1.0)  # atmospheric light A (grey level)
    # Chance of a rain sheet (0 = never; then no random numbers are drawn for it).
    sheet_probability: float = 0.0
    sheet: tuple[float, float] = (0.05, 0.45)  # its peak added intensity
    sheet_scale: tuple[float, float] = (24.0, 96.0)  # pixels over which its strength changes

    # (lowest, highest) a field (each end of a range) may take; None: no bound
    LIMITS: ClassVar[dict] = {
        "layers": (0, None), "density": (0, 1), "length": (0, None), "angle_spread": (0, None), "width": (0, None),
        "brightness": (0, 1), "heavy_probability": (0, 1), "veil": (0, 1), "veil_light": (0, 1),
        "sheet_probability": (0, 1), "sheet": (0, 1), "sheet_scale": (1, None),
    }


@dataclass(frozen=True)
class RainScene:
    layers: tuple[StreakLayer, ...]
    veil: float
    veil_light: float
    sheet: float = 0.0  # peak added intensity of the rain sheet; 0 = none
    sheet_scale: float = 48.0
    sheet_angle: float = 0.0


def motion_kernel(length: float, angle: float, supersample: int = 4) -> np.ndarray:
    """A normalised linear motion-blur kernel: a segment of ``length`` pixels at ``angle``
    degrees from vertical through the kernel centre, one pixel wide, anti-aliased by
    ``supersample``-times supersampling. Point-symmetric, so it does not shift the image."""
    size = int(np.ceil(length)) | 1  # odd, so the centre is a pixel centre
    half = size // 2
    # Sub-pixel sample positions relative to the kernel centre.
    offsets = (np.arange(size * supersample) + 0.5) / supersample - size / 2
    yy, xx = np.meshgrid(offsets, offsets, indexing="ij")
    theta = np.deg2rad(angle)
    direction = np.array([np.cos(theta), np.sin(theta)])  # (dy, dx) along the streak
    along = yy * direction[0] + xx * direction[1]
    across = -yy * direction[1] + xx * direction[0]
    inside = (np.abs(along) <= length / 2) & (np.abs(across) <= 0.5)
    kernel = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3)).astype(np.float32)
    total = kernel.sum()
    if total <= 0:
        kernel[half, half] = 1.0
        total = 1.0
    return kernel / total


def streak_layer(height: int, width: int, layer: StreakLayer, rng: np.random.Generator) -> np.ndarray:
    """One H x W map of rain streaks with values in [0, ``layer.brightness``]."""
    seeds = (rng.random((height, width), dtype=np.float32) < layer.density).astype(np.float32)
    # Seeds of varied intensity make some drops fainter than others.
    seeds *= rng.uniform(0.4, 1.0, size=(height, width)).astype(np.float32)
    if layer.width > 0.3:
        seeds = cv2.GaussianBlur(seeds, (0, 0), layer.width)
    streaks = cv2.filter2D(seeds, -1, motion_kernel(layer.length, layer.angle), borderType=cv2.BORDER_REFLECT)
    peak = float(np.percentile(streaks, 99.9)) if streaks.any() else 0.0
    if peak <= 0:
        return np.zeros((height, width), np.float32)
    return np.clip(streaks / peak, 0.0, 1.0) * layer.brightness


def rain_sheet(height: int, width: int, strength: float, scale: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    """An H x W additive sheet of dense rain with values in [0, ``strength``].

    A random field on a grid of ``scale`` pixels across and three times that down (rain
    sheets are long), upsampled bicubically so the lift is smooth but uneven across the
    frame, between 30 % and 100 % of ``strength``; times a texture of wide streaks at
    ``angle`` (between 50 % and 100 %)."""
    step_y, step_x = 3 * scale, scale
    rows, cols = int(np.ceil(height / step_y)) + 3, int(np.ceil(width / step_x)) + 3
    coarse = rng.random((rows, cols), dtype=np.float32)
    field = cv2.resize(coarse, (int(cols * step_x), int(rows * step_y)), interpolation=cv2.INTER_CUBIC)
    top, left = int(rng.integers(0, int(step_y) + 1)), int(rng.integers(0, int(step_x) + 1))
    field = np.clip(field[top : top + height, left : left + width], 0.0, 1.0)
    streaks = StreakLayer(density=0.05, length=min(2 * scale, 160.0), angle=angle, width=2.5, brightness=1.0)
    texture = streak_layer(height, width, streaks, rng)
    return (strength * (0.3 + 0.7 * field) * (0.5 + 0.5 * texture)).astype(np.float32)


def sample_rain(config: RainConfig, rng: np.random.Generator) -> RainScene:
    """Draw a random :class:`RainScene` from the ranges of ``config``."""
    count = int(rng.integers(config.layers[0], config.layers[1] + 1))
    main_angle = rng.uniform(*config.angle)
    layers = []
    for i in range(count):
        angle = main_angle + (rng.uniform(-config.angle_spread, config.angle_spread) if i else 0.0)
        layers.append(
            StreakLayer(
                density=float(np.exp(rng.uniform(np.log(config.density[0]), np.log(config.density[1])))),
                length=float(rng.uniform(*config.length)),
                angle=float(angle),
                width=float(rng.uniform(*config.width)),
                brightness=float(rng.uniform(*config.brightness)),
            )
        )
    heavy = rng.random() < config.heavy_probability
    veil = float(rng.uniform(*config.veil)) if heavy else 0.0
    scene = RainScene(tuple(layers), veil, float(rng.uniform(*config.veil_light)))
    if config.sheet_probability > 0 and rng.random() < config.sheet_probability:
        sheet = float(rng.uniform(*config.sheet))
        scene = replace(scene, sheet=sheet, sheet_scale=float(rng.uniform(*config.sheet_scale)), sheet_angle=float(main_angle))
    return scene


def render_rain(clean: np.ndarray, scene: RainScene, rng: np.random.Generator) -> np.ndarray:
    """Composite ``scene`` over ``clean`` (float32 in [0, 1]); returns the rainy image."""
    height, width = clean.shape[:2]
    streaks = np.zeros((height, width), np.float32)
    for layer in scene.layers:
        streaks += streak_layer(height, width, layer, rng)
    if scene.sheet > 0:
        streaks += rain_sheet(height, width, scene.sheet, scene.sheet_scale, scene.sheet_angle, rng)
    if clean.ndim == 3:
        streaks = streaks[..., None]
    rainy = clean + streaks
    if scene.veil > 0:
        rainy = (1.0 - scene.veil) * rainy + scene.veil * scene.veil_light
    return np.clip(rainy, 0.0, 1.0).astype(np.float32)


def add_rain(clean: np.ndarray, rng: np.random.Generator, config: RainConfig = RainConfig()) -> np.ndarray:
    """Random rain on ``clean``: :func:`sample_rain` then :func:`render_rain`."""
    return render_rain(clean, sample_rain(config, rng), rng)
