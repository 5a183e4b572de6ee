"""Training data: paired folders, clean folders with a synthetic degradation,
random patches with flips and rotations.

Sampling is a pure function of ``(seed, step)``: batch ``s`` is drawn from
``numpy.random.default_rng([seed, s])``, so a resumed run sees exactly the
batches the uninterrupted run would have seen, with no sampler state to save.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from restore_core.degradations.table import Degrade, as_grey_camera
from restore_core.io.images import read_rgb  # noqa: F401 (sources.py reads every training image through data.read_rgb)


def split_holdout(pairs: Sequence, every: int) -> tuple[list, list]:
    """Deterministic split: every ``every``-th item (1-based) is held out."""
    if every <= 0:
        return list(pairs), []
    train = [p for i, p in enumerate(pairs, start=1) if i % every]
    held = [p for i, p in enumerate(pairs, start=1) if not i % every]
    return train, held


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A 32 x 32 grey thumbnail, orientation-normalised, for near-duplicate checks."""
    grey = image.mean(axis=2) if image.ndim == 3 else image
    if grey.shape[0] > grey.shape[1]:
        grey = grey.T
    return cv2.resize(grey.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)


def is_near_duplicate(thumb: np.ndarray, references: Sequence[np.ndarray], tolerance: float = 0.03) -> bool:
    """True when the :func:`thumbnail` ``thumb`` is within ``tolerance`` (mean abs, [0, 1])
    of a reference thumbnail: used to keep validation images (and crops of them) out of training."""
    return any(float(np.abs(thumb - ref).mean()) < tolerance for ref in references)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def to_uint8_exact(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """A float32 image in [0, 1] as uint8, and whether that loses nothing (every 8-bit
    source; not a 16-bit or float one): :func:`unit_float` then gives back the same floats."""
    small = to_uint8(image)
    return small, bool(np.array_equal(unit_float(small), image))


def compact_8bit(image: np.ndarray) -> np.ndarray:
    """A float32 image in [0, 1] as uint8 when that loses nothing (:func:`to_uint8_exact`:
    a quarter of the memory, which matters for validation sets of 2K photographs held
    for the whole run), else as it is."""
    small, exact = to_uint8_exact(image)
    return small if exact else image


def unit_float(image: np.ndarray) -> np.ndarray:
    """float32 in [0, 1], divided exactly as the image reader divides 8-bit samples."""
    return np.divide(image, 255.0, dtype=np.float32) if image.dtype == np.uint8 else image


@dataclass
class PairedImage:
    degraded: np.ndarray | None  # uint8 H x W x 3, or None for clean-only images
    clean: np.ndarray  # uint8 H x W x 3
    grey: bool | None = None  # whether ``clean`` is grey, when known (None: the sampler looks)


def is_grey(image: np.ndarray) -> bool:
    """True when the H x W x 3 ``image`` has three identical channels."""
    return bool(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2]))


def _augment(arrays: list[np.ndarray], rng: np.random.Generator, quarter_turns: bool = True) -> list[np.ndarray]:
    """Same random flip / rotation for every array in ``arrays``: one of the 8 symmetries
    of the square, or with ``quarter_turns=False`` one of the 4 that keep the vertical
    axis vertical (identity, left-right flip, half turn, up-down flip), for degradations
    with a direction such as falling rain."""
    k = int(rng.integers(4))
    if not quarter_turns:
        k = 2 * (k % 2)  # 0 or 2: no quarter turn; the draw count stays the same
    flip = bool(rng.integers(2))
    out = []
    for a in arrays:
        a = np.rot90(a, k)
        if flip:
            a = a[:, ::-1]
        out.append(np.ascontiguousarray(a))
    return out


def transplant_residual(clean: np.ndarray, source_degraded: np.ndarray, source_clean: np.ndarray) -> np.ndarray:
    """``clip(clean + (source_degraded - source_clean), 0, 1)``: the degradation of one
    real pair (uint8 arrays) laid over another clean image (float32 in [0, 1]).

    Exact for additive degradations. Rain100H is one: its rainy images are never darker
    than their targets (measured: no pixel of the 50 pairs of Rain100H_dev50 is), so its
    streaks and veil are a residual that can be added to any background. Where the source
    was clipped at white the residual is an underestimate, as it is in the source.
    """
    residual = (source_degraded.astype(np.float32) - source_clean.astype(np.float32)) / 255.0
    return np.clip(clean + residual, 0.0, 1.0).astype(np.float32)


def _ensure_min_size(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` enlarged (bicubic) so that a ``size`` x ``size`` patch fits. Meant for
    clean images, degraded after this; training data leaves out pairs that would need it
    (:mod:`~restore_core.training.sources`): resizing a pair resizes its degradation."""
    h, w = image.shape[:2]
    if h >= size and w >= size:
        return image
    scale = size / min(h, w)
    return cv2.resize(image, (max(size, round(w * scale)), max(size, round(h * scale))), interpolation=cv2.INTER_CUBIC)


class PatchSampler:
    """Draws (degraded, clean) float32 N x 3 x P x P batches from a pool of images.

    Paired images give real degraded patches; clean-only images are degraded
    on the fly by ``degrade``. ``paired_fraction`` is the share of each batch
    taken from paired images when both kinds exist.

    Clean-only images are drawn uniformly, so a pool of 400 grey and 40 colour
    photographs gives colour patches 9 % of the time; ``colour_fraction`` (when
    set, and both kinds are in the pool) fixes the share of clean-only patches
    drawn from colour images instead. ``channel_shuffle`` permutes the RGB
    channels of each colour patch at random (one of six orders), so a few colour
    photographs show the model more colour combinations than they hold.
    ``transplant_fraction`` degrades that share of the clean-only patches with the
    residual of a real pair instead of the synthetic degradation:
    ``clip(clean + (input - target))``, the residual cropped from a random paired
    image (see :func:`transplant_residual`). For additive degradations with a
    known ground truth this moves real degradations (Rain100H's streak layers)
    onto new backgrounds: 37 rain layers times every clean photograph.
    ``quarter_turns=False`` augments with flips and half turns only, so streaks
    that fall near-vertically in the data keep doing so in every patch.
    With all of these at their defaults no extra random numbers are drawn:
    batches are the ones earlier versions drew for the same seed.
    """

    def __init__(
        self,
        paired: list[PairedImage],
        clean: list[PairedImage],
        patch_size: int,
        degrade: Degrade | None,
        paired_fraction: float = 0.5,
        colour_fraction: float | None = None,
        channel_shuffle: bool = False,
        transplant_fraction: float = 0.0,
        quarter_turns: bool = True,
    ) -> None:
        if not paired and not clean:
            raise ValueError("no training images")
        if clean and degrade is None:
            raise ValueError("clean-only training images need a synthetic degradation")
        self.paired = [PairedImage(_ensure_min_size(p.degraded, patch_size), _ensure_min_size(p.clean, patch_size)) for p in paired]
        # Greyness found while reading spares a pass over every pixel here: on a disk pool
        # larger than memory that pass read the whole pool back from disk.
        self.clean = [PairedImage(None, _ensure_min_size(c.clean, patch_size), c.grey if c.grey is not None else is_grey(c.clean))
                      for c in clean]
        self.patch_size = patch_size
        self.degrade = degrade
        self.paired_fraction = paired_fraction if paired and clean else (1.0 if paired else 0.0)
        if colour_fraction is not None and not 0.0 <= colour_fraction <= 1.0:
            raise ValueError(f"colour_fraction must lie in [0, 1], got {colour_fraction}")
        grey_flags = [c.grey for c in self.clean]
        self.grey_indices = [i for i, g in enumerate(grey_flags) if g]
        self.colour_indices = [i for i, g in enumerate(grey_flags) if not g]
        both_kinds = bool(self.grey_indices and self.colour_indices)
        self.colour_fraction = colour_fraction if both_kinds else None
        self.channel_shuffle = channel_shuffle
        if not 0.0 <= transplant_fraction <= 1.0:
            raise ValueError(f"transplant_fraction must lie in [0, 1], got {transplant_fraction}")
        if transplant_fraction > 0 and not self.paired:
            raise ValueError("transplant_fraction needs paired images to take residuals from")
        self.transplant_fraction = transplant_fraction if self.clean else 0.0
        self.quarter_turns = quarter_turns

    def _crop(self, arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        h, w = arrays[0].shape[:2]
        top = int(rng.integers(0, h - self.patch_size + 1))
        left = int(rng.integers(0, w - self.patch_size + 1))
        return [a[top : top + self.patch_size, left : left + self.patch_size] for a in arrays]

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < self.paired_fraction:
            item = self.paired[int(rng.integers(len(self.paired)))]
            degraded, clean = _augment(self._crop([item.degraded, item.clean], rng), rng, self.quarter_turns)
            return degraded.astype(np.float32) / 255.0, clean.astype(np.float32) / 255.0
        if self.colour_fraction is None:
            item = self.clean[int(rng.integers(len(self.clean)))]
        else:
            pool = self.colour_indices if rng.random() < self.colour_fraction else self.grey_indices
            item = self.clean[pool[int(rng.integers(len(pool)))]]
        (clean,) = _augment(self._crop([item.clean], rng), rng, self.quarter_turns)
        grey = is_grey(clean)
        if self.channel_shuffle and not grey:
            clean = np.ascontiguousarray(clean[..., rng.permutation(3)])
        clean = clean.astype(np.float32) / 255.0
        if self.transplant_fraction and rng.random() < self.transplant_fraction:
            source = self.paired[int(rng.integers(len(self.paired)))]
            crop = self._crop([source.degraded, source.clean], rng)
            degraded_src, clean_src = _augment(crop, rng, self.quarter_turns)
            return transplant_residual(clean, degraded_src, clean_src), clean
        degraded = self.degrade(clean, rng)
        if grey:
            degraded = as_grey_camera(degraded)
        return degraded, clean

    def batch(self, seed: int, step: int, batch_size: int, rank: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Batch number ``step`` as N x 3 x P x P float32 arrays (degraded, clean).
        Each data-parallel ``rank`` draws its own batch; rank 0 draws what a
        single-process run draws."""
        rng = np.random.default_rng([seed, step] if rank == 0 else [seed, step, rank])
        pairs = [self.sample(rng) for _ in range(batch_size)]
        degraded = np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2)
        clean = np.stack([p[1] for p in pairs]).transpose(0, 3, 1, 2)
        return np.ascontiguousarray(degraded), np.ascontiguousarray(clean)


def builtin_photographs() -> list[np.ndarray]:
    """scikit-image's bundled colour photographs (float32 RGB in [0, 1]), each once.

    ``data.cat`` is left out: it is ``data.chelsea`` under another name (it gave that
    photograph twice the weight until session 53). The stereo motorcycle and the camera
    man are the bundled samples' photographs (``degradations.samples``), kept out of
    training so the demo stays a fair check."""
    from skimage import data

    names = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry"]
    images = []
    for name in names:
        loader = getattr(data, name, None)
        if loader is None:
            continue
        image = loader()
        if image.ndim == 3 and image.shape[2] >= 3:
            images.append(image[..., :3].astype(np.float32) / 255.0)
    return images


