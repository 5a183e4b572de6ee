"""Videos: frames out of a clip upright, and how a restored one is encoded; sound kept.

Through PyAV (FFmpeg's libraries, the optional ``restore[video]`` extra): OpenCV's
own video writer offers only MPEG-4 part 2 at a bit rate it fixes (35.5 dB PSNR on a
640x480 test clip, whatever is asked), cannot copy a sound track, and drops frame
timing. Here:

- Frames are decoded in presentation order as 8-bit RGB (16-bit RGB for a video of 10
  or more bits per sample: an iPhone's HDR HEVC, a camera's 10-bit log, ProRes),
  deinterlaced when coded as two fields (bwdif), turned upright when the stream carries
  a display rotation (phone videos), like EXIF orientation on photos.
- The output is encoded with the input's timestamps (variable frame rates survive),
  its colour matrix, range, primaries and transfer (HLG, PQ) tagged as the input's, at a
  constant quality set by ``quality`` (1-100, as for JPEG): H.264 (libx264) in MP4,
  MOV, M4V, MKV and MPEG-TS, VP9 in WebM, MPEG-4 part 2 in AVI; containers only read
  (MPEG-PS, 3GP, WMV, FLV) come out as MKV. A video of 10 or more bits goes into those
  that take HEVC (all but WebM and AVI) as 10-bit HEVC (libx265, Main 10, tagged
  ``hvc1`` for Apple's players), as phones record HDR: 8 bits would band its gradients.
- Audio streams are copied packet by packet (not re-encoded) when the output
  container can hold their codec, and interleaved with the video by time.
- Writing, in resumable parts joined at the end: :mod:`.video_writer`.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import struct
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from restore_core.io.images import ImageError

if TYPE_CHECKING:
    import av

# Output container -> video encoder. H.264 plays everywhere; WebM holds only VP8/VP9/AV1.
# MPEG transport streams (.ts of dashcams, .mts/.m2ts of AVCHD camcorders) take H.264 too.
VIDEO_ENCODERS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9",
                  ".avi": "mpeg4", ".ts": "libx264", ".mts": "libx264", ".m2ts": "libx264"}
WRITABLE_VIDEO_EXTENSIONS = tuple(VIDEO_ENCODERS)
# Read, not written (old or closed containers): their videos come out as Matroska, which
# takes whatever sound they carry (MP2, WMA, ...).
READ_ONLY_VIDEO_EXTENSIONS = (".mpg", ".mpeg", ".3gp", ".wmv", ".flv")
VIDEO_EXTENSIONS = WRITABLE_VIDEO_EXTENSIONS + READ_ONLY_VIDEO_EXTENSIONS
READ_ONLY_VIDEO_OUTPUT = ".mkv"

# Videos of more than 8 bits per sample: 10-bit HEVC in these containers (WebM holds
# VP9, 8-bit only in PyAV's FFmpeg; AVI holds MPEG-4 part 2).
DEEP_VIDEO_CONTAINERS = (".mp4", ".m4v", ".mov", ".mkv", ".ts", ".mts", ".m2ts")
DEEP_ENCODER = "libx265"
# x265's CRF scale runs above x264's (its default is 28, x264's 23). Measured on 10
# real 1280x720 GoPro frames: x264 at CRF 18 (8-bit) 39.00 dB in 0.37 MB; x265 10-bit
# at 18, 21 and 23: 41.29 dB / 0.31 MB, 39.63 / 0.22, 38.53 / 0.17. So 3 above x264's
# level keeps its fidelity in 60 % of its size.
X265_CRF_OFFSET = 3

PYAV_MISSING = "restoring videos needs PyAV (FFmpeg): pip install av, or pip install 'restore[video]'"


def pyav_available() -> bool:
    return importlib.util.find_spec("av") is not None


def encoder_available(name: str) -> bool:
    """Whether this install's FFmpeg (PyAV's) has the video encoder ``name``."""
    import av

    try:
        av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - av.codec.codec.UnknownCodecError, and builds without it
        return False
    return True


def is_video_name(path: Path | str) -> bool:
    path = Path(path)
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def output_video_suffix(source: Path) -> str:
    """The extension a video restored from ``source`` gets by default: its own, or
    :data:`READ_ONLY_VIDEO_OUTPUT` for a container that is read, not written."""
    return source.suffix if source.suffix.lower() in WRITABLE_VIDEO_EXTENSIONS else READ_ONLY_VIDEO_OUTPUT


def has_full_chroma(pixel_format: str) -> bool:
    """Whether frames of ``pixel_format`` hold colour at every pixel: RGB in any order,
    depth or padding (``bgr0``, ``gbrp10le``, ``rgba``), a palette, or YUV 4:4:4 (``yuv444p``,
    ``nv24``). Such videos are written 4:4:4; every other layout (4:2:0, 4:2:2, grey) as
    4:2:0, the one every player takes. Read from FFmpeg's own description of the format:
    a list of names missed ``bgr0`` (FFV1's RGB) and ``rgba``, and halved their colour."""
    import av

    try:
        layout = av.VideoFormat(pixel_format, 16, 16)
    except (ValueError, TypeError):  # a name this FFmpeg does not know
        return False
    planes = layout.components
    return bool(layout.has_palette) or (len(planes) >= 3 and all(plane.width == 16 and plane.height == 16 for plane in planes))


def has_alpha(pixel_format: str) -> bool:
    """Whether frames of ``pixel_format`` carry an alpha channel (``rgba``, ``yuva444p``,
    ProRes 4444's ``yuva444p10le``): restore reads colour alone, so it is not kept."""
    import av

    try:
        return any(plane.is_alpha for plane in av.VideoFormat(pixel_format, 16, 16).components)
    except (ValueError, TypeError):
        return False


def quality_to_crf(quality: int, encoder: str) -> int:
    """``--quality`` (1-100, 95 by default) as a constant-quality level of ``encoder``.

    libx264's CRF (0-51, lower is better): 51 - 0.35 q, so the default 95 gives CRF 18,
    the level x264's documentation calls visually lossless. libvpx-vp9's CRF (0-63):
    63 - 0.45 q (95 -> 20). MPEG-4 part 2's quantiser (2-31): 31 - 0.3 q (95 -> 2).
    libx265's CRF: libx264's + :data:`X265_CRF_OFFSET` (95 -> 21)."""
    if encoder == "libvpx-vp9":
        return max(0, min(63, round(63 - 0.45 * quality)))
    if encoder == "mpeg4":
        return max(2, min(31, round(31 - 0.3 * quality)))
    if encoder == DEEP_ENCODER:  # libx265: x264's level moved onto x265's scale (95 -> 21)
        return max(0, min(51, round(51 - 0.35 * quality) + X265_CRF_OFFSET))
    return max(0, min(51, round(51 - 0.35 * quality)))


def side_data_of(frame: "av.VideoFrame") -> list:
    """A frame's side data entries (``av.sidedata.SideData``, each with its ``type``).
    PyAV 18.1.0 iterates ``frame.side_data`` as a list of them; 18.1.1 made it a mapping
    whose iteration gives their types (and whose ``values()`` fails on 18.1.0)."""
    container = frame.side_data
    return [item if hasattr(item, "type") else container[item] for item in container]


def hdr10_parameters(frame: "av.VideoFrame") -> str:
    """A frame's HDR10 static metadata (SMPTE ST 2086 mastering display, CTA-861.3 light
    levels) as x265 parameters, so that a restored HDR10 video tells a display the same
    brightness range; "" when it carries none. FFmpeg's side data structures: the
    display's primaries (red, green, blue), white point, minimum and maximum luminance as
    rationals, then two flags (88 bytes); MaxCLL and MaxFALL (8 bytes). x265 counts
    chromaticity in 0.00002 and luminance in 0.0001 cd/m2, primaries green, blue, red."""
    params = []
    for side_data in side_data_of(frame):
        data = bytes(side_data)
        if side_data.type.name == "MASTERING_DISPLAY_METADATA" and len(data) == 88:
            values = struct.unpack("<22i", data)
            ratio = [values[i] / values[i + 1] if values[i + 1] else 0.0 for i in range(0, 20, 2)]
            (rx, ry, gx, gy, bx, by, wx, wy, low, high), has_primaries, has_luminance = ratio, values[20], values[21]
            if has_primaries and has_luminance:
                params.append(f"master-display=G{_xy(gx, gy)}B{_xy(bx, by)}R{_xy(rx, ry)}WP{_xy(wx, wy)}"
                              f"L({round(high * 10000)},{round(low * 10000)})")
        elif side_data.type.name == "CONTENT_LIGHT_LEVEL" and len(data) == 8:
            params.append("max-cll={},{}".format(*struct.unpack("<2I", data)))
    return ":".join(["hdr10=1", *params]) if params else ""


def _xy(x: float, y: float) -> str:
    """A CIE 1931 chromaticity in x265's units of 0.00002."""
    return f"({round(x * 50000)},{round(y * 50000)})"


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
    other_streams: int  # more video (cover art), data: not kept
    bits: int = 8  # per sample, of the pixel format; frames() gives uint16 RGB when more than 8
    hdr10: str = ""  # HDR10 static metadata of the first frame, as x265 parameters (hdr10_parameters)
    frames_counted: bool = False  # whether ``frames`` is the container's own count (MP4, MOV, AVI), not duration x rate
    subtitle_streams: int = 0  # copied where the output's container holds their codec


def open_video_file(path: Path) -> "av.container.InputContainer":
    """``path`` opened for reading, or an ImageError naming it: not a video, no video stream."""
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
    """Decoded frames of a video's first video stream (cover art aside), upright, as H x W x 3
    RGB: uint8, or uint16 for a stream of more than 8 bits per sample (``info.bits``)."""

    def __init__(self, path: os.PathLike | str, max_pixels: int | None = None) -> None:
        self.path = Path(path)
        self._open()
        context = self.stream.codec_context
        width, height = context.width, context.height
        if width <= 0 or height <= 0:
            self.close()
            raise ImageError(self.path, "cannot read: the video stream declares no frame size")
        if max_pixels is not None and width * height > max_pixels:
            self.close()
            raise ImageError(self.path, f"frames of {width}x{height} exceed --max-pixels {max_pixels}")
        first = self._first_frame()
        rotation = int(first.rotation) if first is not None else 0
        self.interlaced = False  # whether frames() found the video coded as two fields a frame (and deinterlaced it)
        self.damaged_packets = 0  # packets frames() skipped because the decoder refused them
        if round(rotation / 90) % 2:
            width, height = height, width
        rate = Fraction(self.stream.average_rate or self.stream.guessed_rate or Fraction(25))
        frames = int(self.stream.frames or 0)
        if not frames and self.container.duration:  # Matroska and WebM do not count frames: estimate
            frames = round(self.container.duration / 1_000_000 * rate)
        streams = self.container.streams
        bits = max((component.bits for component in context.format.components), default=8) if context.format else 8
        self.info = VideoInfo(
            width, height, frames, rate, rotation, context.format.name if context.format else "",
            len(streams.audio), len(streams) - 1 - len(streams.audio) - len(streams.subtitles), bits,
            hdr10_parameters(first) if first is not None and bits > 8 else "",
            frames_counted=bool(self.stream.frames), subtitle_streams=len(streams.subtitles),
        )

    def _open(self) -> None:
        self.container = open_video_file(self.path)
        self.stream = _moving_picture_streams(self.container)[0]
        self.stream.thread_type = "AUTO"  # frame and slice threads in the decoder

    def _rewind(self) -> None:
        """Back to the first frame: a seek, or the file opened afresh where it cannot seek
        (a Matroska file cut short has lost the index at its end)."""
        import av

        try:
            self.container.seek(0)
        except av.FFmpegError:
            self.container.close()
            self._open()

    def _first_frame(self) -> "av.VideoFrame | None":
        """The first frame, for what PyAV tells only per frame (the display rotation, HDR10
        metadata); the container is then rewound."""
        try:
            first = next(self.container.decode(self.stream), None)
        except Exception:  # noqa: BLE001 - the error comes back, with the file's name, in frames()
            first = None
        self._rewind()
        return first

    def frames(self, start: float = 0.0, end: float | None = None, lead: int = 0) -> Iterator[tuple[np.ndarray, int | None]]:
        """(upright RGB frame, presentation timestamp in the stream's time base) in
        presentation order, for the frames shown from ``start`` up to ``end`` (seconds;
        None: to the last). The colour matrix and range are the stream's own. With
        ``lead``, the ``lead`` frames shown just before ``start`` come first (neighbours
        for ``--temporal``; fewer near the video's beginning), once a frame of the span
        has been found."""
        import av

        seek_to = max(0.0, start - (lead + 1) / float(self.info.fps)) if lead else start
        if seek_to > 0:  # to the key frame before it; the frames up to it are decoded and dropped
            try:
                self.container.seek(int(seek_to / self.stream.time_base), stream=self.stream)
            except av.FFmpegError:
                self._rewind()
        before: deque = deque(maxlen=lead)
        try:
            for frame in self._progressive(self._decoded()):
                shown = float(frame.pts * self.stream.time_base) if frame.pts is not None else None
                if shown is not None and shown < start:
                    if lead:
                        before.append(frame)
                    continue
                if shown is not None and end is not None and shown >= end:
                    return
                while before:
                    yield self._rgb(before.popleft())
                yield self._rgb(frame)
        except av.FFmpegError as exc:
            raise ImageError(self.path, f"cannot read: the video is damaged ({exc.strerror or exc})") from None

    def _decoded(self) -> Iterator["av.VideoFrame"]:
        """The stream's frames, packet by packet. A packet the decoder refuses as invalid
        (damage part-way through) is skipped and counted in ``damaged_packets``, as
        FFmpeg's own command skips it: one bad packet in an hour of dashcam video loses
        the frames it held, not the video (whose resumed run would meet it again)."""
        import av

        for packet in self.container.demux(self.stream):
            try:
                frames = packet.decode()
            except av.InvalidDataError:
                self.damaged_packets += 1
                continue
            yield from frames

    def _rgb(self, frame: "av.VideoFrame") -> tuple[np.ndarray, int | None]:
        rgb = frame.to_ndarray(format="rgb48le" if self.info.bits > 8 else "rgb24", src_color_range=frame.color_range or None)
        return upright(rgb, self.info.rotation), frame.pts

    def _progressive(self, decoded: Iterator["av.VideoFrame"]) -> Iterator["av.VideoFrame"]:
        """The decoded frames, deinterlaced when the first is coded as two fields (1080i
        camcorders, broadcasts): FFmpeg's bwdif, one frame out per frame in, the first
        field's instant, fields in the order the stream declares (its frames' own flag
        named the wrong field first on a test clip: 18.2 against 21.4 dB). The model
        then sees whole pictures, not the comb of two instants."""
        import av

        first = next(decoded, None)
        if first is None:
            return
        if not first.interlaced_frame:
            yield first
            yield from decoded
            return
        self.interlaced = True
        order = self.stream.codec_context.field_order  # FFmpeg's AVFieldOrder: 2 TT, 3 BB, 4 TB, 5 BT
        parity = {2: "tff", 4: "tff", 3: "bff", 5: "bff"}.get(int(order or 0), "auto")
        graph = av.filter.Graph()
        source = graph.add_buffer(template=self.stream)
        deinterlace = graph.add("bwdif", f"mode=send_frame:parity={parity}:deint=interlaced")
        sink = graph.add("buffersink")
        source.link_to(deinterlace)
        deinterlace.link_to(sink)
        graph.configure()

        def pulled() -> Iterator["av.VideoFrame"]:
            while True:
                try:
                    frame = graph.pull()
                except (av.BlockingIOError, av.EOFError):
                    return
                if frame.pts is not None:  # bwdif counts in half its input's time base
                    frame.pts = round(frame.pts * frame.time_base / self.stream.time_base)
                yield frame

        for frame in itertools.chain([first], decoded):
            graph.push(frame)
            yield from pulled()
        graph.push(None)
        yield from pulled()

    def duration_text(self) -> str:
        """``12.5 s``, as the container declares its length (``an unknown time``)."""
        return f"{self.container.duration / 1_000_000:g} s" if self.container.duration else "an unknown time"

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class VideoFormat:
    """How one output's video stream is encoded: the same for each of its parts."""

    suffix: str
    encoder: str
    options: dict[str, str]
    pix_fmt: str
    time_base: Fraction
    numbered: bool  # AVI: no timestamps of its own, frames numbered at the frame rate
    qscale: int | None
    colour_tags: dict[str, int]  # colorspace, color_range, color_primaries, color_trc of the input


def video_format(output: Path, reader: VideoReader, quality: int) -> VideoFormat:
    """The encoder, pixel format, time base and colour of ``output``'s video stream."""
    info, source = reader.info, reader.stream
    suffix = output.suffix.lower()
    if suffix not in VIDEO_ENCODERS:
        raise ImageError(output, f"cannot write: {suffix or 'no extension'} is not a video format restore writes ({', '.join(WRITABLE_VIDEO_EXTENSIONS)})")
    deep = info.bits > 8 and suffix in DEEP_VIDEO_CONTAINERS and encoder_available(DEEP_ENCODER)
    encoder = DEEP_ENCODER if deep else VIDEO_ENCODERS[suffix]
    odd_size = bool(info.width % 2 or info.height % 2)  # 4:2:0 needs even sizes
    if odd_size and encoder == "mpeg4":
        raise ImageError(output, f"cannot write: AVI (MPEG-4 part 2) needs even frame sizes, not {info.width}x{info.height}; use .mkv or .mp4")
    full_chroma = encoder != "mpeg4" and (has_full_chroma(info.pixel_format) or odd_size)
    level = quality_to_crf(quality, encoder)
    # Parts join end to end, B-frames included: each part's encoder has the same
    # reordering delay, so its first decoding time follows the last one of the part before.
    options = {"libx264": {"crf": str(level)}, "libvpx-vp9": {"crf": str(level), "b": "0", "row-mt": "1"},
               DEEP_ENCODER: {"crf": str(level), "x265-params": ":".join(filter(None, ["log-level=error", info.hdr10]))}}.get(encoder, {})
    numbered = suffix == ".avi"
    # AVI stores no colour tags: its frames are converted as players read untagged
    # video (BT.601, limited range). Elsewhere the output is tagged as the input is, and
    # converted to those tags (not to FFmpeg's default BT.601).
    tags = {}
    if not numbered:
        for name in ("colorspace", "color_range", "color_primaries", "color_trc"):
            value = getattr(source.codec_context, name, None)
            if value:
                tags[name] = int(value)
    pix_fmt = ("yuv444p" if full_chroma else "yuv420p") + ("10le" if deep else "")
    return VideoFormat(suffix, encoder, options, pix_fmt,
                        1 / Fraction(info.fps) if numbered else Fraction(source.time_base), numbered,
                        level if encoder == "mpeg4" else None, tags)


def muxer_for(suffix: str) -> str:
    """FFmpeg's muxer for an output extension (named explicitly: temporary names end otherwise)."""
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi",
            ".ts": "mpegts", ".mts": "mpegts", ".m2ts": "mpegts"}[suffix]
