"""Scoring restored images against references, with the protocol written down.

:func:`evaluate_samples` runs a model (or the identity, for the ``input``
baseline row) over (degraded, target) samples and scores each output as the
8-bit PNG a user would get: PSNR and SSIM on Y (BT.601, MATLAB convention) and
on RGB, per image, then the mean over images (:mod:`restore_core.metrics`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from restore_core.io.images import LoadedImage, read_image
from restore_core.metrics import psnr, ssim, to_uint8_range

RestoreFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Protocol:
    """How a benchmark scores; recorded beside every result."""

    crop_border: int = 0
    target_crop: tuple[int, int, int, int] | None = None  # top, bottom, left, right of the target (SOTS: 10, 470, 10, 630)
    quantise: str = "8-bit, as saved to PNG"
    y_channel: str = "ITU-R BT.601 (MATLAB rgb2ycbcr): 16 + 65.481 R + 128.553 G + 24.966 B"
    ssim: str = "skimage structural_similarity, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255"
    mean: str = "per-image scores, then the mean over images"


@dataclass
class Sample:
    """One benchmark item: a degraded image and its reference, loaded on demand."""

    name: str
    load_degraded: Callable[[], LoadedImage]
    load_target: Callable[[], np.ndarray]  # float32 RGB in [0, 1]
    target_crop: tuple[int, int, int, int] | None = None


def file_sample(name: str, degraded: Path, target: Path, crop: tuple[int, int, int, int] | None = None) -> Sample:
    return Sample(name, lambda: read_image(degraded), lambda: read_image(target).rgb, crop)


@dataclass
class PairScore:
    name: str
    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    ssim_rgb: float
    seconds: float = 0.0


@dataclass
class Summary:
    label: str
    count: int
    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    ssim_rgb: float
    seconds_per_image: float
    per_image: list[PairScore] = field(default_factory=list)

    def as_dict(self, with_images: bool = False) -> dict:
        data = asdict(self)
        if not with_images:
            data.pop("per_image")
        return data


def score(restored: np.ndarray, target: np.ndarray, protocol: Protocol = Protocol(), name: str = "", grey: bool = False) -> PairScore:
    """Score one float [0, 1] RGB output against its float [0, 1] RGB target.

    ``grey``: the images are grey (stored with one channel): both "Y" and "RGB"
    scores are then computed on that one channel, as grey benchmarks report."""
    if protocol.target_crop is not None:
        top, bottom, left, right = protocol.target_crop
        target = target[top:bottom, left:right]
    if restored.shape != target.shape:
        raise ValueError(f"{name}: output is {restored.shape[1]}x{restored.shape[0]} but the target is {target.shape[1]}x{target.shape[0]}")
    a, b = to_uint8_range(restored), to_uint8_range(target)
    if grey:
        a, b = a.mean(axis=2), b.mean(axis=2)
    border = protocol.crop_border
    return PairScore(name, psnr(a, b, "y", border), ssim(a, b, "y", border), psnr(a, b, "rgb", border), ssim(a, b, "rgb", border))


def summarise(label: str, scores: Sequence[PairScore]) -> Summary:
    def mean(attr: str) -> float:
        return float(np.mean([getattr(s, attr) for s in scores])) if scores else float("nan")

    return Summary(label, len(scores), mean("psnr_y"), mean("ssim_y"), mean("psnr_rgb"), mean("ssim_rgb"), mean("seconds"), list(scores))


def evaluate_samples(
    samples: Sequence[Sample],
    restore: RestoreFn | None,
    label: str,
    protocol: Protocol = Protocol(),
    save_dir: Path | None = None,
) -> Summary:
    """Score ``restore`` (None = the degraded input itself) over dataset samples
    (:class:`Sample`); restored images go to ``save_dir/label/``."""
    from dataclasses import replace

    from restore_core.io.images import write_image

    scores = []
    for sample in samples:
        degraded = sample.load_degraded()
        target = sample.load_target()
        start = time.perf_counter()
        output = degraded.rgb if restore is None else restore(degraded.rgb)
        seconds = time.perf_counter() - start
        sample_protocol = protocol if sample.target_crop is None else replace(protocol, target_crop=sample.target_crop)
        pair_score = score(output, target, sample_protocol, sample.name, grey=degraded.layout.startswith("grey"))
        pair_score.seconds = seconds
        scores.append(pair_score)
        if save_dir is not None and restore is not None:
            write_image(Path(save_dir) / label / f"{Path(sample.name).with_suffix('')}.png", output, degraded)
    return summarise(label, scores)
