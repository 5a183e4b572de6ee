"""Animated GIFs, PNGs (APNG), WebPs and AVIFs: read a frame at a time, each frame as a viewer
shows it (Pillow draws it over what the frames before it left), and the restored frames
written into one new animation with the source's timing.

Every frame is written whole, so nothing of a frame's predecessors shows through it: a
GIF with transparency is written with each frame replacing the last (disposal 2), an
APNG and a WebP replace the regions that changed, alpha included. The timing is kept:
each frame's duration and the number of times the animation plays.

Pillow's animation encoders hold every frame until the file is written, so the restored
frames are kept, encoded for their format (a GIF's palette frames take a byte a pixel),
until :meth:`AnimationWriter.commit`; the file is then written to a hidden temporary
name beside the output and renamed onto it, as every output is (:mod:`.files`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from restore_core.io.containers import avif_bit_depth, webp_is_lossless
from restore_core.io.files import temporary_beside
from restore_core.io.gif import frame_layout, frame_pixels, gif_losses, palette_image, shared_palette
from restore_core.io.images import SUPPORTED_EXTENSIONS, ImageError, WriteError

# Formats that hold an animation, by the extension their copies are written with (AVIF
# where this install's Pillow reads and writes it).
ANIMATION_FORMATS = {".gif": "GIF", ".png": "PNG", ".webp": "WEBP"} | ({".avif": "AVIF"} if ".avif" in SUPPORTED_EXTENSIONS else {})
_ANIMATION_NAMES = ANIMATION_FORMATS | {".apng": "PNG"}  # what browsers and GIF makers name an animated PNG too
_WITHOUT_GREY = ("WEBP", "AVIF")  # formats whose frames are colour: a grey frame is written as RGB
_GIF_TRAILER = b";"  # the byte that closes a GIF
_PNG_BIT_DEPTH_OFFSET = 24  # IHDR's bit depth: 8-byte signature, 8-byte chunk head, width, height


def frame_count(path: os.PathLike | str) -> int:
    """How many frames Pillow finds in the GIF, PNG, WebP or AVIF at ``path``; 0 when it is not
    a regular file of those names that Pillow can open (the image reader says why)."""
    path = Path(path)
    if path.suffix.lower() not in _ANIMATION_NAMES or not path.is_file():  # a FIFO would block the open
        return 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return int(getattr(image, "n_frames", 1))
    except Exception:  # noqa: BLE001 - not an image, or a broken one: the single-image reader reports it
        return 0


def is_animation(path: os.PathLike | str) -> bool:
    """Whether ``path`` is an animated GIF, PNG, WebP or AVIF: restored frame by frame into an
    animation, not as its first frame."""
    return frame_count(path) > 1


@dataclass(frozen=True)
class Frame:
    """One frame of an animation: where it stands and how long it is shown."""

    index: int
    duration: float = 0.0  # milliseconds, as the source gives them (a GIF counts in hundredths of a second)


class Animation:
    """An animated GIF, PNG, WebP or AVIF opened for reading; an :class:`ImageError` naming the
    file when it cannot be, or when its frames are over ``max_pixels``."""

    unit = "frames"  # what a result counts

    def __init__(self, path: os.PathLike | str, max_pixels: int) -> None:
        self.path = Path(path)
        try:
            self._image = Image.open(self.path)
            self.format = (self._image.format or "").lower()
            self.count = int(getattr(self._image, "n_frames", 1))
            self.width, self.height = self._image.size
        except Exception as exc:  # noqa: BLE001 - Pillow's many ways of failing on a broken file
            raise ImageError(self.path, f"cannot read the animation (truncated or corrupt: {exc})") from None
        if self.width * self.height > max_pixels:
            self.close()
            raise ImageError(self.path, f"frames are {self.width}x{self.height} = {self.width * self.height:,} pixels, "
                                        f"over the limit of {max_pixels:,} (--max-pixels)")
        info = self._image.info
        self.icc_profile: bytes | None = info.get("icc_profile") or None
        self.exif: bytes | None = info.get("exif") or None
        # How many times it plays (0: for ever); None: a GIF without a loop count plays once.
        # Pillow reads no count from an AVIF, and libavif writes "for ever" unless told.
        self.plays: int | None = 0 if self.format == "avif" else info.get("loop")
        self.default_image = bool(info.get("default_image"))  # an APNG's first image is shown only where animation is not
        data = self.path.read_bytes() if self.format in ("webp", "avif") else b""  # what their headers say
        self.lossless = self.format == "webp" and webp_is_lossless(data)
        try:
            self.mode = self._frame_mode()
        except ImageError:
            self.close()
            raise
        self.notes: list[str] = []
        if self.format == "png" and self._png_bit_depth() == 16:
            self.notes.append("16-bit frames read and written at 8 bits")
        if self.format == "avif" and (bits := avif_bit_depth(data) or 8) > 8:
            self.notes.append(f"{bits}-bit frames read and written at 8 bits")
        if self.format == "gif" and not self._ends_with_gif_trailer():  # Pillow reads the frames before a cut without a word
            self.notes.append(f"the file ends without a GIF's closing byte: it may be cut short after frame {self.count}")

    def _frame_mode(self) -> str:
        """The mode every frame is read in (:func:`~restore_core.io.gif.frame_layout`): a
        GIF's frames are looked at one by one, as any of them may bring transparency."""
        if self.format != "gif":
            return frame_layout({self._image.mode}, "transparency" in self._image.info)
        modes, transparent = set(), False
        try:
            for index in range(self.count):
                self._image.seek(index)
                modes.add(self._image.mode)
                transparent = transparent or "transparency" in self._image.info
        except Exception as exc:  # noqa: BLE001
            raise ImageError(self.path, f"cannot read frame {index + 1} of {self.count}: {exc}") from None
        return frame_layout(modes, transparent)

    def _ends_with_gif_trailer(self) -> bool:
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == _GIF_TRAILER

    def _png_bit_depth(self) -> int:
        with open(self.path, "rb") as handle:
            head = handle.read(_PNG_BIT_DEPTH_OFFSET + 1)
        return head[_PNG_BIT_DEPTH_OFFSET] if len(head) > _PNG_BIT_DEPTH_OFFSET else 8

    def frames(self) -> Iterator[tuple[np.ndarray, Frame]]:
        """Each frame's samples (uint8, RGB order, in :attr:`mode`) as a viewer shows it,
        with its place and duration, in order; an :class:`ImageError` for one that
        cannot be decoded."""
        for index in range(self.count):
            try:
                self._image.seek(index)
                self._image.load()  # a WebP frame's duration is known once it is decoded
                pixels = frame_pixels(self._image, self.mode)
            except Exception as exc:  # noqa: BLE001
                raise ImageError(self.path, f"cannot decode frame {index + 1} of {self.count}: {exc}") from None
            yield pixels, Frame(index, float(self._image.info.get("duration") or 0))

    def output_refusal(self, output: Path) -> str | None:
        """Why the restored animation cannot be written as ``output``: its format holds
        one picture. None where it can."""
        if output.suffix.lower() in _ANIMATION_NAMES:
            return None
        *others, last = ANIMATION_FORMATS
        return (f"has {self.count} frames, and a {output.suffix.lstrip('.')} file holds one: write it as an animation "
                f"({', '.join(others)} or {last}: leave out --ext, or name the output so)")

    def held_bytes(self, output: Path) -> int:
        """What the restored frames take while they wait to be written as ``output``
        (Pillow's encoders hold them all, and a GIF's palette is made from all of them):
        a byte a channel."""
        channels = len(self.mode)  # L, LA, RGB or RGBA
        if _ANIMATION_NAMES.get(output.suffix.lower()) in _WITHOUT_GREY:
            channels = max(channels, 3)
        return self.count * self.width * self.height * channels

    def writer(self, output: Path, quality: int = 95) -> "AnimationWriter":
        """A writer of the restored frames into ``output``, lossy WebP frames at ``quality``
        (what a GIF copy of a PNG or WebP loses is added to :meth:`read_notes`)."""
        if output.suffix.lower() == ".gif" and self.format != "gif" and (
                lost := gif_losses(self.mode == "L", self.mode in ("LA", "RGBA"), self.icc_profile is not None)):
            self.notes.append(lost)
        if self.default_image and _ANIMATION_NAMES.get(output.suffix.lower()) != "PNG":
            self.notes.append(f"its default image (the picture an APNG shows where animations are not) not kept: "
                              f"a {output.suffix.lstrip('.')} animation has none")
        return AnimationWriter(output, self, quality)

    def read_notes(self) -> list[str]:
        """What the copy cannot keep of the source."""
        return list(self.notes)

    def close(self) -> None:
        self._image.close()


class AnimationWriter:
    """The restored frames of ``source``, written as one animation at ``output`` (its
    format from its extension) with the source's durations and play count; lossy WebP
    frames at ``quality`` (a lossless WebP's are lossless). Nothing is at ``output``
    until :meth:`commit`; :meth:`abort` leaves nothing anywhere."""

    def __init__(self, output: os.PathLike | str, source: Animation, quality: int = 95) -> None:
        self.output = Path(output)
        self.format = _ANIMATION_NAMES[self.output.suffix.lower()]
        self._source = source
        self._quality = quality
        self._frames: list[Image.Image | np.ndarray] = []  # a GIF's as samples until its palette is made
        self._durations: list[float] = []  # of the frames shown in turn: not an APNG's default image
        self._temporary: Path | None = None
        # An APNG's first picture may be its default image, outside the animation: kept
        # as such in an APNG, left out of the other formats' animations.
        self._keeps_default_image = source.default_image and self.format == "PNG"

    def _frame_image(self, pixels: np.ndarray) -> Image.Image | np.ndarray:
        if self.format == "GIF":
            return pixels  # reduced to the palette all frames share, at commit
        image = Image.fromarray(pixels)
        if self.format in _WITHOUT_GREY and image.mode in ("L", "LA"):
            image = image.convert("RGBA" if image.mode == "LA" else "RGB")
        return image

    def write_all(self, frames: Iterator[tuple[np.ndarray, Frame]]) -> None:
        """Take the restored frames, in order (a :class:`~restore_core.engine.background.WriteBehind`
        consumer: frames are made images in its thread)."""
        for pixels, frame in frames:
            default_image = frame.index == 0 and self._source.default_image  # outside the animation: no duration
            if default_image and not self._keeps_default_image:
                continue
            self._frames.append(self._frame_image(pixels))
            if not default_image:
                self._durations.append(frame.duration)

    def _save_options(self) -> dict:
        source, has_alpha = self._source, self._source.mode in ("LA", "RGBA")
        durations = self._durations if self.format == "PNG" else [round(ms) for ms in self._durations]  # whole ms but in an APNG
        options: dict = {"save_all": True, "append_images": self._frames[1:], "duration": durations}
        if self.format == "GIF":
            if source.plays is not None:
                options["loop"] = source.plays
            if has_alpha:  # each frame replaces the last: its transparent pixels show no earlier frame
                options["disposal"] = 2
        else:
            options["loop"] = 1 if source.plays is None else source.plays  # 0: for ever
            if source.icc_profile:
                options["icc_profile"] = source.icc_profile
            if source.exif:
                options["exif"] = source.exif
        if self._keeps_default_image:
            options["default_image"] = True  # the first image; the durations are those of the frames after it
        if self.format == "WEBP":
            options.update({"lossless": True} if source.lossless else {"quality": self._quality})
        if self.format == "AVIF":
            options["quality"] = self._quality
        return options

    def commit(self) -> None:
        """Write the animation and rename it onto ``output``; a :class:`WriteError` when
        the disk refuses (nothing left behind then)."""
        if not self._frames:
            raise ImageError(self.output, "no frame to write")
        if self.format == "GIF":
            self._to_palette_frames()
        try:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            self._temporary = temporary_beside(self.output)
            self._frames[0].save(self._temporary, format=self.format, **self._save_options())
            os.replace(self._temporary, self.output)
            self._temporary = None
        except OSError as exc:
            self.abort()
            raise WriteError(self.output, exc.strerror or str(exc), exc.errno) from None
        finally:
            self._frames.clear()

    def _to_palette_frames(self) -> None:
        """A GIF's frames reduced to one palette (:func:`~restore_core.io.gif.shared_palette`;
        grey frames need none), one frame at a time, each frame's samples let go as it is."""
        grey = self._frames[0].ndim == 2
        palette = None if grey else shared_palette(self._frames)
        for index, pixels in enumerate(self._frames):
            self._frames[index] = palette_image(pixels, palette)

    def abort(self) -> None:
        """Drop the frames and any temporary file."""
        self._frames.clear()
        if self._temporary is not None:
            self._temporary.unlink(missing_ok=True)
            self._temporary = None
