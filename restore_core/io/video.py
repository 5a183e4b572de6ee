"""Reading and writing videos: frames out of a clip, restored frames back in, sound kept.

Through PyAV (FFmpeg's libraries, the optional ``restore[video]`` extra): OpenCV's
own video writer offers only MPEG-4 part 2 at a bit rate it fixes (35.5 dB PSNR on a
640x480 test clip, whatever is asked), cannot copy a sound track, and drops frame
timing. Here:

- Frames are decoded in presentation order as 8-bit RGB, turned upright when the
  stream carries a display rotation (phone videos), like EXIF orientation on photos.
- The output is encoded with the input's timestamps (variable frame rates survive),
  its colour matrix, range and primaries tagged as the input's, at a constant quality
  set by ``quality`` (1-100, as for JPEG): H.264 (libx264) in MP4, MOV, M4V and MKV,
  VP9 in WebM, MPEG-4 part 2 in AVI.
- Audio streams are copied packet by packet (not re-encoded) when the output
  container can hold their codec, and interleaved with the video by time.
- Writes are atomic, as for images: a hidden temporary file in the output folder,
  renamed over the final name only once the whole video is written.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from restore_core.io.images import DEFAULT_FILE_MODE, ImageError

if TYPE_CHECKING:
    import av

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")

# Output container -> video encoder. H.264 plays everywhere; WebM holds only VP8/VP9/AV1.
VIDEO_ENCODERS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9",
                  ".avi": "mpeg4"}

# Input chroma layouts kept as they are; every other one (4:2:0, 4:2:2, 10-bit, ...) is
# written as 8-bit 4:2:0, the layout every player takes.
FULL_CHROMA_FORMATS = ("yuv444p", "yuvj444p", "gbrp", "rgb24", "bgr24")

PYAV_MISSING = "restoring videos needs PyAV (FFmpeg): pip install av, or pip install 'restore[video]'"


def pyav_available() -> bool:
    return importlib.util.find_spec("av") is not None


def is_video_name(path: Path | str) -> bool:
    path = Path(path)
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def quality_to_crf(quality: int, encoder: str) -> int:
    """``--quality`` (1-100, 95 by default) as a constant-quality level of ``encoder``.

    libx264's CRF (0-51, lower is better): 51 - 0.35 q, so the default 95 gives CRF 18,
    the level x264's documentation calls visually lossless. libvpx-vp9's CRF (0-63):
    63 - 0.45 q (95 -> 20). MPEG-4 part 2's quantiser (2-31): 31 - 0.3 q (95 -> 2)."""
    if encoder == "libvpx-vp9":
        return max(0, min(63, round(63 - 0.45 * quality)))
    if encoder == "mpeg4":
        return max(2, min(31, round(31 - 0.3 * quality)))
    return max(0, min(51, round(51 - 0.35 * quality)))


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """A decoded frame as it is shown: FFmpeg's display matrix rotates the stored frame
    ``rotation`` degrees counter-clockwise (PyAV's ``VideoFrame.rotation``)."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


@dataclass(frozen=True)
class VideoInfo:
    """What a video's first video stream (cover art aside) says of itself."""

    width: int  # upright, as shown
    height: int
    frames: int  # as the container declares it, or duration x rate; 0 when neither says
    fps: Fraction
    rotation: int  # degrees counter-clockwise, from the display matrix
    pixel_format: str
    audio_streams: int
    other_streams: int  # more video (cover art), subtitles, data: not kept


def _open_input(path: Path) -> "av.container.InputContainer":
    import av

    try:
        container = av.open(str(path), mode="r")
    except FileNotFoundError:
        raise ImageError(path, "cannot read: no such file") from None
    except av.FFmpegError as exc:
        raise ImageError(path, f"cannot read: not a video FFmpeg can decode ({exc.strerror or exc})") from None
    except OSError as exc:
        raise ImageError(path, f"cannot read: {exc.strerror or exc}", exc.errno) from None
    if not _moving_picture_streams(container):
        container.close()
        raise ImageError(path, "cannot read: the file holds no video stream")
    return container


def _moving_picture_streams(container: "av.container.InputContainer") -> list:
    """The video streams, less cover art (an MP4's or MKV's attached picture is a
    one-frame "video" stream, and may come first)."""
    import av

    still = av.stream.Disposition.attached_pic | av.stream.Disposition.still_image
    return [stream for stream in container.streams.video if not stream.disposition & still]


class VideoReader:
    """Decoded frames of a video's first video stream (cover art aside), upright, as H x W x 3 uint8 RGB."""

    def __init__(self, path: os.PathLike | str, max_pixels: int | None = None) -> None:
        self.path = Path(path)
        self.container = _open_input(self.path)
        self.stream = _moving_picture_streams(self.container)[0]
        self.stream.thread_type = "AUTO"  # frame and slice threads in the decoder
        context = self.stream.codec_context
        width, height = context.width, context.height
        if width <= 0 or height <= 0:
            self.close()
            raise ImageError(self.path, "cannot read: the video stream declares no frame size")
        if max_pixels is not None and width * height > max_pixels:
            self.close()
            raise ImageError(self.path, f"frames of {width}x{height} exceed --max-pixels {max_pixels}")
        rotation = self._rotation()
        if round(rotation / 90) % 2:
            width, height = height, width
        rate = Fraction(self.stream.average_rate or self.stream.guessed_rate or Fraction(25))
        frames = int(self.stream.frames or 0)
        if not frames and self.container.duration:  # Matroska and WebM do not count frames: estimate
            frames = round(self.container.duration / 1_000_000 * rate)
        streams = self.container.streams
        self.info = VideoInfo(
            width, height, frames, rate, rotation, context.format.name if context.format else "",
            len(streams.audio), len(streams) - 1 - len(streams.audio),
        )

    def _rotation(self) -> int:
        """The display rotation, read off the first frame (PyAV exposes it per frame);
        the container is then rewound."""
        try:
            first = next(self.container.decode(self.stream), None)
        except Exception:  # noqa: BLE001 - the error comes back, with the file's name, in frames()
            first = None
        self.container.seek(0)
        return int(first.rotation) if first is not None else 0

    def frames(self) -> Iterator[tuple[np.ndarray, int | None]]:
        """(upright RGB frame, presentation timestamp in the stream's time base) in
        presentation order. The colour matrix and range are the stream's own."""
        import av

        try:
            for frame in self.container.decode(self.stream):
                rgb = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range or None)
                yield upright(rgb, self.info.rotation), frame.pts
        except av.FFmpegError as exc:
            raise ImageError(self.path, f"cannot read: the video is damaged ({exc.strerror or exc})") from None

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoWriter:
    """Encodes restored frames into ``output`` like ``reader``'s video, with its sound.

    Frames go to a hidden temporary file beside ``output``; :meth:`commit` finishes
    it and renames it over ``output``; :meth:`abort` (or leaving a ``with`` block on
    an exception) deletes it. ``notes`` says what the output could not keep.
    """

    def __init__(self, output: os.PathLike | str, reader: VideoReader, quality: int = 95) -> None:
        import av

        self.output = Path(output)
        self.reader = reader
        self.notes: list[str] = []
        suffix = self.output.suffix.lower()
        if suffix not in VIDEO_ENCODERS:
            raise ImageError(self.output, f"cannot write: {suffix or 'no extension'} is not a video format ({', '.join(VIDEO_EXTENSIONS)})")
        try:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            fd, self.temporary = tempfile.mkstemp(prefix=f".{self.output.name}.", suffix=f".part{suffix}", dir=self.output.parent)
            os.close(fd)
            os.chmod(self.temporary, DEFAULT_FILE_MODE)
        except OSError as exc:
            raise ImageError(self.output, f"cannot write: {exc.strerror or exc}", exc.errno) from None
        self.container: av.container.OutputContainer | None = None
        self._audio_input: av.container.InputContainer | None = None
        try:
            self.container = av.open(self.temporary, mode="w", format=_muxer_for(suffix))
            self._add_video_stream(suffix, quality)
            self._add_audio_streams()
        except av.FFmpegError as exc:
            self.abort()
            raise ImageError(self.output, f"cannot write: {exc.strerror or exc}") from None
        except BaseException:
            self.abort()
            raise

    def _add_video_stream(self, suffix: str, quality: int) -> None:
        info, source = self.reader.info, self.reader.stream
        encoder = VIDEO_ENCODERS[suffix]
        odd_size = bool(info.width % 2 or info.height % 2)  # 4:2:0 needs even sizes
        if odd_size and encoder == "mpeg4":
            raise ImageError(self.output, f"cannot write: AVI (MPEG-4 part 2) needs even frame sizes, not {info.width}x{info.height}; use .mkv or .mp4")
        full_chroma = encoder != "mpeg4" and (info.pixel_format in FULL_CHROMA_FORMATS or odd_size)
        level = quality_to_crf(quality, encoder)
        options = {"crf": str(level)} if encoder == "libx264" else {"crf": str(level), "b": "0", "row-mt": "1"} if encoder == "libvpx-vp9" else {}
        stream = self.container.add_stream(encoder, rate=info.fps, options=options)
        stream.width, stream.height = info.width, info.height
        stream.pix_fmt = "yuv444p" if full_chroma else "yuv420p"
        # AVI has no timestamps of its own, only a frame rate: frames are numbered at it
        # (the input's time base there reads as hundreds of empty frames a second).
        self._numbered = suffix == ".avi"
        time_base = 1 / Fraction(info.fps) if self._numbered else source.time_base
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if encoder == "mpeg4":  # a fixed quantiser: MPEG-4's constant quality
            stream.codec_context.qscale = level
        if "8" not in info.pixel_format and any(bits in info.pixel_format for bits in ("10", "12", "16")):
            self.notes.append(f"{info.pixel_format} video written with 8 bits per sample")
        # Tag the output's colour as the input's, and convert to it (not to FFmpeg's default
        # BT.601). AVI stores no colour tags: its frames are converted as players read
        # untagged video (BT.601, limited range).
        self._colorspace = self._color_range = None
        if not self._numbered:
            source_context = source.codec_context
            self._colorspace = source_context.colorspace or None
            self._color_range = source_context.color_range or None
            for name in ("colorspace", "color_range", "color_primaries", "color_trc"):
                value = getattr(source_context, name, None)
                if value is not None:
                    setattr(stream.codec_context, name, value)
        self.stream = stream
        self._frames_written = 0
        self._last_pts: int | None = None

    def _add_audio_streams(self) -> None:
        """Copy every audio stream whose codec the output container holds."""
        reader = self.reader
        if reader.info.other_streams:
            self.notes.append(f"{reader.info.other_streams} stream(s) of cover art, subtitles or data not kept")
        if not reader.info.audio_streams:
            self._audio_pairs: dict[int, object] = {}
            self._audio_packets = iter(())
            return
        self._audio_input = _open_input(reader.path)
        supported = self.container.supported_codecs
        pairs = {}
        for stream in self._audio_input.streams.audio:
            codec = stream.codec_context.name
            if codec in supported:
                pairs[stream.index] = self.container.add_stream_from_template(stream)
            else:
                self.notes.append(f"{codec} audio cannot go into {self.output.suffix.lower()}; not kept (use .mkv)")
        self._audio_pairs = pairs
        wanted = [s for s in self._audio_input.streams.audio if s.index in pairs]
        self._audio_packets = (p for p in self._audio_input.demux(wanted) if p.dts is not None) if wanted else iter(())
        self._pending_audio = None

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Mux copied audio packets up to ``seconds`` (all of them when None)."""
        if not self._audio_pairs:
            return
        while True:
            packet = self._pending_audio if self._pending_audio is not None else next(self._audio_packets, None)
            self._pending_audio = None
            if packet is None:
                return
            if seconds is not None and float(packet.dts * packet.time_base) > seconds:
                self._pending_audio = packet
                return
            packet.stream = self._audio_pairs[packet.stream.index]
            self.container.mux(packet)

    def write(self, rgb: np.ndarray, pts: int | None) -> None:
        """Encode one upright H x W x 3 uint8 RGB frame at ``pts`` (the input's timestamp)."""
        import av

        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame = frame.reformat(format=self.stream.pix_fmt, dst_colorspace=self._colorspace, dst_color_range=self._color_range)
        if self._numbered:
            pts = self._frames_written
        elif pts is None:  # an input without timestamps: the frame's place at the declared rate
            pts = round(self._frames_written / (self.reader.info.fps * self.stream.time_base))
        if self._last_pts is not None and pts <= self._last_pts:  # a damaged file's repeated stamp: encoders refuse it
            pts = self._last_pts + 1
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = self.stream.time_base
        self._frames_written += 1
        try:
            for packet in self.stream.encode(frame):
                self._mux_audio_until(float(packet.pts * packet.time_base) if packet.pts is not None else None)
                self.container.mux(packet)
        except av.FFmpegError as exc:
            raise ImageError(self.output, f"cannot write: {exc.strerror or exc}", getattr(exc, "errno", None)) from None

    def commit(self) -> None:
        """Flush the encoder, copy the rest of the sound, and rename into place."""
        import av

        try:
            for packet in self.stream.encode(None):
                self._mux_audio_until(float(packet.pts * packet.time_base) if packet.pts is not None else None)
                self.container.mux(packet)
            self._mux_audio_until(None)
            self.container.close()
            self.container = None
            os.replace(self.temporary, self.output)
        except av.FFmpegError as exc:
            self.abort()
            raise ImageError(self.output, f"cannot write: {exc.strerror or exc}", getattr(exc, "errno", None)) from None
        except OSError as exc:
            self.abort()
            raise ImageError(self.output, f"cannot write: {exc.strerror or exc}", exc.errno) from None
        finally:
            self._close_audio()

    def abort(self) -> None:
        """Delete the temporary file; the output name is left as it was."""
        if self.container is not None:
            try:
                self.container.close()
            except Exception:  # noqa: BLE001 - closing a half-written file may fail; it is deleted anyway
                pass
            self.container = None
        self._close_audio()
        try:
            os.unlink(self.temporary)
        except FileNotFoundError:
            pass

    def _close_audio(self) -> None:
        if self._audio_input is not None:
            self._audio_input.close()
            self._audio_input = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, kind: type | None, *rest: object) -> None:
        if kind is not None or self.container is not None:
            self.abort()


def _muxer_for(suffix: str) -> str:
    """FFmpeg's muxer for an output extension (the temporary name ends in .part.EXT, but
    the format is named explicitly all the same)."""
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}[suffix]
