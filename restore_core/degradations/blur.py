"""Synthetic motion blur from random camera-shake trajectories.

A trajectory is a 2-D random walk with inertia (velocity that drifts, with
occasional jerks), in the spirit of Boracchi & Foi's camera-shake model; it is
rasterised with sub-pixel anti-aliasing into a kernel whose support is
``size`` x ``size`` and whose values sum to 1. Straight lines are the special
case ``curvature = 0``. :func:`blur_image` convolves with reflected borders and
adds Gaussian noise, as the McMaster_motion set of ../shared/data was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np


def trajectory(length: float, curvature: float, rng: np.random.Generator, steps: int = 256) -> np.ndarray:
    """(steps, 2) points (x, y) of a camera path of about ``length`` pixels.
    ``curvature`` in [0, 1]: 0 = straight line, 1 = strongly curved / jerky."""
    angle = rng.uniform(0, 2 * np.pi)
    velocity = np.array([np.cos(angle), np.sin(angle)])
    points = [np.zeros(2)]
    for _ in range(steps - 1):
        turn = rng.normal(0, 0.25 * curvature)
        c, s = np.cos(turn), np.sin(turn)
        velocity = np.array([c * velocity[0] - s * velocity[1], s * velocity[0] + c * velocity[1]])
        if rng.random() < 0.02 * curvature:  # an occasional jerk
            velocity = velocity + rng.normal(0, 0.8 * curvature, 2)
        velocity = velocity / max(np.linalg.norm(velocity), 1e-8)
        points.append(points[-1] + velocity)
    path = np.array(points)
    extent = np.linalg.norm(np.diff(path, axis=0), axis=1).sum()
    return (path - path.mean(axis=0)) * (length / max(extent, 1e-8))


def rasterise(path: np.ndarray, size: int, supersample: int = 4) -> np.ndarray:
    """Anti-aliased kernel of ``size`` x ``size`` (odd) from a centred path; sums to 1.
    The path is scaled down if it does not fit."""
    size = size | 1
    span = np.abs(path).max() * 2 + 1
    if span > size:
        path = path * (size - 1) / span
    big = np.zeros((size * supersample, size * supersample), np.float32)
    coords = (path + size / 2) * supersample
    for (x0, y0), (x1, y1) in zip(coords[:-1], coords[1:]):
        cv2.line(big, (int(x0 * 16), int(y0 * 16)), (int(x1 * 16), int(y1 * 16)), 1.0, thickness=supersample, lineType=cv2.LINE_AA, shift=4)
    kernel = big.reshape(size, supersample, size, supersample).sum(axis=(1, 3))
    total = kernel.sum()
    if total <= 0:
        kernel[size // 2, size // 2] = 1.0
        total = 1.0
    return (kernel / total).astype(np.float32)


def centre_kernel(kernel: np.ndarray) -> np.ndarray:
    """Shift a kernel so its centre of mass is the centre pixel (no image shift)."""
    size = kernel.shape[0]
    ys, xs = np.indices(kernel.shape)
    cy, cx = (kernel * ys).sum(), (kernel * xs).sum()
    shift = np.float32([[1, 0, size // 2 - cx], [0, 1, size // 2 - cy]])
    moved = cv2.warpAffine(kernel, shift, (size, size), flags=cv2.INTER_LINEAR)
    return moved / max(moved.sum(), 1e-8)


def motion_blur_kernel(rng: np.random.Generator, length: tuple[float, float] = (7, 31), curvature: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """A random camera-shake kernel."""
    size = int(length[1]) | 1
    path = trajectory(float(rng.uniform(*length)), float(rng.uniform(*curvature)), rng)
    return centre_kernel(rasterise(path, size))


def blur_image(clean: np.ndarray, kernel: np.ndarray, noise_sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``clean * kernel`` (reflected borders) + N(0, noise_sigma^2), clipped to [0, 1]."""
    blurred = cv2.filter2D(clean.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT)
    if noise_sigma > 0:
        blurred = blurred + rng.normal(0, noise_sigma, blurred.shape).astype(np.float32)
    return np.clip(blurred, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class BlurConfig:
    length: tuple[float, float] = (7.0, 31.0)
    curvature: tuple[float, float] = (0.0, 1.0)
    noise_sigma: tuple[float, float] = (0.0, 2.0 / 255)

    # (lowest, highest) a field (each end of a range) may take; None: no bound
    LIMITS: ClassVar[dict] = {"length": (0, None), "curvature": (0, None), "noise_sigma": (0, None)}


def add_motion_blur(clean: np.ndarray, rng: np.random.Generator, config: BlurConfig = BlurConfig()) -> np.ndarray:
    kernel = motion_blur_kernel(rng, config.length, config.curvature)
    return blur_image(clean, kernel, float(rng.uniform(*config.noise_sigma)), rng)
