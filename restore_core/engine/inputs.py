"""What to restore and where to write it: input expansion and output naming.

An input spec is a file, a folder (``recursive`` descends into sub-folders), a
glob pattern, or ``-`` for paths on stdin, one a line or NUL-separated
(:func:`paths_from_stdin`); a command may take several (:func:`collect_all_inputs`:
``restore derain photos/*.jpg out/`` as the shell expands it). Each found image
becomes a :class:`Job` whose ``relative`` path is mirrored under the output
folder, so ``in/a/b.png`` -> ``out/a/b.png``.
"""

from __future__ import annotations

import glob
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

from restore_core.io.animations import is_animation
from restore_core.io.camera_raw import RAW_EXTENSIONS
from restore_core.io.folders import PAIR_LAYOUTS
from restore_core.io.images import READABLE_EXTENSIONS, UNREADABLE_FORMATS, how_to_read, output_suffix
from restore_core.io.tiff_pages import TIFF_EXTENSIONS, is_page_stack
from restore_core.io.video import WRITABLE_VIDEO_EXTENSIONS, is_video_name, output_video_suffix


class InputError(ValueError):
    """The input spec itself is unusable (nothing to process)."""


@dataclass(frozen=True)
class Job:
    source: Path
    relative: Path  # mirrored under the output folder
    output: Path | None = None
    # A frame restored only as a neighbour of others (--temporal on an image sequence):
    # its output exists or another shard writes it; nothing is written or reported for it.
    context: bool = False


def is_paged(path: Path) -> bool:
    """Whether ``path`` holds many pictures restored into one file (engine.pages): a
    multi-page TIFF or an animated GIF, PNG, WebP or AVIF. Reads its header."""
    return is_page_stack(path) if path.suffix.lower() in TIFF_EXTENSIONS else is_animation(path)


def is_image_name(path: Path) -> bool:
    """An image file restore reads (camera raw files too, where rawpy is installed)."""
    return path.suffix.lower() in READABLE_EXTENSIONS and not path.name.startswith(".")


def is_unreadable_image_name(path: Path) -> bool:
    """An image file in a format restore cannot read (HEIC, camera raw, ...)."""
    return path.suffix.lower() in UNREADABLE_FORMATS and not path.name.startswith(".")


def walk_folder(root: Path, recursive: bool, skip: Path | None = None, unreadable: list[Path] | None = None,
                videos: list[Path] | None = None) -> list[Path]:
    """Image files under ``root`` in sorted order. Symbolic links to folders are not
    followed (a link loop cannot hang the walk); links to files are kept. The folder
    ``skip`` (the output folder, when it lies inside ``root``) is not entered, so a second
    ``restore ... in in/restored -r`` does not restore the first run's outputs. Files in
    formats restore cannot read (HEIC, camera raw, ...) are added to ``unreadable``,
    videos to ``videos``: a folder of photos often holds clips (a phone's live photos),
    and restoring each frame of them is hours of work nobody asked for by naming a folder."""
    if not recursive:
        entries = sorted(root.iterdir())
        if unreadable is not None:
            unreadable.extend(p for p in entries if is_unreadable_image_name(p) and p.is_file())
        if videos is not None:
            videos.extend(p for p in entries if is_video_name(p) and p.is_file())
        return [p for p in entries if is_image_name(p) and not p.is_dir()]  # a folder named "x.png" is a folder
    skipped = skip.resolve() if skip is not None else None
    found, others, clips = [], [], []
    for folder, subdirs, files in os.walk(root, followlinks=False):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and (skipped is None or (Path(folder) / d).resolve() != skipped))
        found.extend(Path(folder) / name for name in files if is_image_name(Path(name)))
        others.extend(Path(folder) / name for name in files if is_unreadable_image_name(Path(name)))
        clips.extend(Path(folder) / name for name in files if is_video_name(name))
    if unreadable is not None:
        unreadable.extend(sorted(others))
    if videos is not None:
        videos.extend(sorted(clips))
    return sorted(found)


def describe_unreadable(unreadable: Iterable[Path]) -> str:
    """``3 .heic (HEIC), 1 .cr2 (camera raw)``: what a folder held that restore cannot read."""
    counts = Counter(path.suffix.lower() for path in unreadable)
    return ", ".join(f"{count} {ext} ({UNREADABLE_FORMATS[ext]})" for ext, count in counts.most_common())


def left_out_unreadable(unreadable: list[Path]) -> str:
    """The one warning for the files of an input folder in formats restore cannot read:
    how many, of which formats, and how to read them."""
    return (f"left out {len(unreadable)} file(s) in formats restore cannot read: {describe_unreadable(unreadable)}; "
            f"{how_to_read(p.suffix.lower() for p in unreadable)}")


# What a camera (or a phone) set to raw + JPEG writes beside each raw file.
CAMERA_RENDITIONS = frozenset({".jpg", ".jpeg", ".heic", ".heif", ".hif"})


def raw_plus_jpeg_pairs(jobs: Iterable[Job]) -> list[tuple[Path, Path]]:
    """``(raw file, the camera's JPEG or HEIF of it)`` for each shot found twice among
    the inputs: a camera set to raw + JPEG writes both into one folder under one name
    (``IMG_0001.CR2``, ``IMG_0001.JPG``), and a folder given as IN holds both."""
    renditions: dict[tuple[Path, str], Path] = {}
    raws: list[tuple[tuple[Path, str], Path]] = []
    for job in jobs:
        key, suffix = (job.source.parent, job.source.stem.lower()), job.source.suffix.lower()
        if suffix in RAW_EXTENSIONS:
            raws.append((key, job.source))
        elif suffix in CAMERA_RENDITIONS:
            renditions.setdefault(key, job.source)
    return [(raw, renditions[key]) for key, raw in raws if key in renditions]


def _is_inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _output_folder_below(out_dir: Path | None, root: Path) -> Path | None:
    """``out_dir`` when it is a sub-folder of the searched ``root`` (then not searched), else None."""
    if out_dir is not None and _is_inside(out_dir, root) and out_dir.resolve() != root.resolve():
        return out_dir
    return None


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    root: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        root.append(part)
    return Path(*root) if root else Path(".")


def _literal_folder_pattern(pattern: str) -> tuple[str, Path] | None:
    """For a pattern whose folder part names an existing folder literally, brackets and
    all (``Trip [2024]/*.jpg``, where glob alone reads ``[2024]`` as one character of 0,
    2 or 4): the pattern with that part escaped, and the folder. None when no such
    folder exists."""
    parts = Path(pattern).parts
    for end in range(len(parts) - 1, 0, -1):
        folder = Path(*parts[:end])
        if glob.has_magic(str(folder)) and folder.is_dir():
            return os.path.join(glob.escape(str(folder)), *parts[end:]), folder
    return None


def paths_from_stdin(data: bytes) -> list[str]:
    """The paths piped to ``-``: NUL-separated when the bytes hold a NUL (``find -print0``,
    the one form that carries names with newlines; no path holds a NUL), else one a line
    (``\r\n`` endings too). Decoded as the file system's names are (``os.fsdecode``), so
    names that are not UTF-8 come through as well."""
    text = os.fsdecode(data)
    if "\0" in text:
        return [entry for entry in text.split("\0") if entry]
    return [line.rstrip("\r") for line in text.split("\n")]


class OtherCase(NamedTuple):
    """Images a pattern would match in another case: ``IMG_0001.JPG`` for ``'photos/*.jpg'``."""

    spec: str
    images: list[Path]


def any_case_pattern(pattern: str) -> str:
    """``pattern`` matching its letters in either case (``*.jpg`` -> ``*.[jJ][pP][gG]``),
    bracket expressions left as they are: ``glob`` has no case-insensitive mode before
    Python 3.12."""
    out, in_brackets = [], False
    for char in pattern:
        if char == "[" and not in_brackets:
            in_brackets = True
        elif char == "]" and in_brackets:
            in_brackets = False
        elif not in_brackets and char.lower() != char.upper():
            char = f"[{char.lower()}{char.upper()}]"
        out.append(char)
    return "".join(out)


def _matched_in_another_case(pattern: str, found: set[Path], skip: Path | None) -> list[Path]:
    """The images ``pattern`` leaves out that its file names would match in another case
    (its folders' names as written: ``Photos/`` and ``photos/`` are two folders)."""
    folders, _, names = pattern.rpartition("/")
    if not any(char.isalpha() for char in names):
        return []
    any_case = f"{folders}/{any_case_pattern(names)}" if folders else any_case_pattern(names)
    return [m for m in sorted(Path(m) for m in glob.glob(any_case, recursive=True))
            if m not in found and (is_image_name(m) or is_video_name(m)) and not m.is_dir() and (skip is None or not _is_inside(m, skip))]


def _in_another_case(missed: OtherCase) -> str:
    """"N image(s) that match it in another case (A.JPG, ...): ..." with the pattern
    that takes every case of the extension, where the pattern ends in one."""
    examples = ", ".join(p.name for p in missed.images[:3]) + (", ..." if len(missed.images) > 3 else "")
    extension = re.search(r"\.([A-Za-z0-9]+)$", missed.spec)
    every_case = f"; '{missed.spec[:extension.start(1)]}{any_case_pattern(extension.group(1))}' takes every case" if extension else ""
    return (f"{len(missed.images)} image(s) that match it in another case ({examples}): "
            f"patterns are case-sensitive, as the shell's are{every_case}")


def other_case_warning(missed: OtherCase) -> str:
    """The warning for images a pattern leaves out for their case."""
    return f"'{missed.spec}' leaves out {_in_another_case(missed)}"


def collect_inputs(spec: str, recursive: bool = False, stdin_lines: Iterable[str] | None = None, out_dir: Path | None = None,
                   unreadable: list[Path] | None = None, videos: list[Path] | None = None,
                   other_case: list[OtherCase] | None = None) -> list[Job]:
    """Expand an input spec into jobs (see module docstring). Images inside ``out_dir``
    are not inputs when ``out_dir`` is a sub-folder of a folder or glob root being
    searched (paths named one by one, on stdin or as a file, always are). Files a folder
    or pattern holds in formats restore cannot read are added to ``unreadable``.
    Videos are inputs when named (as the file, on stdin, or matched by a pattern);
    those a folder holds are added to ``videos`` instead (see :func:`walk_folder`).
    Images a pattern would match in another case (``IMG_0001.JPG`` for ``*.jpg``) are
    not inputs, as in the shell; they are added to ``other_case`` (:func:`other_case_warning`),
    and named in the error when the pattern matches nothing else."""
    unreadable = [] if unreadable is None else unreadable
    if spec == "-":
        if stdin_lines is None:
            raise InputError("'-' reads paths from stdin, but no stdin was given")
        jobs = []
        for entry in stdin_lines:  # paths as given (paths_from_stdin has taken the line endings off)
            if entry.strip():
                path = Path(entry)
                jobs.append(Job(path, Path(path.name)))
        if not jobs:
            raise InputError("no paths on stdin")
        return jobs
    path = Path(spec)
    if path.is_dir():
        found_videos: list[Path] = []
        files = walk_folder(path, recursive, _output_folder_below(out_dir, path), unreadable, found_videos)
        if videos is not None:
            videos.extend(found_videos)
        if not files:
            hint = "" if recursive else " (use --recursive for sub-folders)"
            halves = None if recursive else _paired_halves(path)
            if halves is not None:
                degraded, clean = halves
                hint = (f"; it is a paired folder ({degraded.name}/ beside {clean.name}/): name one half, {degraded} "
                        f"(the degraded images) or {clean} (the clean ones)")
            elif found_videos:
                hint = f"; it holds {len(found_videos)} video(s): name them, e.g. '{path / ('*' + found_videos[0].suffix)}'"
            elif unreadable:
                hint = f"; it holds {describe_unreadable(unreadable)}, which restore cannot read: {how_to_read(p.suffix.lower() for p in unreadable)}"
            raise InputError(f"{spec}: no images in this folder{hint}")
        return [Job(f, f.relative_to(path)) for f in files]
    if path.exists() or os.path.lexists(path):
        return [Job(path, Path(path.name))]
    if glob.has_magic(spec):
        # A folder that exists under the name as written is that folder, brackets and all
        # ("Album [2019]" is a common name, a bracket pattern over folder names a rare one).
        literal = _literal_folder_pattern(spec)
        pattern, root = literal if literal is not None else (spec, _glob_root(spec))
        found = sorted(Path(m) for m in glob.glob(pattern, recursive=True))
        matches = [m for m in found if (is_image_name(m) or is_video_name(m)) and not m.is_dir()]
        unreadable.extend(m for m in found if is_unreadable_image_name(m) and not m.is_dir())
        skip = _output_folder_below(out_dir, root)
        if skip is not None:
            matches = [m for m in matches if not _is_inside(m, skip)]
        missed = _matched_in_another_case(pattern, set(found), skip)
        if not matches:
            hint = f"; it leaves out {_in_another_case(OtherCase(spec, missed))}" if missed else ""
            raise InputError(f"{spec}: the pattern matches no images{hint}")
        if missed and other_case is not None:
            other_case.append(OtherCase(spec, missed))
        return [Job(m, m.relative_to(root) if m.is_relative_to(root) else Path(m.name)) for m in matches]
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", spec):
        raise InputError(f"{spec}: a URL; restore reads files and folders: download it first (curl -LO '{spec}')")
    raise InputError(f"{spec}: no such file or folder")


def collect_all_inputs(specs: Sequence[str], recursive: bool = False, stdin_lines: Iterable[str] | None = None,
                       out_dir: Path | None = None, unreadable: list[Path] | None = None,
                       videos: list[Path] | None = None, other_case: list[OtherCase] | None = None) -> list[Job]:
    """The jobs of several input specs, in the order given, as :func:`collect_inputs`
    finds each one's (``restore derain a.jpg b.jpg out/``, or ``photos/*.jpg`` as the
    shell expands it, the way ``cp`` takes them). ``-`` (stdin) stands alone: see
    :func:`several_inputs_refusal`. Two inputs naming one file are restored once, and two
    writing one output are refused, as for any batch (:func:`plan_batch`)."""
    jobs: list[Job] = []
    for spec in specs:
        jobs.extend(collect_inputs(spec, recursive, stdin_lines, out_dir, unreadable, videos, other_case))
    return jobs


def _names_media_file(out: Path) -> bool:
    """Whether ``out``'s extension is an image's (readable or not) or a video's."""
    suffix = out.suffix.lower()
    return suffix in READABLE_EXTENSIONS or suffix in UNREADABLE_FORMATS or is_video_name(out)


def _folder_wanted(out: Path, inputs: str) -> str:
    return f"{out}: names a file, but the outputs of {inputs} go into a folder: give one (to use a folder of that name, make it first)"


def several_inputs_refusal(specs: Sequence[str], out: Path) -> str | None:
    """Why several input specs cannot go to ``out``, or None: ``-`` among them (stdin
    lists the inputs alone), or ``out`` naming a file (its name has an image or video
    extension and no folder of that name exists), since several inputs' outputs go into
    a folder."""
    if len(specs) < 2:
        return None
    if "-" in specs:
        return "'-' reads the inputs' paths from stdin: give it alone, not beside other inputs"
    if not out.is_dir() and _names_media_file(out):
        return _folder_wanted(out, f"{len(specs)} inputs")
    return None


def names_output_file(spec: str, out: Path) -> bool:
    """Whether ``out`` is the output file of a single input rather than a folder: the
    spec is one existing image file and ``out`` has an image extension without being an
    existing folder (``restore derain shot.jpg shot-clear.png``, as ``cp a b``), or
    the spec is a video and ``out`` has the extension of a video format restore writes.
    The output's format is then ``out``'s extension."""
    if spec == "-" or not Path(spec).is_file() or out.is_dir():
        return False
    return out.suffix.lower() in WRITABLE_VIDEO_EXTENSIONS if is_video_name(spec) else is_image_name(out)


def output_name_refusal(spec: str, out: Path) -> str | None:
    """Why ``out`` cannot be the output of ``spec``, where its name says it is a file
    that :func:`names_output_file` would not write (so it would become a folder of that
    name): a video or GIF name for one image, an image name for one video, a file name
    for a folder, glob or stdin of inputs. None where it is fine; an existing folder
    always is. (Formats restore reads but does not write are refused elsewhere.)"""
    suffix = out.suffix.lower()
    if out.is_dir() or not _names_media_file(out) or names_output_file(spec, out):
        return None
    if not (spec == "-" or Path(spec).exists() or glob.has_magic(spec)):
        return None  # no such input: said as such when the inputs are collected
    if spec == "-" or not Path(spec).is_file():
        given = "paths on stdin" if spec == "-" else spec
        return _folder_wanted(out, given)
    if is_video_name(spec):
        if is_video_name(out):
            return None  # a read-only video format: refused with the format to use instead
        return (f"{out}: names an image, and {spec} is a video: name a video file ({', '.join(WRITABLE_VIDEO_EXTENSIONS)}) "
                "or a folder (--frames png writes its frames as images)")
    if suffix in UNREADABLE_FORMATS:
        return f"{out}: restore does not write {UNREADABLE_FORMATS[suffix]}; name it {out.stem}.png or another image format"
    if is_video_name(out):
        return f"{out}: names a video, and {spec} is an image: name an image file ({out.stem}.png, ...) or a folder"
    return None


def check_suffix(suffix: str) -> None:
    """An InputError for a suffix that is not part of a file name: one with a path
    separator would put outputs outside the output folder (``_x/../../elsewhere``)."""
    if any(separator in suffix for separator in ("/", "\\", "\0")):
        raise InputError(f"suffix {suffix!r}: a suffix is part of a file name and cannot hold a path separator")


def plan_outputs(jobs: list[Job], out_dir: Path, suffix: str = "", ext: str | None = None, video_frames: bool = False) -> list[Job]:
    """Give every job its output path: ``out_dir/relative-folder/stem+suffix+ext``
    (a ``suffix`` with a path separator is an InputError: :func:`check_suffix`).

    ``ext`` (".png", ".jpg", ...) changes the format of the images, a video extension
    (".mkv", ...) that of the videos; by default each keeps its own (a video in a
    container restore only reads becomes ``.mkv``, a camera raw file a 16-bit ``.tif``).
    With ``video_frames`` (``--frames``), a video's output is the folder
    ``out_dir/relative-folder/stem+suffix`` of its frames.
    """
    check_suffix(suffix)
    planned = []
    for job in jobs:
        is_video = is_video_name(job.source)
        if is_video and video_frames:
            planned.append(Job(job.source, job.relative, out_dir / job.relative.parent / f"{job.relative.stem}{suffix}"))
            continue
        same_kind = ext is not None and is_video_name("x" + ext) == is_video
        extension = ext if ext and same_kind else output_video_suffix(job.source) if is_video else output_suffix(job.source)
        if not extension.startswith("."):
            extension = "." + extension
        name = f"{job.relative.stem}{suffix}{extension.lower() if ext and same_kind else extension}"
        planned.append(Job(job.source, job.relative, out_dir / job.relative.parent / name))
    return planned


def split_own_outputs(jobs: list[Job]) -> tuple[list[Job], list[Job]]:
    """(jobs to run, jobs left out): a job whose source is another job's planned output
    is left out. Writing into the input folder with ``--suffix`` a second time would
    otherwise restore the first run's outputs again (``a.png`` -> ``a_derained.png`` ->
    ``a_derained_derained.png``). Only meant for a non-empty suffix: without one,
    ``photo.jpg`` planned onto ``photo.png`` by ``--ext png`` may be a second picture,
    not an earlier output."""
    outputs = {job.output.resolve() for job in jobs if job.output is not None}
    kept, left_out = [], []
    for job in jobs:
        assert job.output is not None
        is_output_of_another = job.source.resolve() in outputs and job.output.resolve() != job.source.resolve()
        (left_out if is_output_of_another else kept).append(job)
    return kept, left_out


def _collision_way_out(source: Path, other: Path) -> str:
    """How to give two inputs that would write one output file names of their own."""
    if source.stem == other.stem and source.suffix.lower() != other.suffix.lower():  # photo.jpg and photo.png under --ext
        return "--ext gives them one name: leave it out, or restore one kind at a time into another folder"
    return "name their common folder with --recursive (sub-folders are mirrored), or restore them into separate folders"


def find_collisions(jobs: list[Job]) -> dict[Path, list[Path]]:
    """Outputs that more than one input would write: output -> sources."""
    by_output: dict[Path, list[Path]] = {}
    for job in jobs:
        assert job.output is not None
        by_output.setdefault(job.output, []).append(job.source)
    return {out: sources for out, sources in by_output.items() if len(sources) > 1}


def _paired_halves(folder: Path) -> tuple[Path, Path] | None:
    """(degraded, clean) sub-folders of ``folder`` when it is a paired folder in one of
    :data:`~restore_core.io.folders.PAIR_LAYOUTS` (``input/`` beside ``target/``, ...)."""
    for degraded, clean in PAIR_LAYOUTS:
        if (folder / degraded).is_dir() and (folder / clean).is_dir():
            return folder / degraded, folder / clean
    return None


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 0 <= I < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    if count < 1:
        raise InputError(f"--shard {text!r}: N, the number of shards, must be >= 1")
    if not 0 <= index < count:
        raise InputError(f"--shard {text!r}: shards are numbered from 0, so I must be 0 to {count - 1} "
                         f"(a 1-based array index: --shard $((I - 1))/{count})")
    return index, count


def select_shard(jobs: list[Job], index: int, count: int, frames: bool = False) -> list[Job]:
    """Shard ``index`` of ``count``: every ``count``-th job of the list sorted by source
    path, so N machines split one input with no coordination and no overlap. With
    ``frames`` (image sequences smoothed in time), the ``index``-th of ``count`` runs of
    consecutive jobs in :func:`frame_order` instead, so that a shard's frames are each
    other's neighbours and only those at its two ends need frames of other shards."""
    if frames:
        ordered = frame_order(jobs)
        return ordered[len(ordered) * index // count:len(ordered) * (index + 1) // count]
    ordered = sorted(jobs, key=lambda job: str(job.source))
    return ordered[index::count]


def frame_sort_key(path: Path) -> tuple:
    """Where ``path`` goes among the frames of image sequences: folder by folder, each
    folder's images by name with runs of digits compared as numbers (``frame_9`` before
    ``frame_10``)."""
    parts = re.split(r"(\d+)", path.name.lower())  # text, digits, text, ...: like types meet like
    return str(path.parent), tuple(int(part) if i % 2 else part for i, part in enumerate(parts)), path.name


def frame_order(jobs: Iterable[Job]) -> list[Job]:
    """Jobs as the frames of image sequences (:func:`frame_sort_key`)."""
    return sorted(jobs, key=lambda job: frame_sort_key(job.source))


def with_neighbour_frames(runnable: list[Job], every: list[Job], radius: int) -> list[Job]:
    """The image jobs of ``runnable`` as sequences (``--temporal``): in :func:`frame_order`,
    each folder's images one sequence, with the images of ``every`` (the inputs of the
    whole run, whatever this run writes) that lie within ``radius`` frames of one of them
    in its folder and that this run does not write (an earlier run wrote them: resumed
    with ``--skip-existing``; or another ``--shard`` does) added as context jobs, restored
    only as neighbours: a resumed or sharded sequence is smoothed as one run would. Videos
    are returned after the images, as they are."""
    images = frame_order(job for job in every if not is_video_name(job.source))
    positions = {job.source: i for i, job in enumerate(images)}
    wanted: set[int] = set()
    for job in runnable:
        if job.source not in positions:
            continue
        i = positions[job.source]
        for j in range(max(0, i - radius), min(len(images), i + radius + 1)):
            if images[j].source.parent == job.source.parent:
                wanted.add(j)
    by_source = {job.source: job for job in runnable}
    ordered = [by_source.get(images[j].source) or Job(images[j].source, images[j].relative, context=True)
               for j in sorted(wanted)]
    listed = {job.source for job in ordered}
    return ordered + [job for job in runnable if job.source not in listed]


@dataclass
class BatchPlan:
    """What a restoration run will do with each input, decided before any model loads."""

    runnable: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)  # output exists and --skip-existing
    refused: list[tuple[Job, str]] = field(default_factory=list)  # (job, why), reported as errors
    existing: list[Path] = field(default_factory=list)  # outputs in the way (no --overwrite / --skip-existing)
    onto_inputs: list[Path] = field(default_factory=list)  # outputs that are inputs of the run (its own or another's)
    left_out: list[Job] = field(default_factory=list)  # this run's own outputs, found among the inputs
    repeated: list[Job] = field(default_factory=list)  # a file listed again (stdin): restored once


def plan_batch(
    jobs: list[Job],
    out_dir: Path,
    suffix: str = "",
    ext: str | None = None,
    overwrite: bool = False,
    skip_existing: bool = False,
    shard: tuple[int, int] | None = None,
    output_file: Path | None = None,
    frames: bool = False,
    video_frames: bool = False,
) -> BatchPlan:
    """Name every output (:func:`plan_outputs`; ``output_file``: the one job's output is
    that file, see :func:`names_output_file`), leave out the run's own earlier outputs
    (with a suffix, :func:`split_own_outputs`), take the ``shard``, then sort each job:
    refused when two inputs write one file, skipped or in the way when its output exists,
    else runnable. Outputs that would replace an input (its own or another of the run) are
    listed in ``onto_inputs`` for every shard alike, and then nothing is runnable: like
    outputs in the way, they mean the command names the wrong folder, not a bad image.
    ``frames``: shards are runs of consecutive frames (:func:`select_shard`);
    ``video_frames``: videos write folders of frames (:func:`plan_outputs`). Nothing on
    disk is changed."""
    plan = BatchPlan()
    # The same file listed twice (paths on stdin) is restored once, not refused as two
    # inputs writing one output.
    seen: set[Path] = set()
    unique = []
    for job in jobs:
        key = job.source.resolve()
        (plan.repeated if key in seen else unique).append(job)
        seen.add(key)
    jobs = unique
    if output_file is not None:
        if len(jobs) != 1:
            raise InputError(f"{output_file}: an output file takes one input, not {len(jobs)}")
        jobs = [Job(jobs[0].source, jobs[0].relative, output_file)]
    else:
        jobs = plan_outputs(jobs, out_dir, suffix, ext, video_frames)
    if suffix:
        jobs, plan.left_out = split_own_outputs(jobs)
    # These checks look at every input before the shard is taken, so shards agree.
    sources = {job.source.resolve() for job in jobs if job.source.exists()}
    plan.onto_inputs = [job.output for job in jobs if job.output is not None and job.output.resolve() in sources]
    if plan.onto_inputs:
        return plan
    # source -> the input whose output it would overwrite (the first of those writing one file)
    collisions = {source: sources_of_one[0] for sources_of_one in find_collisions(jobs).values() for source in sources_of_one[1:]}
    if shard is not None:
        jobs = select_shard(jobs, *shard, frames=frames)
    for job in jobs:
        assert job.output is not None
        if job.source in collisions:
            plan.refused.append((job, f"{collisions[job.source]} also writes {job.output}; {_collision_way_out(job.source, collisions[job.source])}"))
        elif job.output.exists() and not overwrite:
            if skip_existing:
                plan.skipped.append(job)
            else:
                plan.existing.append(job.output)
        else:
            plan.runnable.append(job)
    return plan
