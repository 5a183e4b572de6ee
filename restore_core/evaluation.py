"""Scoring restored images against references, with the protocol written down.

:func:`evaluate_samples` runs a model (or the identity, for the ``input``
baseline row) over (degraded, target) samples and scores each output as the
8-bit PNG a user would get: PSNR and SSIM on Y (BT.601, MATLAB convention) and
on RGB, per image, then the mean over images (:mod:`restore_core.metrics`).
:func:`evaluate_sequences` scores frames of image sequences as they come from the model
and smoothed in time (``--temporal``), from one pass.
"""

from __future__ import annotations

import glob
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from restore_core.engine.inputs import frame_sort_key
from restore_core.engine.temporal import Frame, FrameWindow, TemporalConfig, smooth_in_window
from restore_core.io.folders import reference_border
from restore_core.io.images import READABLE_EXTENSIONS, LoadedImage, read_image, write_image
from restore_core.metrics import SSIM_MIN_SIZE, psnr, ssim, to_uint8_range

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
    classified: str | None = None  # the degradation the model's classifier found most probable (all-in-one models)


@dataclass
class Summary:
    label: str
    count: int
    psnr_y: float
    ssim_y: float
    psnr_rgb: float
    ssim_rgb: float
    seconds_per_image: float | None  # None where nothing was run (the input row, another method's outputs)
    per_image: list[PairScore] = field(default_factory=list)

    def as_dict(self, with_images: bool = False) -> dict:
        data = asdict(self)
        if not with_images:
            data.pop("per_image")
        return data


def score(restored: np.ndarray, target: np.ndarray, protocol: Protocol = Protocol(), name: str = "", grey: bool = False,
          role: str = "output") -> PairScore:
    """Score one float [0, 1] RGB output against its float [0, 1] RGB target.

    ``grey``: the images are grey (stored with one channel): both "Y" and "RGB"
    scores are then computed on that one channel, as grey benchmarks report.
    ``role`` names what ``restored`` is in the error a size mismatch raises ("input"
    for the baseline row)."""
    if protocol.target_crop is not None:
        top, bottom, left, right = protocol.target_crop
        target = target[top:bottom, left:right]
    if restored.shape[:2] != target.shape[:2]:
        border = reference_border(restored.shape[:2], target.shape[:2])
        hint = (f" (the reference has a {border}-pixel border: --dataset sots-indoor crops SOTS indoor's 10-pixel one)"
                if border else "")
        raise ValueError(f"{name}: the {role} is {restored.shape[1]}x{restored.shape[0]} but its reference is "
                         f"{target.shape[1]}x{target.shape[0]}{hint}")
    a, b = to_uint8_range(restored), to_uint8_range(target)
    if grey:
        a, b = a.mean(axis=2), b.mean(axis=2)
    border = protocol.crop_border
    height, width = a.shape[:2]
    if min(height, width) - 2 * border < SSIM_MIN_SIZE:  # before any metric: PSNR of nothing is NumPy's warning, not a score
        kept = f", {max(width - 2 * border, 0)}x{max(height - 2 * border, 0)} once a {border}-pixel border is cropped" if border else ""
        raise ValueError(f"{name}: {width}x{height} pixels{kept}; SSIM needs at least {SSIM_MIN_SIZE}x{SSIM_MIN_SIZE} "
                         "(Gaussian window, sigma 1.5)")
    return PairScore(name, psnr(a, b, "y", border), ssim(a, b, "y", border), psnr(a, b, "rgb", border), ssim(a, b, "rgb", border))


def summarise(label: str, scores: Sequence[PairScore], timed: bool = True) -> Summary:
    """The mean of each score over ``scores``; ``timed`` False (the input row, another
    method's outputs) leaves ``seconds_per_image`` None: nothing ran here to time."""
    def mean(attr: str) -> float:
        return float(np.mean([getattr(s, attr) for s in scores])) if scores else float("nan")

    return Summary(label, len(scores), mean("psnr_y"), mean("ssim_y"), mean("psnr_rgb"), mean("ssim_rgb"),
                   mean("seconds") if timed else None, list(scores))


def summarise_by_label(summary: Summary, labels: dict[str, str]) -> dict[str, Summary]:
    """``summary``'s images grouped by their label (a mixed set's degradation: rain,
    noise, ...), each group's scores averaged as :func:`summarise` does; images without
    a label are left out. Groups in the order their labels first appear."""
    groups: dict[str, list[PairScore]] = {}
    for pair_score in summary.per_image:
        if (label := labels.get(pair_score.name)) is not None:
            groups.setdefault(label, []).append(pair_score)
    return {label: summarise(label, scores) for label, scores in groups.items()}


def _score_sample(sample: Sample, degraded: LoadedImage, output: np.ndarray, seconds: float, protocol: Protocol,
                  save_to: Path | None) -> PairScore:
    """Score one output against its sample's target (the sample's own target crop, if
    any); with ``save_to`` (a folder), write it there as PNG."""
    sample_protocol = protocol if sample.target_crop is None else replace(protocol, target_crop=sample.target_crop)
    role = "input" if output is degraded.rgb else "output"
    pair_score = score(output, sample.load_target(), sample_protocol, sample.name, grey=degraded.layout.startswith("grey"), role=role)
    pair_score.seconds = seconds
    if save_to is not None:
        write_image(save_to / f"{Path(sample.name).with_suffix('')}.png", output, degraded)
    return pair_score


def evaluate_samples(
    samples: Sequence[Sample],
    restore: RestoreFn | None,
    label: str,
    protocol: Protocol = Protocol(),
    save_dir: Path | None = None,
    classified: Callable[[], str | None] | None = None,
) -> Summary:
    """Score ``restore`` (None = the degraded input itself) over dataset samples
    (:class:`Sample`); restored images go to ``save_dir/label/``. ``classified``, asked
    after each image, names the degradation the model's classifier found in it (kept
    in each :class:`PairScore`)."""
    scores = []
    for sample in samples:
        degraded = sample.load_degraded()
        start = time.perf_counter()
        output = degraded.rgb if restore is None else restore(degraded.rgb)
        save_to = Path(save_dir) / label if save_dir is not None and restore is not None else None
        pair_score = _score_sample(sample, degraded, output, time.perf_counter() - start, protocol, save_to)
        pair_score.classified = classified() if classified is not None else None
        scores.append(pair_score)
    return summarise(label, scores, timed=restore is not None)


def find_output(folder: Path, sample_name: str) -> Path | None:
    """The file of ``folder`` that another tool restored from the sample ``sample_name``
    (a path relative to its set, ``scene/000001.png``): the same relative name, else the
    one image of that stem (a ``.jpg`` input's ``.png`` output); None when there is none.
    Several of that stem and no exact name: ValueError."""
    exact = Path(folder) / sample_name
    if exact.is_file():
        return exact
    stem = exact.with_suffix("")
    found = sorted(path for path in stem.parent.glob(f"{glob.escape(stem.name)}.*")
                   if path.suffix.lower() in READABLE_EXTENSIONS and path.is_file()) if stem.parent.is_dir() else []
    if len(found) > 1:
        raise ValueError(f"{folder}: {', '.join(path.name for path in found)} could each be the output for {sample_name}; keep one")
    return found[0] if found else None


def evaluate_outputs(samples: Sequence[Sample], folder: Path, label: str, protocol: Protocol = Protocol()) -> Summary:
    """Score the images another method wrote to ``folder`` (one per sample, matched by
    :func:`find_output`) as :func:`evaluate_samples` scores a model's: a published
    method's results, scored under exactly this protocol. Every sample must have its
    output (a mean over fewer images would not compare): ValueError naming the missing."""
    outputs = [find_output(folder, sample.name) for sample in samples]
    missing = [sample.name for sample, output in zip(samples, outputs) if output is None]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ValueError(f"{folder}: no output for {len(missing)} of the {len(samples)} pair(s): {shown} "
                         "(outputs are matched by name, any image format)")
    scores = []
    for sample, path in zip(samples, outputs):
        degraded = sample.load_degraded()  # its layout: a grey set is scored on one channel
        assert path is not None
        scores.append(_score_sample(sample, degraded, read_image(path).rgb, 0.0, protocol, None))
    return summarise(label, scores, timed=False)


def evaluate_sequences(
    samples: Sequence[Sample],
    restore: RestoreFn,
    label: str,
    temporal: TemporalConfig,
    protocol: Protocol = Protocol(),
    save_dir: Path | None = None,
) -> tuple[Summary, Summary]:
    """Score ``restore`` over samples that are the frames of image sequences (the samples
    of each folder of names one sequence, in :func:`frame_sort_key` order, as GoPro's
    scenes): as the model gives them (``label``), and smoothed with their neighbours as
    ``--temporal`` smooths them (``label-tR``), from one pass of the model. The smoothed
    row's seconds include the smoothing."""
    ordered = sorted(samples, key=lambda sample: frame_sort_key(Path(sample.name)))
    plain: list[PairScore] = []
    smoothed: list[PairScore] = []
    smoothed_label = f"{label}-t{temporal.radius}"
    window: FrameWindow | None = None
    folder: Path | None = None

    def score_smoothed(ready: list[tuple[Frame, list[Frame]]]) -> None:
        for centre, neighbours in ready:
            sample, degraded, seconds = centre.stamp
            start = time.perf_counter()
            output = smooth_in_window(centre, neighbours, temporal) / np.float32(255.0)
            save_to = Path(save_dir) / smoothed_label if save_dir is not None else None
            smoothed.append(_score_sample(sample, degraded, output, seconds + time.perf_counter() - start, protocol, save_to))

    for sample in ordered:
        degraded = sample.load_degraded()
        start = time.perf_counter()
        output = restore(degraded.rgb)
        seconds = time.perf_counter() - start
        plain.append(_score_sample(sample, degraded, output, seconds, protocol, Path(save_dir) / label if save_dir is not None else None))
        if window is None or Path(sample.name).parent != folder:
            if window is not None:
                score_smoothed(window.flush())
            window, folder = FrameWindow(temporal.radius), Path(sample.name).parent
        score_smoothed(window.push(Frame.of(np.clip(output, 0, 1) * np.float32(255.0), (sample, degraded, seconds))))
    if window is not None:
        score_smoothed(window.flush())
    return summarise(label, plain), summarise(smoothed_label, smoothed)
