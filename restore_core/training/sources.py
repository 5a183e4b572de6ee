"""Training data sources: the folders a recipe names, read into a patch sampler and
validation sets (:func:`prepare_data`); clean images get the synthetic degradation
the recipe names (:mod:`restore_core.degradations.table`).

Paired folders give real (degraded, clean) pairs, every ``holdout_every``-th kept
aside for validation; clean folders (and scikit-image's bundled photographs) are
degraded on the fly. Images near-identical to a validation or ``--exclude-like``
image are left out of training. Images are decoded by a few threads in order
(:func:`read_ahead`); the training images go to an 8-bit pool in memory or on disk
(:mod:`.pool`; under ``torchrun`` one disk pool per machine, shared by its ranks);
8-bit validation pairs are held as uint8.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from restore_core.configs import ConfigError
from restore_core.degradations.table import make_degradation
from restore_core.engine.inputs import describe_unreadable
from restore_core.engine.memory import available_memory_bytes
from restore_core.io.folders import ImagesWithoutReferences, list_images, list_training_pairs, list_unreadable_images, reference_border, unpaired_images
from restore_core.io.files import atomic_write_bytes
from restore_core.io.images import READABLE_EXTENSIONS, ImageError, how_to_read
from restore_core.training import data as D
from restore_core.training.distributed import DistInfo, barrier, rank_zeros_choice
from restore_core.training.errors import TrainingError
from restore_core.training.pool import ImagePool, choose_pool, image_bytes, make_pool, map_pool_file
from restore_core.training.recipes import Recipe

T = TypeVar("T")
R = TypeVar("R")

@dataclass
class ValidationSet:
    name: str
    pairs: list[tuple[np.ndarray, np.ndarray]]  # RGB (degraded, clean): uint8, or float32 in [0, 1] (data.compact_8bit)


@dataclass
class TrainingData:
    sampler: D.PatchSampler
    validation: list[ValidationSet]
    summary: dict = field(default_factory=dict)


def _same_size(degraded: np.ndarray, clean: np.ndarray, degraded_path: Path, clean_path: Path) -> None:
    """A pair must match pixel for pixel: patches are cut at the same place from both."""
    if degraded.shape[:2] != clean.shape[:2]:
        border = reference_border(degraded.shape[:2], clean.shape[:2])
        hint = (f" (the reference has a {border}-pixel border, as SOTS indoor's ground truth does: crop it off first;"
                " restore benchmark --dataset sots-indoor crops it when scoring)") if border else ""
        raise ValueError(f"{degraded_path} is {degraded.shape[1]}x{degraded.shape[0]} but its reference {clean_path} is "
                         f"{clean.shape[1]}x{clean.shape[0]}: the images of a training or validation pair must be the same size{hint}")


def _read_pair(degraded_path: Path, clean_path: Path) -> tuple[np.ndarray, np.ndarray]:
    degraded, clean = D.read_rgb(degraded_path), D.read_rgb(clean_path)
    _same_size(degraded, clean, degraded_path, clean_path)
    return degraded, clean


READ_THREADS = min(8, os.cpu_count() or 1)  # decoders run outside the GIL: training images are read this many at a time


def read_ahead(items: Iterable[T], read: Callable[[T], R], threads: int = READ_THREADS) -> Iterator[R]:
    """``read(item)`` for every item, in order, with ``threads`` threads reading at most
    ``2 * threads`` items ahead of the consumer, so memory stays bounded. An error is
    raised when its item's turn comes, as a plain loop would raise it."""
    if threads <= 1:
        yield from map(read, items)
        return
    remaining = iter(items)
    with ThreadPoolExecutor(threads, thread_name_prefix="restore-train-read") as executor:
        pending = deque(executor.submit(read, item) for item in itertools.islice(remaining, 2 * threads))
        try:
            while pending:
                result = pending.popleft().result()
                pending.extend(executor.submit(read, item) for item in itertools.islice(remaining, 1))
                yield result
        finally:
            for future in pending:  # the consumer stopped early (an error, a break): read no further
                future.cancel()


def _thumbnail_of(path: Path) -> np.ndarray:
    """The leakage check's thumbnail of the image at ``path``. Runs in the reading threads."""
    return D.thumbnail(D.read_rgb(path))


def _pool_image(image: np.ndarray | Path) -> tuple[np.ndarray, np.ndarray, bool, bool] | ImageError:
    """(8-bit copy, thumbnail, whether grey, whether deeper than 8 bits) of an image or of
    the image file at a path: what the pool keeps, what the leakage check compares, what
    the sampler's colour mix needs, and what the summary counts; or the ImageError of a
    file that cannot be decoded (a training image is left out for it, not the run). Runs
    in the reading threads."""
    if isinstance(image, Path):
        try:
            image = D.read_rgb(image)
        except ImageError as exc:
            return exc
    small, exact = D.to_uint8_exact(image)
    return small, D.thumbnail(image), D.is_grey(small), not exact


def _pool_pair(paths: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool] | ImageError:
    """(8-bit degraded, 8-bit clean, clean thumbnail, whether a half is deeper than 8 bits)
    of a training pair, or the ImageError of a half that cannot be decoded (a pair of
    other sizes stays an error: a folder's layout mistake, not one broken file)."""
    try:
        degraded, clean = _read_pair(*paths)
    except ImageError as exc:
        return exc
    (small_degraded, exact_degraded), (small_clean, exact_clean) = D.to_uint8_exact(degraded), D.to_uint8_exact(clean)
    return small_degraded, small_clean, D.thumbnail(clean), not (exact_degraded and exact_clean)


@dataclass
class _Listing:
    """What a recipe's folders hold, known before any image is decoded."""

    splits: dict[str, tuple[list, list]]  # paired folder -> (training pairs, held-out pairs)
    clean_files: dict[str, list[Path]]
    photos: list[np.ndarray]  # scikit-image's, when the recipe adds them
    needed: int  # bytes the training images take as 8-bit RGB
    unreadable: list[Path] = field(default_factory=list)  # files of the clean folders in formats restore cannot read
    unpaired: list[Path] = field(default_factory=list)  # images of the paired folders in no pair (a missing input or target)
    exclusion_references: list[Path] = field(default_factory=list)  # the --exclude-like images training must not repeat


def _training_pairs(folder: Path, option: str) -> list[tuple[Path, Path]]:
    """The pairs of a ``--data`` or ``--val`` folder; a folder of clean images alone is
    refused saying what takes it (``--clean``, or ``restore make-pairs`` for a validation set)."""
    try:
        return list_training_pairs(folder)
    except ImagesWithoutReferences as exc:
        use = ("clean images train with --clean FOLDER (degraded anew at every step)" if option == "--data"
               else "restore make-pairs makes a validation set of clean images")
        raise ValueError(f"{option} {exc}; {use}") from None


def _list_sources(recipe: Recipe) -> _Listing:
    cfg = recipe.data
    listed = {folder: _training_pairs(Path(folder), "--val" if folder in cfg.validation else "--data") for folder in (*cfg.paired, *cfg.validation)}
    splits = {folder: D.split_holdout(listed[folder], cfg.holdout_every) for folder in cfg.paired}
    unpaired = [path for pairs in listed.values() for path in unpaired_images(pairs)]
    clean_files = {folder: list_images(Path(folder)) for folder in cfg.clean}
    photos = D.builtin_photographs() if cfg.builtin_photographs else []
    needed = image_bytes([path for train_pairs, _ in splits.values() for pair in train_pairs for path in pair]
                         + [path for files in clean_files.values() for path in files]) + sum(3 * p.shape[0] * p.shape[1] for p in photos)
    unreadable = []
    for folder in cfg.clean:
        found = list_unreadable_images(Path(folder))
        if not clean_files[folder]:
            raise TrainingError(_why_no_clean_images(Path(folder), found))
        unreadable += found
    references = [path for folder in cfg.exclude_near_duplicates_of for path in exclusion_references(Path(folder))]
    return _Listing(splits, clean_files, photos, needed, unreadable, unpaired, references)


def exclusion_references(folder: Path) -> list[Path]:
    """The images of an ``--exclude-like`` folder that training images are compared with:
    a paired folder's references (its targets), else the images in it, else every image
    below it (a test set's scene folders: keeping too much out is the safe side). A folder
    with none is an error: it would keep nothing out, silently."""
    try:
        return [target for _, target in list_training_pairs(folder)]
    except ValueError:
        pass
    found = list_images(folder) or sorted(path for sub in folder.rglob("*") if sub.is_dir() for path in list_images(sub))
    if not found:
        raise TrainingError(f"{folder}: --exclude-like found no images in it or below it to keep out of training")
    return found


def _why_no_clean_images(folder: Path, unreadable: list[Path]) -> str:
    """Why a ``--clean`` folder gives no image, and what to give instead: one that
    holds only formats restore cannot read, a paired folder (whose degraded half must
    not be taken for clean images: sub-folders are never searched), one whose images
    are in sub-folders, or an empty one. A folder given by mistake is said, not skipped."""
    if unreadable:
        return (f"{folder}: no images restore can read; it holds {describe_unreadable(unreadable)}: "
                f"{how_to_read(p.suffix.lower() for p in unreadable)}")
    try:
        pairs = list_training_pairs(folder)
    except ValueError:
        pairs = []
    if pairs:
        return (f"{folder}: a paired folder ({pairs[0][0].parent.name}/ beside {pairs[0][1].parent.name}/), not clean images: "
                f"give it as --data, or its clean half as --clean {pairs[0][1].parent}")
    below = sorted(str(sub.relative_to(folder)) + "/" for sub in folder.rglob("*") if sub.is_dir() and list_images(sub))
    if below:
        names = ", ".join(below[:3]) + (", ..." if len(below) > 3 else "")
        return f"{folder}: no images in it, only in its sub-folders ({names}); give each as --clean (sub-folders are not searched)"
    return f"{folder}: no images in it ({', '.join(READABLE_EXTENSIONS)})"


Progress = Callable[[int, int], None]  # (training images read, of how many)


def prepare_data(recipe: Recipe, pool: str = "memory", pool_folder: Path | None = None, dist: DistInfo = DistInfo(),
                 progress: Progress | None = None) -> TrainingData:
    """Read every folder the recipe names, apply hold-out and leakage filters.

    The training images go to the ``pool`` :func:`~restore_core.training.pool.choose_pool`
    picks (memory, disk, or auto: disk when they would take more than half the available
    memory); a disk pool's file lies in ``pool_folder``. Validation pairs stay in memory,
    on rank 0 alone under ``torchrun`` (the only rank that validates). There each rank
    holds a memory pool of its own, while a disk pool is read once per machine and
    shared (:func:`_share_disk_pool`). ``progress`` is told how many of the training
    images (pairs count once) have been read, from (0, total) on.
    """
    listing = _list_sources(recipe)
    copies = dist.local_world_size if dist.enabled else 1
    kind = rank_zeros_choice(choose_pool(pool, listing.needed, available_memory_bytes(), copies), dist)
    if kind == "disk" and dist.enabled:
        return _share_disk_pool(recipe, listing, pool_folder, dist, progress)
    return _read_sources(recipe, listing, make_pool(kind, pool_folder, listing.needed), progress, validation_sets=dist.is_main)


def _share_disk_pool(recipe: Recipe, listing: _Listing, folder: Path | None, dist: DistInfo, progress: Progress | None) -> TrainingData:
    """A disk pool under ``torchrun``: each machine's first rank reads the images into a
    named pool file in ``folder`` and writes its index beside it; the machine's other
    ranks wait, then map that file, so the page cache holds one copy for all of them
    (eight memory pools were eight copies). The names are removed once every rank has
    mapped the file. A failure of the reading rank is every rank's error."""
    if folder is None:
        raise ValueError("a disk pool needs a folder (the run folder) for its file")
    path = folder / f".restore-pool-{dist.first_on_machine}.u8"
    index_path = path.with_name(path.name + ".json")
    reader = dist.local_rank == 0
    failure: Exception | None = None
    if reader:
        try:
            store = make_pool("disk", folder, listing.needed, shared_path=path)
            data = _read_sources(recipe, listing, store, progress, validation_sets=dist.is_main)
            index: dict = {"entries": store.entries, "paired": len(data.sampler.paired), "summary": data.summary,
                           "grey": [item.grey for item in data.sampler.clean]}
        except Exception as exc:  # noqa: BLE001 - said to the waiting ranks, then raised here
            failure, index = exc, {"error": str(exc)}
        atomic_write_bytes(index_path, json.dumps(index).encode())
    barrier(dist)
    if not reader:
        index = json.loads(index_path.read_text())
        if "error" not in index:
            images = map_pool_file(path, index["entries"])
    barrier(dist)  # every rank has read the index and mapped the file: the names can go
    if reader:
        path.unlink(missing_ok=True)
        index_path.unlink(missing_ok=True)
    if failure is not None:
        raise failure
    if "error" in index:
        raise TrainingError(f"rank {dist.first_on_machine}, which reads the training data for this machine, failed: {index['error']}")
    if not reader:
        pairs = index["paired"]
        paired = [D.PairedImage(images[2 * i], images[2 * i + 1]) for i in range(pairs)]
        clean_pool = [D.PairedImage(None, image, grey) for image, grey in zip(images[2 * pairs :], index["grey"])]
        data = TrainingData(_make_sampler(recipe, paired, clean_pool), [], index["summary"])
    data.summary["pool"] = f"disk, shared by {dist.local_world_size} ranks"
    return data


def nothing_left(summary: dict) -> str:
    """Why no training image is left, from a summary: every pair smaller than the patch,
    what else took them (hold-out, the near-duplicate check), or that the folders held none."""
    if small := summary.get("pairs_smaller_than_patch"):
        return (f"every training pair is smaller than the {summary['patch_size']}-pixel patch "
                f"(e.g. {small[0]}); pass a smaller --patch-size")
    held_out = sum(len(counts["held_out"]) for counts in summary.get("paired", {}).values())
    why = []
    if held_out:
        why.append(f"{held_out} pairs held out for validation (--holdout-every {summary.get('holdout_every')})")
    if excluded := summary.get("excluded"):
        why.append(f"{len(excluded)} left out as near-duplicates of validation or --exclude-like images ({_first_few(excluded)})")
    if unpaired := summary.get("unpaired"):
        why.append(f"{len(unpaired)} images in no pair ({_first_few(unpaired)})")
    if undecodable := summary.get("undecodable"):
        first = undecodable[0]
        why.append(f"{_files(len(undecodable))} that could not be decoded ({first['path']}: {first['cause']}" + (", ..." if len(undecodable) > 1 else "") + ")")
    return "no training images left: " + "; ".join(why) if why else "no training images in the folders given"


def describe(summary: dict) -> str:
    """One line for the run's log from a :class:`TrainingData` summary (the whole of it,
    every excluded file named, goes to the run's data.json)."""
    parts = []
    for folder, counts in summary.get("paired", {}).items():
        held = f", {len(counts['held_out'])} held out" if counts["held_out"] else (
            f", none held out (fewer than --holdout-every {summary['holdout_every']} pairs)" if summary.get("holdout_every") else "")
        parts.append(f"{counts['train']} pairs from {folder}{held}")
    parts += [f"{count} clean images from {name}" for name, count in summary.get("clean", {}).items()]
    if "clean_colour_grey" in summary:
        colour, grey = summary["clean_colour_grey"]
        parts.append(f"clean: {colour} colour, {grey} grey")
    if summary.get("unreadable"):
        parts.append(f"{len(summary['unreadable'])} files in formats restore cannot read left out "
                     f"({describe_unreadable(map(Path, summary['unreadable']))})")
    if unpaired := summary.get("unpaired"):
        parts.append(f"{len(unpaired)} images in no pair (input or target missing) left out ({_first_few(unpaired)})")
    if undecodable := summary.get("undecodable"):
        parts.append(f"{_files(len(undecodable))} that could not be decoded left out ({_first_few([entry['path'] for entry in undecodable])})")
    patch = summary.get("patch_size")
    if small := summary.get("pairs_smaller_than_patch"):
        parts.append(f"{len(small)} pairs smaller than the {patch}-pixel patch left out ({_first_few(small)})")
    if enlarged := summary.get("clean_enlarged"):
        parts.append(f"{len(enlarged)} clean images smaller than the {patch}-pixel patch enlarged to it ({_first_few(enlarged)})")
    if summary.get("excluded_near_duplicates"):
        parts.append(f"{summary['excluded_near_duplicates']} left out as near-duplicates of validation or --exclude-like images")
    if deeper := summary.get("deeper_than_8bit"):
        parts.append(f"{len(deeper)} images deeper than 8 bits trained on as 8-bit, as the pool holds them ({_first_few(deeper)})")
    parts.append(f"pool {summary.get('pool', '?')} {summary.get('pool_mib', 0)} MiB")
    if summary.get("validation_mib"):
        parts.append(f"validation {summary['validation_mib']} MiB")
    return "; ".join(parts)


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def _first_few(names: list[str], shown: int = 2) -> str:
    more = f", and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _make_sampler(recipe: Recipe, paired: list[D.PairedImage], clean_pool: list[D.PairedImage]) -> D.PatchSampler:
    try:
        degrade = make_degradation(recipe.degradation, recipe.degradation_options) if clean_pool else None
    except ConfigError as exc:
        raise TrainingError(str(exc)) from None
    return D.PatchSampler(
        paired,
        clean_pool,
        recipe.patch_size,
        degrade,
        recipe.data.paired_fraction,
        colour_fraction=recipe.data.colour_fraction,
        channel_shuffle=recipe.data.channel_shuffle,
        transplant_fraction=recipe.data.transplant_fraction,
        quarter_turns=recipe.data.quarter_turns,
    )


def _read_sources(recipe: Recipe, listing: _Listing, store: ImagePool, progress: Progress | None = None,
                  validation_sets: bool = True) -> TrainingData:
    """Decode the listed images: validation and leakage references first, then the
    training images into ``store``, paired ones before clean ones (the order a shared
    pool's index relies on). Without ``validation_sets`` (ranks that never validate)
    validation images are read for the leakage check alone, not kept."""
    cfg = recipe.data
    excluded_refs: list[np.ndarray] = list(read_ahead(listing.exclusion_references, _thumbnail_of))

    def read_validation(name: str, pairs: list[tuple[Path, Path]]) -> list[ValidationSet]:
        """Validation pairs are read once: their clean images join the leakage references,
        and the pairs are kept as a set (on a rank that validates; elsewhere only the
        clean images are read, for their thumbnails)."""
        if not validation_sets:
            excluded_refs.extend(read_ahead([target for _, target in pairs], _thumbnail_of))
            return []
        kept = []
        for degraded, clean in read_ahead(pairs, lambda pair: _read_pair(*pair)):
            excluded_refs.append(D.thumbnail(clean))
            kept.append((D.compact_8bit(degraded), D.compact_8bit(clean)))
        return [ValidationSet(name, kept)] if kept else []

    folder_sets = [vset for folder in cfg.validation for vset in read_validation(Path(folder).name, list_training_pairs(Path(folder)))]
    validation = [vset for folder, (_, held) in listing.splits.items() for vset in read_validation(f"{Path(folder).name}:holdout", held)]
    validation += folder_sets

    summary: dict = {"paired": {}, "clean": {}, "excluded_near_duplicates": 0, "excluded": [],
                     "unreadable": [str(path) for path in listing.unreadable],
                     "unpaired": [str(path) for path in listing.unpaired],
                     "undecodable": [],  # {"path", "cause"} of training files that could not be decoded (corrupt, truncated), left out
                     "patch_size": recipe.patch_size, "pairs_smaller_than_patch": [], "clean_enlarged": [], "deeper_than_8bit": [],
                     "holdout_every": cfg.holdout_every}

    def smaller_than_patch(image: np.ndarray) -> str | None:
        """``"WxH"`` when a side of ``image`` is shorter than the training patch."""
        h, w = image.shape[:2]
        return f"{w}x{h}" if min(h, w) < recipe.patch_size else None

    def left_out(thumb: np.ndarray, name: object) -> bool:
        """Whether a training image is a near-duplicate of a validation or --exclude-like one (then counted)."""
        if not (excluded_refs and D.is_near_duplicate(thumb, excluded_refs)):
            return False
        summary["excluded_near_duplicates"] += 1
        summary["excluded"].append(str(name))
        return True

    total = sum(len(train) for train, _ in listing.splits.values()) + sum(map(len, listing.clean_files.values())) + len(listing.photos)
    read = itertools.count(1)
    tell = (lambda: progress(next(read), total)) if progress else (lambda: None)
    if progress:
        progress(0, total)
    paired: list[D.PairedImage] = []
    for folder, (train_pairs, held) in listing.splits.items():
        kept = 0
        for (_, target), loaded in zip(train_pairs, read_ahead(train_pairs, _pool_pair)):
            tell()
            if isinstance(loaded, ImageError):
                summary["undecodable"].append({"path": str(loaded.path), "cause": loaded.cause})
                continue
            degraded, clean, thumb, deeper = loaded
            # A pair smaller than the patch is left out, not enlarged: resizing would change
            # its degradation (noise grains, streak widths), which is what the pair is for.
            if size := smaller_than_patch(degraded):
                summary["pairs_smaller_than_patch"].append(f"{target} ({size})")
            elif not left_out(thumb, target):
                paired.append(D.PairedImage(store.keep(degraded), store.keep(clean)))
                kept += 1
                if deeper:
                    summary["deeper_than_8bit"].append(str(target))
        summary["paired"][folder] = {"train": kept, "held_out": [p[0].name for p in held]}

    # Clean images are read a few at a time and kept as 8-bit: a folder never sits in memory
    # as float32 (60 1024x768 PNGs peaked at +692 MiB that way, for a 135 MiB pool).
    clean_pool: list[D.PairedImage] = []
    sources: list[tuple[str, list, Sequence[Path | np.ndarray]]] = [(folder, files, files) for folder, files in listing.clean_files.items()]
    if listing.photos:
        sources.append(("skimage.data", [f"skimage.data#{i}" for i in range(len(listing.photos))], listing.photos))
    for name, names, images in sources:
        kept = 0
        for image_name, loaded in zip(names, read_ahead(images, _pool_image)):
            tell()
            if isinstance(loaded, ImageError):
                summary["undecodable"].append({"path": str(loaded.path), "cause": loaded.cause})
                continue
            image, thumb, grey, deeper = loaded
            if not left_out(thumb, image_name):
                # A clean image is enlarged to the patch instead (D.PatchSampler): its
                # degradation is synthesized afterwards, at the training scale.
                if size := smaller_than_patch(image):
                    summary["clean_enlarged"].append(f"{image_name} ({size})")
                clean_pool.append(D.PairedImage(None, store.keep(image), grey))
                kept += 1
                if deeper:
                    summary["deeper_than_8bit"].append(str(image_name))
        summary["clean"][name] = kept

    if not paired and not clean_pool:
        raise TrainingError(nothing_left(summary))
    sampler = _make_sampler(recipe, paired, clean_pool)
    if clean_pool:
        summary["clean_colour_grey"] = [len(sampler.colour_indices), len(sampler.grey_indices)]
    held = [a for image in sampler.paired + sampler.clean for a in (image.degraded, image.clean) if a is not None]
    summary["pool"] = store.kind
    summary["pool_mib"] = round(sum(a.nbytes for a in held) / 2**20, 1)  # training images held (8-bit), in memory or mapped from disk
    summary["validation_mib"] = round(sum(a.nbytes for vset in validation for pair in vset.pairs for a in pair) / 2**20, 1)
    return TrainingData(sampler, validation, summary)
