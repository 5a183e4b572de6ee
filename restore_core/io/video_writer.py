"""Writing a restored video in parts that survive an interrupted run, joined at the end.

Frames are encoded into parts, each a complete NUT file (FFmpeg's own container: it keeps
every timestamp exactly) in a hidden work folder beside the output, with a record of the
frames done. A run that stops keeps its parts; the next run for the same input and
settings continues after them. When every frame is in, the parts' packets are joined,
not re-encoded, with the input's sound, into a temporary file renamed over the output:
atomic, as for images. :class:`FrameFolderWriter` writes the frames as numbered images
instead (``--frames png``), resumable the same way.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import cv2
import numpy as np

from restore_core.io.files import hidden_name, temporary_beside
from restore_core.io.images import ImageError, LoadedImage, lost_on_write, write_image
from restore_core.io.video import (
    DEEP_ENCODER, DEEP_VIDEO_CONTAINERS, VideoFormat, VideoReader, has_alpha, muxer_for, open_video_file, video_format,
)

if TYPE_CHECKING:
    import av


class _ResumableOutput:
    """What both ways of writing a restored video share: a hidden work folder beside
    ``output`` (``.NAME`` + ``work_suffix``), locked while in use, holding the finished
    pieces (``record["parts"]``) and a ``progress.json`` record of them and of the frames
    done. A later writer for the same output, input file (size and modification time)
    and ``settings`` continues after them; anything else starts over."""

    def __init__(self, output: Path, reader: VideoReader, settings: str, work_suffix: str, record: dict) -> None:
        self.output = output
        self.reader = reader
        self.notes: list[str] = []
        self.work = output.parent / (hidden_name(output, len(work_suffix)) + work_suffix)
        self._progress = {"source": _fingerprint(reader.path), "settings": settings, "frames": 0, "parts": [], **record}
        self._lock: int | None = None
        if has_alpha(reader.info.pixel_format):
            self.notes.append(f"{reader.info.pixel_format} video: its alpha channel is not kept (frames are restored as colour alone)")

    def _open_work_folder(self) -> None:
        """Create and lock the work folder, keeping an earlier run's pieces when they
        match; on failure (another run holds it, a read-only disk) nothing is left held."""
        try:
            with _writing(self.output):
                self.work.mkdir(parents=True, exist_ok=True)
                self._lock = _lock_folder(self.work, self.output)
                self._resume()
        except BaseException:
            self.abort()
            raise

    @property
    def frames_done(self) -> int:
        """Frames already in completed pieces: the caller skips that many of the input."""
        return self._progress["frames"]

    def _resume(self) -> None:
        """Keep the pieces of an earlier run of the same input and settings; clear anything else."""
        record = self.work / "progress.json"
        try:
            earlier = json.loads(record.read_text())
        except (OSError, ValueError):
            earlier = None
        same = (isinstance(earlier, dict) and earlier.get("source") == self._progress["source"]
                and earlier.get("settings") == self._progress["settings"]
                and all((self.work / name).is_file() for name in earlier.get("parts", [])))
        if same:
            self._progress = earlier
            if earlier["frames"]:
                self.notes.append(f"resumed after {earlier['frames']} frame(s) restored by an earlier run")
            return
        if earlier is not None:
            self.notes.append("an unfinished earlier run with another input or settings was discarded")
        for entry in self.work.iterdir():  # and a piece a killed run was writing
            if entry.name != "lock":
                entry.unlink()

    def _record(self, **changes: object) -> None:
        """Update the progress record, on disk first."""
        progress = {**self._progress, **changes}
        _write_json(self.work / "progress.json", progress)
        self._progress = progress

    def _remove_work_folder(self) -> None:
        for entry in self.work.iterdir():
            _unlink(entry)
        self._unlock()
        try:
            self.work.rmdir()
        except OSError:  # another run created it again meanwhile
            pass

    def _release(self) -> None:
        """After a stop: the work folder goes when it holds nothing a later run keeps."""
        try:
            if self.work.is_dir() and not self._progress["parts"]:
                self._remove_work_folder()
        except OSError:  # a folder that cannot even be looked at: the error that stopped the run is the one to tell
            pass
        self._unlock()

    @property
    def kept(self) -> bool:
        """Whether completed pieces wait in the work folder for a later run."""
        return bool(self._progress["parts"]) and self.work.is_dir()

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def abort(self) -> None:
        self._release()

    def __enter__(self):
        return self

    def __exit__(self, kind: type | None, *rest: object) -> None:
        if kind is not None:
            self.abort()


class VideoWriter(_ResumableOutput):
    """Encodes restored frames into ``output`` like ``reader``'s video, with its sound;
    an interrupted video continues where it stopped.

    Frames are encoded into parts, each a complete video file in a hidden work folder
    beside ``output`` (``.NAME.restore-parts/``). :meth:`checkpoint` closes the part being
    written and records it, with the frames done, in the folder's ``progress.json``;
    :meth:`commit` joins the parts' packets (not re-encoded) and the input's sound into
    a temporary file, renames it over ``output`` and deletes the work folder.

    A run that stops (Ctrl-C, a failing model, a full disk) loses only its current
    part: the next writer for the same ``output``, input file (size and modification
    time) and ``settings`` (the model and options, as the caller spells them) starts
    with ``frames_done`` frames already written; anything else starts over. The work
    folder is locked while in use. ``notes`` says what the output could not keep.
    """

    def __init__(self, output: os.PathLike | str, reader: VideoReader, quality: int = 95, settings: str = "",
                 start: float = 0.0, end: float | None = None) -> None:
        output = Path(output)
        self.format = video_format(output, reader, quality)
        # The encoding goes with the settings: parts of another codec or depth cannot be joined.
        super().__init__(output, reader, json.dumps([settings, self.format.encoder, self.format.pix_fmt]), ".restore-parts",
                         {"last_pts": None})
        # A span of the input (seconds): its frames come in with their own times, and
        # the output starts at ``start`` = 0, its sound cut to the span and moved alike.
        self.start, self.end = start, end
        self._offset = round(Fraction(start) / Fraction(reader.stream.time_base)) if start else 0
        info = reader.info
        written_bits = 10 if self.format.pix_fmt.endswith("10le") else 8
        if info.bits > written_bits:
            hint = ""
            if written_bits == 8:
                hint = (f" ({DEEP_ENCODER}, the HEVC encoder, is missing from this install's FFmpeg)" if self.format.suffix in DEEP_VIDEO_CONTAINERS
                        else f" ({self.format.suffix} takes no 10-bit video here: use .mp4 or .mkv)")
            self.notes.append(f"{info.pixel_format} video written with {written_bits} bits per sample{hint}")
        if info.other_streams:
            self.notes.append(f"{info.other_streams} stream(s) of cover art or data not kept")
        self._part: av.container.OutputContainer | None = None
        self._part_stream = None
        self._part_frames = 0
        self._resized = False  # a frame of another size has been scaled (and noted)
        self._open_work_folder()

    @property
    def _last_pts(self) -> int | None:
        return self._progress["last_pts"]

    def _open_part(self) -> None:
        import av

        name = f"part-{len(self._progress['parts']):05d}.nut"
        fmt, info = self.format, self.reader.info
        # NUT, FFmpeg's own container, keeps every timestamp exactly in the stream's time
        # base (MP4's edit lists round a part's start to the millisecond, Matroska all of them).
        # Its muxer would move a part that starts decoding before 0 (B-frames) later in time:
        # the times go in as the encoder gives them.
        self._part = av.open(str(self.work / (name + ".writing")), mode="w", format="nut", options={"avoid_negative_ts": "disabled"})
        self._part_name = name
        stream = self._part.add_stream(fmt.encoder, rate=info.fps, options=dict(fmt.options))
        stream.width, stream.height, stream.pix_fmt = info.width, info.height, fmt.pix_fmt
        stream.time_base = stream.codec_context.time_base = fmt.time_base
        if fmt.qscale is not None:
            stream.codec_context.qscale = fmt.qscale
        for tag, value in fmt.colour_tags.items():
            setattr(stream.codec_context, tag, value)
        self._part_stream = stream
        self._part_frames = 0

    def write(self, rgb: np.ndarray, pts: int | None) -> None:
        """Encode one upright H x W x 3 RGB frame (uint8, or uint16 from a video of more
        than 8 bits) at ``pts`` (the input's timestamp)."""
        import av

        fmt = self.format
        with _writing(self.output):
            if self._part is None:
                self._open_part()
            width, height = self.reader.info.width, self.reader.info.height
            if rgb.shape[:2] != (height, width):  # a stream that changes size half-way: one size per output
                if not self._resized:
                    self.notes.append(f"the frame size changed from {width}x{height} to {rgb.shape[1]}x{rgb.shape[0]} at frame "
                                      f"{self._progress['frames'] + self._part_frames + 1}; such frames were scaled to {width}x{height}")
                    self._resized = True
                rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if rgb.dtype == np.uint16 else "rgb24")
            frame = frame.reformat(format=fmt.pix_fmt, dst_colorspace=fmt.colour_tags.get("colorspace"),
                                   dst_color_range=fmt.colour_tags.get("color_range"))
            done = self._progress["frames"] + self._part_frames
            if fmt.numbered:
                pts = done
            elif pts is None:  # an input without timestamps: the frame's place at the declared rate
                pts = round(done / (self.reader.info.fps * fmt.time_base))
            else:
                pts -= self._offset
            last = self._part_last_pts if self._part_frames else self._last_pts
            if last is not None and pts <= last:  # a damaged file's repeated stamp: encoders refuse it
                pts = last + 1
            self._part_last_pts = pts
            frame.pts, frame.time_base = pts, fmt.time_base
            for packet in self._part_stream.encode(frame):
                self._part.mux(packet)
            self._part_frames += 1

    def checkpoint(self) -> None:
        """Finish the part being written and record it: what a later run keeps."""
        if self._part is None:
            return
        with _writing(self.output):
            for packet in self._part_stream.encode(None):
                self._part.mux(packet)
            self._part.close()
            self._part = None
            os.replace(self.work / (self._part_name + ".writing"), self.work / self._part_name)
            self._record(frames=self._progress["frames"] + self._part_frames, last_pts=self._part_last_pts,
                         parts=[*self._progress["parts"], self._part_name])

    def commit(self) -> None:
        """Finish the last part, join every part with the input's sound into ``output``
        (atomically), and remove the work folder."""
        import av

        self.checkpoint()
        if not self._progress["parts"]:
            raise ImageError(self.reader.path, "cannot read: the video holds no frames")
        suffix = self.format.suffix
        with _writing(self.output):
            temporary = temporary_beside(self.output, f".part{suffix}")
            try:
                # Times as the input has them: a sound track's priming samples before 0 must not
                # move the video later (AVI would gain an empty frame, MP4 a shifted start).
                with av.open(temporary, mode="w", format=muxer_for(suffix), options={"avoid_negative_ts": "disabled"}) as joined:
                    parts = [self.work / name for name in self._progress["parts"]]
                    self.notes.extend(_join(joined, parts, self.reader, self.format, self.start, self.end))
                os.replace(temporary, self.output)
            except BaseException:
                _unlink(temporary)
                raise
        self._remove_work_folder()

    def abort(self) -> None:
        """Stop writing: the part in progress is deleted, the completed ones stay for a
        later run (their work folder goes when it holds none); ``output`` is untouched."""
        if self._part is not None:
            try:
                self._part.close()
            except Exception:  # noqa: BLE001 - a half-written part is deleted anyway
                pass
            self._part = None
            _unlink(self.work / (self._part_name + ".writing"))
        self._release()


class FrameFolderWriter(_ResumableOutput):
    """Restored frames as numbered images, ``000001.png`` on, in the folder ``output``
    (lossless, for an editor or a compositor, or to score frame by frame): what
    :class:`VideoWriter` does, with the same interface, without a codec. 16-bit PNG or
    TIFF keep a video of more than 8 bits at 16; timestamps and sound are not kept.

    Frames go into the hidden work folder (``.NAME.restore-frames/``), each written
    atomically; :meth:`checkpoint` records them; :meth:`commit` moves them into ``output``
    (created; same-named files replaced) and removes the work folder. A later run for the
    same input and settings continues after the recorded frames."""

    def __init__(self, output: os.PathLike | str, reader: VideoReader, extension: str = ".png", quality: int = 95,
                 settings: str = "") -> None:
        super().__init__(Path(output), reader, json.dumps([settings, extension]), ".restore-frames", {})
        self.extension = extension.lower()
        self.quality = quality
        bits = 16 if reader.info.bits > 8 else 8
        self._like = LoadedImage(np.empty((0, 0, 3), np.float32), "rgb", bits)
        lost = lost_on_write(self._like, self.extension)
        if lost:
            self.notes.append(f"{reader.info.pixel_format} video: {lost}")
        self._written = 0  # frames written since the last checkpoint
        self._open_work_folder()

    def _name(self, index: int) -> str:
        return f"{index + 1:06d}{self.extension}"

    def write(self, rgb: np.ndarray, pts: int | None) -> None:
        """Write one upright H x W x 3 RGB frame (uint8, or uint16) as the next image."""
        top = 65535.0 if rgb.dtype == np.uint16 else 255.0
        write_image(self.work / self._name(self._progress["frames"] + self._written), rgb / np.float32(top), self._like, self.quality)
        self._written += 1

    def checkpoint(self) -> None:
        """Record the frames written so far: what a later run keeps."""
        if self._written:
            done = self._progress["frames"] + self._written
            with _writing(self.output):
                self._record(frames=done, parts=[self._name(i) for i in range(done)])
            self._written = 0

    def commit(self) -> None:
        """Move every frame into ``output`` and remove the work folder."""
        self.checkpoint()
        if not self._progress["parts"]:
            raise ImageError(self.reader.path, "cannot read: the video holds no frames")
        with _writing(self.output):
            self.output.mkdir(parents=True, exist_ok=True)
            for name in self._progress["parts"]:
                os.replace(self.work / name, self.output / name)
        self._progress = {**self._progress, "parts": []}
        self._remove_work_folder()


@contextmanager
def _writing(output: Path) -> Iterator[None]:
    """FFmpeg's and the OS's write errors as an ImageError naming ``output`` (its errno
    kept: a full disk stops the batch)."""
    import av

    try:
        yield
    except av.FFmpegError as exc:
        raise ImageError(output, f"cannot write: {exc.strerror or exc}", getattr(exc, "errno", None)) from None
    except OSError as exc:
        raise ImageError(output, f"cannot write: {exc.strerror or exc}", exc.errno) from None


# Tags that describe how a file was muxed, not what it shows: the new file has its own.
_TECHNICAL_TAGS = frozenset({"major_brand", "minor_version", "compatible_brands", "encoder", "duration", "handler_name",
                             "vendor_id", "_statistics_tags", "_statistics_writing_app", "_statistics_writing_date_utc",
                             "number_of_frames", "number_of_bytes", "bps"})


def descriptive_tags(tags: dict[str, str]) -> dict[str, str]:
    """A container's or stream's metadata less the muxing details: what a phone records of
    the clip (``creation_time``, by which photo libraries sort it; ``location``, its GPS;
    ``com.apple.quicktime.*``), a title, a language. Written into the restored video,
    which lost them all before (a clip restored today sorted as taken today)."""
    return {key: value for key, value in tags.items() if key.lower().split("-")[0] not in _TECHNICAL_TAGS}


def _join(joined: "av.container.OutputContainer", parts: list[Path], reader: VideoReader, fmt: VideoFormat,
          start: float = 0.0, end: float | None = None) -> list[str]:
    """Mux the packets of ``parts`` (in order) and the sound and subtitles of ``reader``'s
    file, by time, into ``joined``: of those, the packets from ``start`` up to ``end``
    (seconds), moved ``start`` earlier; returns notes on streams that could not be kept."""
    import av

    notes: list[str] = []
    inputs = [av.open(str(part)) for part in parts]
    source = open_video_file(reader.path) if reader.info.audio_streams or reader.info.subtitle_streams else None
    try:
        joined.metadata.update(descriptive_tags(reader.container.metadata))
        video = joined.add_stream_from_template(inputs[0].streams.video[0])
        video.metadata.update(descriptive_tags(reader.stream.metadata))
        video.codec_context.framerate = reader.info.fps  # Matroska reads the template's as its time base
        if fmt.encoder == DEEP_ENCODER and joined.format.name in ("mp4", "mov"):
            video.codec_tag = "hvc1"  # parameter sets in the header: Apple's players take no other HEVC
        if fmt.numbered:
            video.time_base = fmt.time_base  # AVI: one tick a frame
        copied = {}  # the source's sound and subtitle streams kept: index -> the output's stream
        converted: dict[int, _TextSubtitles] = {}  # text subtitles the output holds in another codec only
        for stream in [*source.streams.audio, *source.streams.subtitles] if source else ():
            codec = stream.codec_context.name
            if codec in joined.supported_codecs or (joined.format.name == "mpegts" and codec in MPEG_TS_AUDIO):
                copied[stream.index] = joined.add_stream_from_template(stream)
                copied[stream.index].metadata.update(descriptive_tags(stream.metadata))  # its language, its title
            elif codec in TEXT_SUBTITLE_CODECS and (text_codec := text_subtitle_codec(joined)):
                converted[stream.index] = _TextSubtitles(stream, joined, text_codec)
                copied[stream.index] = converted[stream.index].output
            else:
                kind = "audio" if stream.type == "audio" else "subtitles"
                instead = " (use .mkv)" if fmt.suffix != ".mkv" else ""  # Matroska holds the most
                notes.append(f"{codec} {kind} cannot go into {fmt.suffix}; not kept{instead}")
        wanted = [stream for stream in source.streams if stream.index in copied] if source else []
        kept = (_moved(p, start) for p in source.demux(wanted) if p.dts is not None and _within(p, start, end)) if wanted else iter(())
        waiting = next(kept, None)
        count = 0
        previous_dts: int | None = None
        for path, part in zip(parts, inputs):
            leading = _leading_decode_times(path)
            for packet in part.demux(part.streams.video[0]):
                if not packet.size:  # the demuxer's end-of-stream marker
                    continue
                if fmt.numbered:  # AVI parts each count their frames from 0
                    packet.pts = packet.dts = count
                    packet.time_base = fmt.time_base
                elif packet.dts is None:
                    dts = leading.pop(0) if leading else packet.pts
                    if previous_dts is not None and dts <= previous_dts:
                        dts = previous_dts + 1
                    packet.dts = min(dts, packet.pts)
                previous_dts = packet.dts
                shown = float(packet.dts * packet.time_base)
                while waiting is not None and float(waiting.dts * waiting.time_base) <= shown:
                    _mux_kept(joined, waiting, copied, converted)
                    waiting = next(kept, None)
                packet.stream = video
                joined.mux(packet)
                count += 1
        while waiting is not None:
            _mux_kept(joined, waiting, copied, converted)
            waiting = next(kept, None)
        notes += [f"{track.failure}: cannot convert; the rest of the track not kept" for track in converted.values() if track.failure]
    finally:
        for part in inputs:
            part.close()
        if source is not None:
            source.close()
    return notes


# Text subtitle codecs: FFmpeg decodes each to ASS events (italics, bold and colours as
# ASS tags) and encodes each from them, so one converts into another.
TEXT_SUBTITLE_CODECS = frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"})
_TEXT_SUBTITLE_TARGETS = ("mov_text", "subrip", "webvtt", "ass")  # MP4/MOV's, Matroska's, WebM's


def text_subtitle_codec(container: "av.container.OutputContainer") -> str | None:
    """The text subtitle codec ``container`` holds (MP4 and MOV: mov_text), or None (AVI,
    MPEG-TS: bitmap subtitles or none)."""
    return next((codec for codec in _TEXT_SUBTITLE_TARGETS if codec in container.supported_codecs), None)


class _TextSubtitles:
    """A text subtitle track re-encoded for a container that cannot hold its codec (a
    film's SubRip track into MP4 becomes mov_text): each packet is decoded to its events
    and encoded again, at the same times, with the track's language and title."""

    def __init__(self, source: "av.stream.Stream", joined: "av.container.OutputContainer", codec: str) -> None:
        self.decoder = source.codec_context
        if not self.decoder.is_open:
            self.decoder.open()  # its ASS header (styles) is made on opening: the encoder starts from it
        self.failure: str | None = None  # why the track could not be converted (it is left empty, and said)
        self.what = f"{self.decoder.name} subtitles as {codec}"
        self.output = joined.add_stream(codec)
        self.output.time_base = self.output.codec_context.time_base = source.time_base
        self.output.codec_context.subtitle_header = self.decoder.subtitle_header
        self.output.metadata.update(descriptive_tags(source.metadata))

    def convert(self, packet: "av.Packet") -> "av.Packet | None":
        """``packet`` in the output's codec (None where it holds no event, or the track
        failed to convert: the rest of it is left out)."""
        import av

        if self.failure is not None:
            return None
        try:
            events = self.decoder.decode2(packet)
            if events is None or not len(events.rects):
                return None
            encoded = self.output.codec_context.encode_subtitle(events)
        except av.error.FFmpegError as exc:
            self.failure = f"{self.what}: {exc.strerror or exc}"
            return None
        encoded.pts, encoded.dts, encoded.duration, encoded.time_base = packet.pts, packet.dts, packet.duration, packet.time_base
        return encoded


def _mux_kept(joined: "av.container.OutputContainer", packet: "av.Packet", copied: dict, converted: dict[int, _TextSubtitles]) -> None:
    """Mux a sound or subtitle packet of the source into its output stream, converted
    first where its track is (:class:`_TextSubtitles`)."""
    index = packet.stream.index
    if index in converted:
        packet = converted[index].convert(packet)
        if packet is None:
            return
    packet.stream = copied[index]
    joined.mux(packet)


def _within(packet: "av.Packet", start: float, end: float | None) -> bool:
    """Whether ``packet`` is shown from ``start`` up to ``end`` (seconds); from the very
    beginning when ``start`` is 0 (a sound track's priming samples come before 0)."""
    shown = float(packet.pts * packet.time_base)
    return (not start or shown >= start) and (end is None or shown < end)


def _moved(packet: "av.Packet", seconds: float) -> "av.Packet":
    """``packet`` shown ``seconds`` earlier (a span of the input starts the output)."""
    if seconds:
        ticks = round(Fraction(seconds) / Fraction(packet.time_base))
        packet.pts -= ticks
        packet.dts -= ticks
    return packet


def _leading_decode_times(path: Path) -> list[int]:
    """Decoding times for a part's first packets, which its demuxer leaves unknown.

    With B-frames, a demuxer (NUT's, Matroska's) learns a packet's decoding time from
    the showing times of the packets after it: the first ``delay`` packets come without
    one. An encoder's decoding times are its sorted showing times moved back by a fixed
    delay, and the first known one tells that delay; this reads the part once for its
    showing times and gives the unknown ones by that rule."""
    import av

    shown, known_at, known = [], None, None
    with av.open(str(path)) as part:
        for packet in part.demux(part.streams.video[0]):
            if not packet.size or packet.pts is None:
                continue
            if packet.dts is not None and known_at is None:
                known_at, known = len(shown), packet.dts
            shown.append(packet.pts)
    if known_at is None or known_at == 0:
        return []
    ordered = sorted(shown)
    delay = ordered[known_at] - known
    return [ordered[j] - delay for j in range(known_at)]


# FFmpeg's MPEG-TS muxer answers no query of what it takes (its supported_codecs misses
# AAC): the sound it carries in dashcam and camcorder files and broadcasts.
MPEG_TS_AUDIO = frozenset({"aac", "mp3", "mp2", "ac3", "eac3", "opus", "dts", "truehd"})


def _fingerprint(path: Path) -> dict:
    """What identifies an input file between runs: its full path, size and modification time."""
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _lock_folder(folder: Path, output: Path) -> int | None:
    """An exclusive lock on ``folder`` (released when the process ends, however it
    ends), or an error when another process holds it. None where locks are unavailable."""
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    handle = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(handle)
        raise ImageError(output, "another restore is writing this video now") from None
    return handle


def _write_json(path: Path, data: dict) -> None:
    temporary = path.with_name(path.name + ".writing")
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)


def _unlink(path: os.PathLike | str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
