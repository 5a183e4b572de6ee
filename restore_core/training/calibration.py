"""Noise-level calibration of a denoiser with a noise-level input.

``restore denoise --sigma auto`` looks twice: a first estimate from the image alone
(:func:`~restore_core.degradations.noise_level.estimate_noise_level`), then the level the
model removes from a central crop told that estimate
(:func:`~restore_core.degradations.noise_level.residual_noise_level`). A denoiser leaves a
little of the noise in (more of it at light noise), so the removed level reads a few
percent under the truth, by an amount that belongs to each model. This module measures
that: it noises clean images at known levels, runs exactly the first look the engine
runs, and records ``(mean residual level, mean true level)`` per level. The table
travels in the checkpoint's config (``noise_calibration``); the trainer measures it at
the end of every run of such a model, and ``restore train --calibrate`` measures it for
an existing checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from restore_core.checkpoint import load_checkpoint, update_config
from restore_core.degradations.noise import gaussian_noise
from restore_core.degradations.noise_level import estimate_noise_level, measured_noise_level
from restore_core.engine.tiling import central_crop, run_padded
from restore_core.training.data import is_grey

# Levels (0-255 scale) the table is measured at: the blind range 5-50 and its edges.
CALIBRATION_LEVELS = (0.0, 2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0)
# Clean images used at most (each is noised at every level): 24 x 10 first looks.
MAX_CALIBRATION_IMAGES = 24
# Smaller images are not used: the first look reads the level in 16x16 blocks. Central
# crops of 12 BSD68 images, infoflow-denoise-grey, levels 5/15/25/50: 16x16 crops gave a
# table within 1.7 of the whole images' (residual 42.3 against 44.0 at 50), 8x8 crops
# one up to 8.7 off (35.3).
MIN_CALIBRATION_SIDE = 16


def large_enough(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The images whose both sides are at least :data:`MIN_CALIBRATION_SIDE` pixels."""
    return [image for image in images if min(image.shape[:2]) >= MIN_CALIBRATION_SIDE]


def _noisy_8bit(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise as the benchmarks' files hold it: clipped, rounded to 8 bits, and one
    noise field for all three channels of a grey image (stored grey, it has one)."""
    grey = is_grey(clean)
    noisy = np.round(gaussian_noise(clean[..., :1] if grey else clean, sigma, rng) * 255.0) / 255.0
    return np.repeat(noisy, 3, axis=2) if grey else noisy


def evenly_spread(images: Sequence[np.ndarray], count: int = MAX_CALIBRATION_IMAGES) -> list[np.ndarray]:
    """Up to ``count`` of ``images``, evenly spread over the sequence (first and last kept)."""
    if len(images) <= count:
        return list(images)
    return [images[int(i)] for i in np.linspace(0, len(images) - 1, num=count).round()]


@torch.no_grad()
def measure_noise_calibration(
    model: nn.Module,
    clean_images: Sequence[np.ndarray],
    levels: Sequence[float] = CALIBRATION_LEVELS,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[tuple[float, float], ...]:
    """``(residual level, input level)`` pairs for ``model`` (a denoiser with a
    noise-level input): for each level, every clean image (H x W x 3 float32 in [0, 1])
    is noised with 8-bit Gaussian noise, the model is told the first look's estimate of
    the whole image and restores its central crop, as the engine does; the pair is the
    mean level the model removed there (:func:`measured_noise_level` of noisy and
    restored) and the mean level truly there (of noisy and clean). Sorted, with any pair
    that does not raise the residual level dropped, so the table is a function."""
    if not getattr(model, "takes_noise_level", False):
        raise ValueError("only a model with a noise-level input (model.noise_level = true) can be calibrated")
    if not clean_images:
        raise ValueError("no clean images to calibrate on")
    usable = large_enough(clean_images)
    if not usable:
        raise ValueError(f"no clean image of at least {MIN_CALIBRATION_SIDE}x{MIN_CALIBRATION_SIDE} pixels to calibrate on "
                         f"({len(clean_images)} smaller)")
    clean_images = usable
    rng = np.random.default_rng(seed)
    multiple = int(getattr(model, "size_multiple", 1))
    was_training = model.training
    model.eval()
    pairs = []
    try:
        for level in levels:
            removed, present = [], []
            for clean in clean_images[:MAX_CALIBRATION_IMAGES]:
                noisy = torch.from_numpy(_noisy_8bit(clean, level, rng)).permute(2, 0, 1)[None].to(device)
                target = torch.from_numpy(np.ascontiguousarray(clean)).permute(2, 0, 1)[None].to(device)
                first_look = estimate_noise_level(noisy)
                probe = central_crop(noisy)
                restored = run_padded(lambda x: model(x, noise_level=first_look), probe, multiple).clamp(0, 1)
                removed.append(float(measured_noise_level(probe, restored)[0]))
                present.append(float(measured_noise_level(probe, central_crop(target))[0]))
            pairs.append((round(float(np.mean(removed)), 4), round(float(np.mean(present)), 4)))
    finally:
        model.train(was_training)
    table: list[tuple[float, float]] = []
    for residual, level in sorted(pairs):
        if not table or (residual > table[-1][0] and level >= table[-1][1]):
            table.append((residual, level))
    return tuple(table)


def calibrate_checkpoint(path: Path, clean_images: Sequence[np.ndarray], out: Path | None = None, device: torch.device | str = "cpu") -> tuple[tuple[float, float], ...]:
    """Measure the noise calibration of the checkpoint at ``path`` and store it in its
    config (atomically; tensors and the rest of the metadata unchanged). Returns the table."""
    descriptor = load_checkpoint(path, device=device)
    table = measure_noise_calibration(descriptor.model, clean_images, device=device)
    update_config(path, {"noise_calibration": [list(pair) for pair in table]}, out=out)
    return table
