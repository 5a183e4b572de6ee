"""Writing files safely: every output goes to a hidden temporary file in its folder,
then is renamed over its name, so a crash or a concurrent writer never leaves a
half-written file. A run killed without warning (``kill -9``, a power cut) leaves its
temporary file behind; :func:`remove_stale_temporaries` clears those. Outputs get the
permissions the umask gives, as any program's files do.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Iterable


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask is process-wide and not safe to toggle from writer threads.
DEFAULT_FILE_MODE = 0o666 & ~_current_umask()


# File names are limited to 255 bytes (NAME_MAX of ext4, XFS, btrfs, APFS).
_NAME_MAX = 255


def hidden_name(path: Path, extra: int) -> str:
    """``"." + path.name``, for a hidden file or folder beside ``path`` whose name adds
    ``extra`` bytes to that. A name too long to take them (80 CJK characters are 240
    bytes) is cut and tagged with a hash of the whole, so that the result stays within
    the file system's limit and still tells which output it belongs to."""
    name = path.name
    room = _NAME_MAX - extra - len(".")
    if len(os.fsencode(name)) <= room:
        return f".{name}"
    tag = hashlib.sha1(os.fsencode(name)).hexdigest()[:8]
    cut = name
    while len(os.fsencode(cut)) > room - len(tag) - 1:
        cut = cut[:-1]
    return f".{cut}~{tag}"


def temporary_prefix(path: Path) -> str:
    """How the temporary file of a write to ``path`` begins: hidden, then ``path``'s
    name (:func:`hidden_name`) and a dot; ``tempfile.mkstemp`` adds 8 random characters
    and the suffix ``.part`` (video writers: ``.part.mp4`` and the like)."""
    return hidden_name(path, len(".") + 8 + len(".part.m2ts")) + "."


def temporary_beside(path: Path, suffix: str = ".part") -> Path:
    """A new, empty hidden file beside ``path`` (:func:`temporary_prefix`, then ``suffix``)
    with the permissions outputs get, for a writer that renames it onto ``path`` once the
    file is complete (a multi-page TIFF, a joined video)."""
    fd, name = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, DEFAULT_FILE_MODE)  # mkstemp creates 0600
    finally:
        os.close(fd)
    return Path(name)


# What tempfile.mkstemp adds to temporary_prefix(path): 8 random characters, ".part[.ext]".
_TEMPORARY_TAIL = re.compile(r"[a-z0-9_]{8}\.part(\.[A-Za-z0-9]+)?$")
STALE_AFTER_S = 3600.0  # a temporary file untouched this long belongs to no write under way


def remove_stale_temporaries(outputs: Iterable[Path], min_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete the temporary files that killed runs left beside ``outputs``: those named
    for one of them (:func:`temporary_prefix`) and untouched for ``min_age_s`` seconds.
    The age is what keeps a write under way safe, in this process or in another one
    writing to the same folder (a shard of the same job): mkstemp's files are written as
    soon as they are made, never left waiting. (A video's work folder clears its own:
    :mod:`.video_writer`.) Returns the files removed; one that cannot be removed is left alone."""
    prefixes_by_folder: dict[Path, set[str]] = {}
    for output in outputs:
        prefixes_by_folder.setdefault(output.parent, set()).add(temporary_prefix(output))
    removed = []
    now = time.time()
    for folder, prefixes in prefixes_by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:  # not made yet: nothing was left there
            continue
        for entry in entries:
            tail = _TEMPORARY_TAIL.search(entry.name)
            if not entry.name.startswith(".") or tail is None or entry.name[: tail.start()] not in prefixes:
                continue
            try:
                if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime >= min_age_s:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


def _written_in_place(path: Path) -> bool:
    """Whether ``path`` is a device, a pipe or a socket, or a name under /dev or /proc
    (``/dev/null``, ``/dev/stdout``): written through, since a rename over it would put a
    plain file in its place (``--csv /dev/null`` run as root replaced /dev/null itself)."""
    try:
        special = not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # not there (or a broken link): a file of our own to make
        return False
    return special or os.path.realpath(path.parent).split(os.sep)[1:2] in (["dev"], ["proc"])


def atomic_write_bytes(path: os.PathLike | str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    The final name either does not exist or holds the complete file; the
    temporary file is removed on any failure. A device or pipe (``/dev/stdout``) is
    written through instead (:func:`_written_in_place`).
    """
    path = Path(path)
    if _written_in_place(path):
        with open(path, "wb") as handle:
            handle.write(data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".part", dir=path.parent)
    try:
        os.fchmod(fd, DEFAULT_FILE_MODE)  # mkstemp creates 0600; give outputs the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
