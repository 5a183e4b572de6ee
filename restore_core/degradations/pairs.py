"""Paired sets made from clean images: each image degraded once, reproducibly.

Image ``i`` of the list (a folder's images sorted by name) is degraded with
``numpy.random.default_rng([seed, i])``, so a set is made again bit for bit from
(images, degradation, settings, seed), and one
image's failure changes no other image's draw. The pairs are written as 8-bit PNGs in
the ``input/`` + ``target/`` layout that ``restore benchmark --root`` and ``restore
train --val`` read. A grey image (or every image, with ``grey``) is degraded as the
training sampler degrades grey patches: one channel's degradation for the whole image,
written grey (:func:`as_grey_camera`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from restore_core.configs import config_to_dict
from restore_core.degradations import PAIR_RECORD_NAME
from restore_core.degradations.table import DEGRADATIONS, MixedConfig, as_grey_camera, degradation_config, draw_one_of
from restore_core.io.files import atomic_write_bytes
from restore_core.io.images import ImageError, LoadedImage, read_image
from restore_core.io.video import is_video_name


@dataclass(frozen=True)
class PairRecipe:
    """How a set is made: a degradation of the table with its validated config, the
    seed, and whether colour images are made grey first."""

    degradation: str
    config: Any
    seed: int = 0
    grey: bool = False

    @classmethod
    def from_options(cls, degradation: str, options: dict, seed: int = 0, grey: bool = False) -> "PairRecipe":
        """Validated (:func:`degradation_config`; a bad option is a ConfigError)."""
        return cls(degradation, degradation_config(degradation, options), seed, grey)

    def degrade(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return DEGRADATIONS[self.degradation][1](clean, rng, self.config)

    def drawn(self, index: int) -> str | None:
        """The degradation image ``index`` of a mixed set gets (None for a single one)."""
        if not isinstance(self.config, MixedConfig):
            return None
        return draw_one_of(np.random.default_rng([self.seed, index]), self.config)

    def record(self, images: Sequence[Path]) -> dict:
        """What ``OUT/degradation.json`` holds: enough to make the set again from the
        same images (named, in order; where they live is the maker's business), and for a
        mixed set the degradation each pair got (``per_image``, keyed by the pair's file
        name), which ``restore benchmark`` scores apart."""
        record = {"degradation": self.degradation, "settings": config_to_dict(self.config), "seed": self.seed,
                  "grey": self.grey, "images": [Path(path).name for path in images],
                  "rule": "image i of 'images' (in this order) degraded with numpy.random.default_rng([seed, i]); 8-bit PNG pairs"}
        if isinstance(self.config, MixedConfig):
            per_image: dict[str, str] = {}
            for index, path in enumerate(images):  # a later image named like an earlier pair is refused: the first keeps the name
                per_image.setdefault(pair_paths(Path(path), Path())[0].name, self.drawn(index))
            record["per_image"] = per_image
        return record


@dataclass(frozen=True)
class MadePair:
    """What became of one clean image: both files written, found complete (``skipped``),
    or why not (``error``)."""

    source: Path
    degraded: Path
    target: Path
    grey: bool = False
    skipped: bool = False  # complete already, from the same recipe
    error: str | None = None
    note: str | None = None  # what of the clean image the 8-bit PNG pair could not keep (alpha, depth)
    degradation: str | None = None  # in a mixed set, the one this pair got


def pair_paths(source: Path, out_dir: Path) -> tuple[Path, Path]:
    """``OUT/input/NAME.png`` and ``OUT/target/NAME.png`` for a clean image."""
    name = f"{source.stem}.png"
    return out_dir / "input" / name, out_dir / "target" / name


def encode_png(pixels: np.ndarray, grey: bool) -> bytes:
    """Float RGB in [0, 1] -> 8-bit PNG bytes (one channel when ``grey``)."""
    arr = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    arr = arr[..., 0] if grey else arr[..., ::-1]  # OpenCV writes BGR
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(arr))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buffer.tobytes()


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of float RGB, as three equal channels."""
    luma = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    return np.repeat(luma[..., None], 3, axis=2)


def what_the_pair_leaves_out(image: LoadedImage) -> str | None:
    """What of a clean image its pair does not keep, said (None when nothing): pairs are
    8-bit PNGs of the colour (or grey) planes, so an alpha plane and deeper samples go."""
    lost = (["its alpha plane"] if image.alpha is not None else []) + ([f"{image.bit_depth}-bit samples (written 8-bit)"] if image.bit_depth > 8 else [])
    return f"the pair leaves out {' and '.join(lost)}" if lost else None


class PairSetError(ValueError):
    """The output folder holds a set made another way."""


def _comparable(record: dict) -> dict:
    """A ``degradation.json`` as compared with this run's: its settings with every field
    (one added to a config since it was written takes its default), without
    ``per_image`` (which follows from the rest, and older sets lack)."""
    settings = config_to_dict(degradation_config(record["degradation"], record["settings"]))
    return {key: value for key, value in record.items() if key != "per_image"} | {"settings": settings}


def make_pairs(images: Sequence[Path], out_dir: Path, recipe: PairRecipe, overwrite: bool = False) -> Iterator[MadePair]:
    """Degrade each of ``images`` (image ``i`` with ``default_rng([recipe.seed, i])``) and
    write the pair under ``out_dir``; yields one :class:`MadePair` per image, in order.

    ``out_dir/degradation.json`` (the recipe and the image list) is written first. Where
    it already holds another recipe or list, :class:`PairSetError` is raised before any
    image unless ``overwrite``; where it holds the same, pairs already complete are
    skipped (``skipped``): they are what this run would write, so an interrupted run is
    finished by running it again. An image that cannot be read (a video among them), or
    whose pair would take an earlier one's name (``a.jpg`` after ``a.png``, or
    ``2024/a.png`` after ``2023/a.png``), is reported (``error``) and the set
    goes on; nothing half-written is left (each file is written under a temporary name,
    and a pair whose second file fails loses its first)."""
    out_dir = Path(out_dir)
    record = recipe.record(images)
    record_path = out_dir / PAIR_RECORD_NAME
    try:
        same_set = _comparable(json.loads(record_path.read_text())) == _comparable(record)
    except (OSError, ValueError, AttributeError, KeyError, TypeError):  # no record yet, or an unreadable one (ConfigError is a ValueError): not this set
        same_set = False
    if not same_set and not overwrite and (record_path.exists() or any(pair_paths(Path(i), out_dir)[0].exists() for i in images)):
        raise PairSetError(f"{out_dir} holds pairs made with other settings or images ({PAIR_RECORD_NAME}); "
                           "--overwrite replaces them, or choose another folder")
    atomic_write_bytes(record_path, (json.dumps(record, indent=2) + "\n").encode())
    taken: dict[Path, Path] = {}
    for index, source in enumerate(images):
        degraded_path, target_path = pair_paths(Path(source), out_dir)
        if degraded_path in taken:
            yield MadePair(source, degraded_path, target_path, error=f"{source}: its pair would be named like that of {taken[degraded_path]} ({degraded_path.name})")
            continue
        taken[degraded_path] = Path(source)
        if same_set and not overwrite and degraded_path.exists() and target_path.exists():
            yield MadePair(source, degraded_path, target_path, skipped=True)
            continue
        if is_video_name(Path(source)):
            yield MadePair(source, degraded_path, target_path, error=f"{source}: a video; pairs are made from still images "
                           f"(write its frames as images first, e.g. ffmpeg -i {Path(source).name} frames/%06d.png)")
            continue
        try:
            image = read_image(source)
        except ImageError as exc:
            yield MadePair(source, degraded_path, target_path, error=str(exc))
            continue
        stored_grey = image.layout.startswith("grey")
        is_grey = recipe.grey or stored_grey
        clean = to_grey(image.rgb) if is_grey and not stored_grey else image.rgb
        try:
            degraded = recipe.degrade(clean, np.random.default_rng([recipe.seed, index]))
        except ValueError as exc:  # a degradation that cannot take this image: its own line, the set goes on
            yield MadePair(source, degraded_path, target_path, error=f"{source}: cannot degrade: {exc}")
            continue
        if is_grey:
            degraded = as_grey_camera(degraded)
        try:
            atomic_write_bytes(degraded_path, encode_png(degraded, is_grey))
            try:
                atomic_write_bytes(target_path, encode_png(clean, is_grey))
            except BaseException:
                degraded_path.unlink(missing_ok=True)
                raise
        except (OSError, ValueError) as exc:
            yield MadePair(source, degraded_path, target_path, error=f"{source}: cannot write its pair: {exc}")
            continue
        yield MadePair(source, degraded_path, target_path, grey=is_grey, note=what_the_pair_leaves_out(image), degradation=recipe.drawn(index))
