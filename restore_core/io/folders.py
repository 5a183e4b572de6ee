"""Finding images in folders, and pairing degraded images with their references.

Shared by training (paired training folders) and benchmarking (dataset
adapters), so both read a layout the same way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from restore_core.io.images import READABLE_EXTENSIONS, UNREADABLE_FORMATS

# (degraded folder, reference folder) names used by common paired datasets: each degraded
# name with its own reference first (a folder holding one side alone is said with its
# partner), then with gt/ (RESIDE's hazy/ + gt/, BasicSR's lq/ + gt/, many papers' input/ + gt/).
_NAMED_PAIRS = (("input", "target"), ("rainy", "norain"), ("rain", "norain"), ("hazy", "clear"), ("blur", "sharp"), ("noisy", "clean"))
PAIR_LAYOUTS = _NAMED_PAIRS + tuple((degraded, "gt") for degraded in ("input", "lq", "rainy", "rain", "hazy", "blur", "noisy"))
# (degraded, reference) name prefixes of datasets that keep both in one folder: PReNet's
# releases of Rain100H / Rain100L (rain-001.png beside norain-001.png) and of their
# training sets RainTrainH / RainTrainL (rain-1.png beside norain-1.png).
PREFIX_LAYOUTS = (("rain-", "norain-"),)


class HalfOfAPair(ValueError):
    """A folder given for pairs is one half of a paired folder: its parent was meant."""


class ImagesWithoutReferences(ValueError):
    """A folder given for pairs holds images and no references: clean images, whose use
    each command says (:func:`list_pairs`)."""


def resolve_folder(path: Path) -> Path | None:
    """``path`` if it is a folder; or the folder a link *file* names (a checkout without
    symlink support stores ``target -> ../McMaster`` as a small text file holding
    ``../McMaster``); else None."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.is_file() and path.stat().st_size < 1024:
        try:
            target = (path.parent / path.read_text().strip()).resolve()
        except (OSError, UnicodeDecodeError):
            return None
        if target.is_dir():
            return target
    return None


def not_a_folder(path: Path) -> str:
    """Why ``path``, given as a folder, is not one: the message names it."""
    return f"{path}: is a file, not a folder" if path.exists() else f"{path}: no such folder"


def file_in_the_way(folder: Path) -> Path | None:
    """The file, if any, that stands where ``folder`` or one of the folders above it
    would have to be made: outputs cannot go there, and it is better said before any
    work than on each write ("Not a directory")."""
    return next((above for above in [folder, *folder.parents] if above.exists() and not above.is_dir()), None)


def output_refusal(output: Path, folder: Path) -> str | None:
    """Why ``output`` (a file, or a folder of outputs) cannot be written in ``folder`` (the
    folder itself, or its parent folder), or None: a file stands where a folder must be.
    Every write would fail alike ("Not a directory", "File exists"), so it is refused first."""
    blocking = file_in_the_way(folder)
    if blocking is None:
        return None
    if blocking == output:
        return f"{output}: the output folder exists and is not a folder"
    return f"{output}: {blocking} is a file, so no folder can be made there"


def _files_with(folder: Path, extensions: Iterable[str]) -> list[Path]:
    """Files directly in ``folder`` with one of ``extensions`` (any case; hidden files skipped), sorted by name."""
    wanted = set(extensions)
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in wanted and p.is_file() and not p.name.startswith("."))


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (hidden files skipped), sorted by name."""
    return _files_with(folder, READABLE_EXTENSIONS)


def list_unreadable_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` in formats restore cannot read (camera raw, ...)."""
    return _files_with(folder, UNREADABLE_FORMATS)


def natural_key(path: Path) -> tuple:
    """Sort key that puts ``2.png`` before ``10.png``."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", path.stem))


def match_key(stem: str) -> str:
    """Name key that pairs ``rain-001``/``norain-001``, ``blur_1``/``gt_1`` and JORDER's
    ``norain-1x2``/``norain-1``: the last number in the name, after dropping a trailing
    super-resolution scale tag (``x2``, ``x4``); the whole stem when it has no number."""
    numbers = re.findall(r"\d+", re.sub(r"(?<=\d)x\d+$", "", stem))
    return str(int(numbers[-1])) if numbers else stem


def match_folders(inputs: Path, targets: Path) -> list[tuple[Path, Path]]:
    """Pairs of files in two folders: same stem, else same trailing number; natural order.

    Raises ValueError when pairing by number is ambiguous (two inputs with one number):
    a silent wrong pairing would make every score meaningless."""
    ins, outs = list_images(inputs), list_images(targets)
    by_stem = {p.stem: p for p in outs}
    pairs = [(p, by_stem[p.stem]) for p in ins if p.stem in by_stem]
    if not pairs:
        by_key: dict[str, Path] = {}
        for p in outs:
            by_key.setdefault(match_key(p.stem), p)
        pairs = [(p, by_key[match_key(p.stem)]) for p in ins if match_key(p.stem) in by_key]
        _refuse_shared_references(pairs)
    return sorted(pairs, key=lambda pair: natural_key(pair[0]))


def _refuse_shared_references(pairs: list[tuple[Path, Path]]) -> None:
    seen: dict[Path, Path] = {}
    for degraded, reference in pairs:
        if reference in seen:
            raise ValueError(
                f"{degraded.parent}: {seen[reference].name} and {degraded.name} would both pair with {reference} "
                f"(matched by the number in their names); give each input its own number"
            )
        seen[reference] = degraded


def match_prefixed(folder: Path) -> list[tuple[Path, Path]]:
    """Pairs inside one folder told apart by a name prefix (:data:`PREFIX_LAYOUTS`:
    ``rain-7.png`` with ``norain-7.png``); inputs without a reference are left out, as
    PReNet's RainTrainH lacks some. Natural order; [] when no prefix layout matches."""
    if not Path(folder).is_dir():
        return []
    images = list_images(folder)
    for degraded_prefix, reference_prefix in PREFIX_LAYOUTS:
        references = {p.stem[len(reference_prefix):]: p for p in images if p.stem.startswith(reference_prefix)}
        pairs = [(p, references[p.stem[len(degraded_prefix):]]) for p in images
                 if p.stem.startswith(degraded_prefix) and p.stem[len(degraded_prefix):] in references]
        if pairs:
            return sorted(pairs, key=lambda pair: natural_key(pair[0]))
    return []


def _one_of(names: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def describe_layouts(layouts=PAIR_LAYOUTS) -> str:
    """The layouts :func:`list_pairs` reads, for error messages: ``input/ + target/, ...,
    input/, lq/ or hazy/ + gt/, or rain-N + norain-N side by side``."""
    by_reference: dict[str, list[str]] = {}
    for degraded, reference in layouts:
        by_reference.setdefault(reference, []).append(f"{degraded}/")
    folders = ", ".join(f"{_one_of(names)} + {reference}/" for reference, names in by_reference.items())
    prefixes = " or ".join(f"{a}N + {b}N side by side" for a, b in PREFIX_LAYOUTS)
    return f"{folders}, or {prefixes}"


def scale_subfolder(folder: Path) -> Path:
    """The folder that holds the images of a degraded folder: ``folder`` itself, or its
    only scale sub-folder (``X2``, ``x4``) when ``folder`` holds no images itself, as in
    JORDER's Rain100H/Rain100L releases (``rain/X2/norain-1x2.png`` against
    ``norain/norain-1.png``). Several scale sub-folders are ambiguous: ValueError."""
    if list_images(folder):
        return folder
    scales = sorted(p for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"[xX]\d+", p.name))
    if len(scales) > 1:
        names = ", ".join(p.name for p in scales)
        raise ValueError(f"{folder}: several scale sub-folders ({names}); give the one to use as the input folder")
    return scales[0] if scales else folder


def list_pairs(root: Path, layouts=PAIR_LAYOUTS) -> list[tuple[Path, Path]]:
    """(degraded, reference) pairs of a paired folder in any of ``layouts`` (the degraded
    images may sit in one scale sub-folder, :func:`scale_subfolder`), or of one folder
    holding both under the prefixes of :data:`PREFIX_LAYOUTS`."""
    root = Path(root)
    for input_name, target_name in layouts:
        inputs, targets = resolve_folder(root / input_name), resolve_folder(root / target_name)
        if inputs is not None and targets is not None:
            inputs = scale_subfolder(inputs)
            pairs = match_folders(inputs, targets)
            if not pairs:
                raise ValueError(f"{root}: no files in {input_name}/ and {target_name}/ share a name or number")
            return pairs
    pairs = match_prefixed(root) if root.is_dir() else []
    if pairs:
        return pairs
    for degraded, reference in layouts:  # one side alone (test samples without ground truth): say which is missing
        has_degraded, has_reference = resolve_folder(root / degraded) is not None, resolve_folder(root / reference) is not None
        if has_degraded != has_reference:
            have, lack = (degraded, reference) if has_degraded else (reference, degraded)
            raise ValueError(f"{root}: holds {have}/ but no {lack}/ beside it: a benchmark or a training "
                             f"pair needs both (expected {describe_layouts(layouts)})")
    for degraded, reference in layouts:  # one half named instead of the pair's folder
        if root.name in (degraded, reference) and resolve_folder(root.parent / degraded) and resolve_folder(root.parent / reference):
            raise HalfOfAPair(f"{root}: the {root.name}/ half of a paired folder; give the folder that holds {degraded}/ and "
                              f"{reference}/: {root.parent}")
    if root.is_dir() and (images := list_images(root)):
        raise ImagesWithoutReferences(f"{root}: holds {len(images)} image(s) with no references beside them: not a paired folder "
                                      f"(expected {describe_layouts(layouts)})")
    raise ValueError(f"{root}: not a paired folder (expected {describe_layouts(layouts)})")


def unpaired_images(pairs: list[tuple[Path, Path]]) -> list[Path]:
    """The images of the pairs' folders that are in no pair (an input whose reference is
    missing, a reference without its input), in natural order: what a benchmark over
    ``pairs`` leaves out, to be said rather than scored silently over fewer images."""
    used = {path for pair in pairs for path in pair}
    folders = sorted({path.parent for path in used})
    return sorted((path for folder in folders for path in list_images(folder) if path not in used), key=natural_key)


def reference_border(size: tuple[int, int], reference_size: tuple[int, int]) -> int | None:
    """The width of the border a reference image has around its degraded image, when the
    two sizes (height, width) differ by the same even margin on both axes: SOTS indoor's
    640x480 ground truths frame its 620x460 hazy images with 10 pixels. None otherwise."""
    margins = {reference_size[0] - size[0], reference_size[1] - size[1]}
    margin = margins.pop() if len(margins) == 1 else 0
    return margin // 2 if margin > 0 and margin % 2 == 0 else None


def list_scene_pairs(root: Path, split: str = "train") -> list[tuple[Path, Path]]:
    """GoPro-style scene folders: ``<split>/<scene>/blur|sharp`` (or ``<scene>/blur|sharp``
    directly under ``root``), paired by name within each scene."""
    root = Path(root)
    base = root / split if (root / split).is_dir() else root
    pairs: list[tuple[Path, Path]] = []
    for scene in sorted(p for p in base.iterdir() if p.is_dir()):
        if (scene / "blur").is_dir() and (scene / "sharp").is_dir():
            pairs += match_folders(scene / "blur", scene / "sharp")
    return pairs


def list_training_pairs(root: Path) -> list[tuple[Path, Path]]:
    """Pairs of a training folder: any flat paired layout (:data:`PAIR_LAYOUTS`), or
    GoPro's ``train/<scene>/blur|sharp`` scene layout."""
    try:
        return list_pairs(root)
    except (HalfOfAPair, ImagesWithoutReferences):
        raise
    except ValueError as flat_error:
        scenes = list_scene_pairs(root, "train")
        if scenes:
            return scenes
        raise ValueError(f"{flat_error}, nor GoPro-style train/<scene>/blur/ + sharp/") from None
