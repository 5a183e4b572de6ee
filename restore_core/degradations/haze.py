"""Synthetic haze with the atmospheric scattering model (Koschmieder):

    I = J * t + A * (1 - t),    t = exp(-beta * d)

``J`` is the clean image, ``A`` the atmospheric light, ``beta`` the scattering
coefficient and ``d`` a depth map in [0, 1]. Real depth is not available for
arbitrary photos, so :func:`depth_proxy` draws a plausible one: a ground-plane
gradient (far at the top), a smooth random field, and an image-derived cue
(brighter, less saturated regions tend to be far), blended at random.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np


def smooth_field(height: int, width: int, rng: np.random.Generator, scale: int = 8) -> np.ndarray:
    """A smooth random field in [0, 1] (bicubic upsampling of coarse noise)."""
    coarse = rng.random((max(2, scale), max(2, scale))).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    field -= field.min()
    return field / max(float(field.max()), 1e-8)


def depth_proxy(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible H x W depth map in [0, 1] for ``clean`` (see module docstring)."""
    height, width = clean.shape[:2]
    rows = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None] * np.ones((1, width), np.float32)
    tilt = rng.uniform(-0.3, 0.3)
    ground = np.clip(rows + tilt * np.linspace(-1, 1, width, dtype=np.float32)[None, :], 0, 1)
    field = smooth_field(height, width, rng, scale=int(rng.integers(3, 9)))
    grey = clean.mean(axis=2) if clean.ndim == 3 else clean
    saturation = clean.max(axis=2) - clean.min(axis=2) if clean.ndim == 3 else np.zeros_like(grey)
    cue = cv2.GaussianBlur(np.clip(grey - saturation, 0, 1).astype(np.float32), (0, 0), max(height, width) / 30)
    weights = rng.dirichlet([2.0, 1.0, 1.0])
    depth = weights[0] * ground + weights[1] * field + weights[2] * cue
    depth -= depth.min()
    return (depth / max(float(depth.max()), 1e-8)).astype(np.float32)


def render_haze(clean: np.ndarray, depth: np.ndarray, beta: float, airlight: np.ndarray | float) -> np.ndarray:
    """``I = J t + A (1 - t)`` with ``t = exp(-beta d)``."""
    t = np.exp(-beta * depth).astype(np.float32)
    if clean.ndim == 3:
        t = t[..., None]
    hazy = clean * t + np.asarray(airlight, np.float32) * (1.0 - t)
    return np.clip(hazy, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class HazeConfig:
    """Ranges drawn per image. The proxy depth in [0, 1] is mapped to
    ``offset + span * depth``: a training patch is a crop of a larger scene and
    sees only part of its depth range, some of it far away. With the defaults
    the transmission ranges over about 0.1-1; the SOTS indoor test pairs, fitted
    with this model, have A of 0.99-1.0 and t of 0.5-0.95 (5th-95th percentile)."""

    beta: tuple[float, float] = (0.3, 1.8)
    airlight: tuple[float, float] = (0.7, 1.0)
    airlight_tint: float = 0.05  # max per-channel deviation of A
    depth_offset: tuple[float, float] = (0.0, 0.4)
    depth_span: tuple[float, float] = (0.2, 0.8)

    # (lowest, highest) a field (each end of a range) may take; None: no bound
    LIMITS: ClassVar[dict] = {"beta": (0, None), "airlight": (0, 1), "airlight_tint": (0, 1), "depth_offset": (0, None),
                              "depth_span": (0, None)}


def add_haze(clean: np.ndarray, rng: np.random.Generator, config: HazeConfig = HazeConfig()) -> np.ndarray:
    depth = rng.uniform(*config.depth_offset) + rng.uniform(*config.depth_span) * depth_proxy(clean, rng)
    level = rng.uniform(*config.airlight)
    airlight = level + (rng.uniform(-config.airlight_tint, config.airlight_tint, 3) if clean.ndim == 3 else 0.0)
    return render_haze(clean, depth, float(rng.uniform(*config.beta)), np.clip(airlight, 0, 1))
