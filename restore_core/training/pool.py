"""Where a run's training images live while patches are cut from them: memory, or a
memory-mapped file on disk.

The sampler cuts patches from whole decoded images (8-bit H x W x 3), so every
training image is held for the whole run. In memory that is fastest, and it is the
default while the images fit. A dataset larger than memory (DF2K, the usual
denoising and super-resolution training set: 3,450 2K photographs, about 29 GB as
8-bit pixels) cannot be held there; :class:`DiskPool` appends each image to one file
in the run folder and hands back a read-only view of it mapped from that file. The
operating system keeps in RAM the pages it has room for and reads the others back
when a patch touches them, so the run trains at any dataset size, at the speed of
the disk where the page cache falls short. Batches are the same either way.

The file is unlinked as soon as it is made (POSIX): it holds no name in the run
folder, needs no cleaning up, and its space is freed when the run ends, however it
ends. (Under ``torchrun`` the file of a machine's first rank keeps a name until the
machine's other ranks have mapped it: :func:`map_pool_file`.) It is filled in segments of :attr:`DiskPool.segment_bytes`, each mapped once,
so thousands of images need a handful of mappings (and file descriptors).
"""

from __future__ import annotations

import atexit
import contextlib
import mmap
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np
from PIL import Image

from restore_core.io import jpeg_xl

POOL_MODES = ("auto", "memory", "disk")
AUTO_DISK_SHARE = 0.5  # auto: images needing more than this share of the available memory go to disk
_GIB = 2**30


class ImagePool(Protocol):
    kind: str

    def keep(self, image: np.ndarray) -> np.ndarray:
        """Store an 8-bit image; returns the array to sample from (read-only)."""
        ...


class MemoryPool:
    """Images kept as the arrays they are."""

    kind = "memory"

    def keep(self, image: np.ndarray) -> np.ndarray:
        image.flags.writeable = False  # what the disk pool gives; a sampler writing into the pool is a bug either way
        return image


class DiskPool:
    """Images appended to an unlinked file in ``folder``, returned as read-only views of
    its memory mapping. Segments are mapped writable while being filled; the returned
    views are marked read-only.

    With ``path`` the file keeps that name, so that other processes can map it
    (:func:`map_pool_file`, with :attr:`entries`); whoever made it removes the name.
    """

    kind = "disk"
    segment_bytes = _GIB

    def __init__(self, folder: Path, path: Path | None = None) -> None:
        if path is not None:
            self._file = open(path, "w+b")  # noqa: SIM115 - open for the pool's life
        else:
            descriptor, name = tempfile.mkstemp(prefix=".restore-pool-", suffix=".u8", dir=folder)
            self._file = os.fdopen(descriptor, "r+b")
            try:
                os.unlink(name)  # POSIX: the open file lives on without a name until the run ends
            except OSError:  # Windows keeps open files' names: remove it at exit instead
                atexit.register(_remove_quietly, name)
        self.folder, self.path = folder, path
        self.entries: list[tuple[int, tuple[int, ...]]] = []  # (file offset, shape) of each image, in the order kept
        self._segments: list[mmap.mmap] = []
        self._segment_start = 0  # file offset of the current segment
        self._used = 0  # bytes used in the current segment
        self.stored_bytes = 0

    def _new_segment(self, at_least: int) -> None:
        granularity = mmap.ALLOCATIONGRANULARITY
        start = self._segment_start + (len(self._segments[-1]) if self._segments else 0)
        size = -(-max(self.segment_bytes, at_least) // granularity) * granularity
        self._file.truncate(start + size)  # sparse: disk blocks are taken as images are written
        self._segments.append(mmap.mmap(self._file.fileno(), size, offset=start))
        self._segment_start, self._used = start, 0

    def keep(self, image: np.ndarray) -> np.ndarray:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if not self._segments or self._used + image.nbytes > len(self._segments[-1]):
            self._new_segment(image.nbytes)
        view = np.ndarray(image.shape, np.uint8, buffer=self._segments[-1], offset=self._used)
        view[...] = image  # a full disk here would be SIGBUS: make_pool checks the free space first
        view.flags.writeable = False
        self.entries.append((self._segment_start + self._used, image.shape))
        self._used += image.nbytes
        self.stored_bytes += image.nbytes
        return view


def map_pool_file(path: Path, entries: list[tuple[int, tuple[int, ...]]]) -> list[np.ndarray]:
    """The images a :class:`DiskPool` with a named file kept, mapped read-only by another
    process (one mapping for all of them): ``entries`` is that pool's :attr:`~DiskPool.entries`."""
    with open(path, "rb") as file:
        mapping = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    return [np.ndarray(tuple(shape), np.uint8, buffer=mapping, offset=offset) for offset, shape in entries]


def _remove_quietly(name: str | os.PathLike) -> None:
    with contextlib.suppress(OSError):
        os.remove(name)


def image_bytes(paths: Iterable[Path]) -> int:
    """Bytes the images at ``paths`` take as 8-bit RGB, from their headers alone
    (unreadable headers count 0: reading the image later gives the error)."""
    total = 0
    for path in paths:
        try:
            width, height = _header_size(path)
        except Exception:  # noqa: BLE001 - any header that cannot be parsed; the real read reports it
            continue
        total += 3 * width * height
    return total


def _header_size(path: Path) -> tuple[int, int]:
    """(width, height) from an image's header: Pillow's, or a JPEG XL's codestream
    header (Pillow knows JPEG XL only through a plugin, which decodes the whole file to open it)."""
    if path.suffix.lower() == ".jxl":
        with open(path, "rb") as file:
            header = jpeg_xl.read_header(file.read(65536))
        return header.width, header.height
    with Image.open(path) as image:
        return image.size


def choose_pool(mode: str, needed_bytes: int, available_bytes: int | None, copies: int = 1) -> str:
    """``memory`` or ``disk`` for ``mode`` (auto, memory, disk), given the bytes the
    training images need, the memory available (None: unknown, as off Linux) and how
    many processes on this machine would each hold a memory pool of their own (the
    ranks of a ``torchrun`` job; they share one disk pool).

    auto picks disk when the memory pools would take more than half the available
    memory (the models, optimisers and batches need the rest); an explicit memory pool
    that cannot fit at all is refused before hours of decoding end in the OOM killer.
    """
    if mode not in POOL_MODES:
        raise ValueError(f"pool {mode!r}: expected one of {', '.join(POOL_MODES)}")
    if mode == "disk" or available_bytes is None:
        return "memory" if mode == "auto" else mode
    total = needed_bytes * copies
    if mode == "memory":
        if total > available_bytes:
            ranks = f" on each of {copies} ranks" if copies > 1 else ""
            raise ValueError(f"the training images need {needed_bytes / _GIB:.1f} GiB as 8-bit pixels{ranks}, more than the "
                             f"{available_bytes / _GIB:.1f} GiB of memory available: --pool disk maps them from a file "
                             "in the run folder instead")
        return "memory"
    return "disk" if total > AUTO_DISK_SHARE * available_bytes else "memory"


def make_pool(kind: str, folder: Path | None, needed_bytes: int, shared_path: Path | None = None) -> ImagePool:
    """The pool :func:`choose_pool` chose; a disk pool checks the free space of ``folder``
    first. ``shared_path`` names a disk pool's file for other processes to map."""
    if kind == "memory":
        return MemoryPool()
    if folder is None:
        raise ValueError("a disk pool needs a folder (the run folder) for its file")
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if needed_bytes > free:
        raise ValueError(f"{folder}: the training images need {needed_bytes / _GIB:.1f} GiB for the disk pool, "
                         f"and only {free / _GIB:.1f} GiB is free there")
    return DiskPool(folder, shared_path)
