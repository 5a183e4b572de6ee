"""Restoring a video: its frames through the model, the restored ones into a new video.

Frames flow as images do in :mod:`.runner`::

    decoder thread -> model on the calling thread (batches of same-size frames) -> encoder thread

Each frame is restored on its own: a clip comes out as its frames would from
``restore derain`` one by one, unless ``RunOptions.temporal`` (``--temporal R``) smooths
each restored frame with its neighbours (:mod:`.temporal`, in the encoder thread). The
output is one file, written atomically
(:class:`restore_core.io.video_writer.VideoWriter`): a video that fails or is interrupted
half-way leaves nothing under its output name. ``restore auto`` decides the
degradation once per video, from its first frames, so a clip is not restored by
different models from one frame to the next.
"""

from __future__ import annotations

import itertools
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np
import torch

from restore_core.engine.background import Prefetched
from restore_core.engine.inputs import Job
from restore_core.engine.results import FindingsOverFrames, ImageResult
from restore_core.engine.runner import (
    BATCH_STOPPING_ERRNOS, NON_FINITE_OUTPUT, ROUTING_FRAMES, Restorer, RunOptions, hand_over_notices,
)
from restore_core.engine.temporal import TemporalSmoother, smoothing_threads
from restore_core.io.images import ImageError
from restore_core.io.video import PYAV_MISSING, VideoReader, pyav_available
from restore_core.io.video_writer import FrameFolderWriter, VideoWriter

FrameProgress = Callable[[int, int], None]  # (frames restored, frames declared; 0 = unknown)

INTERLACED_NOTE = "interlaced video (two fields a frame) deinterlaced before restoring (bwdif); written progressive"


def _batches(frames: Iterator[tuple[np.ndarray, int | None]], size: int) -> Iterator[list[tuple[np.ndarray, int | None]]]:
    batch = []
    for item in frames:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _as_batch(frames: list[np.ndarray]) -> torch.Tensor:
    """H x W x 3 uint8 (or uint16: a video of more than 8 bits) frames -> an N x 3 x H x W float batch in [0, 1]."""
    top = 65535.0 if frames[0].dtype == np.uint16 else 255.0
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div_(top)


def _as_frame(restored: np.ndarray, deep: bool) -> np.ndarray:
    """A restored frame in [0, 1] at the video's depth: uint8, or uint16 when ``deep``."""
    if deep:
        return np.clip(restored * 65535.0 + 0.5, 0, 65535).astype(np.uint16)
    return np.clip(restored * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _for_smoother(restored: np.ndarray, deep: bool) -> np.ndarray:
    """A restored frame in [0, 1] as the temporal smoothing takes it: uint8, or float32 on
    the 0-255 scale for a deep video (10 bits and more kept)."""
    return restored * np.float32(255.0) if deep else _as_frame(restored, False)


def _from_smoother(smoothed: np.ndarray) -> np.ndarray:
    """A smoothed frame as the writer takes it: uint8 as it is, float32 (0-255) as uint16."""
    if smoothed.dtype == np.uint8:
        return smoothed
    return np.clip(smoothed * 257.0 + 0.5, 0, 65535).astype(np.uint16)


def ended_early(decoded: int, declared: int) -> str | None:
    """The note for a video that gave fewer frames than its container counts, or None.

    A file cut short (a download or a copy that stopped; an MP4 whose index comes first
    still opens) decodes without an error up to the cut, so the restored video would
    otherwise come out shorter without a word. Only a container's own count (MP4, MOV,
    AVI) is held against the frames: Matroska's duration x rate is a guess that an
    interlaced stream's field rate, or a duration that is wrong, would turn into false
    alarms. The margin allows the frame or two an edit list may hide."""
    if declared - decoded <= max(2, declared // 50):
        return None
    return (f"the video ended after {decoded} of the {declared} frames its container counts: "
            "the file is truncated or damaged, and the output is as short")


def _frames_in_span(info, start: float, duration: float | None) -> int:
    """About how many frames a span of the video holds (for progress; 0 = unknown)."""
    if not info.frames:
        return 0
    left = max(0, info.frames - round(start * info.fps))
    return min(left, round(duration * info.fps)) if duration is not None else left


def _split_lead(frames: Iterator, time_base, start: float) -> tuple[list, Iterator]:
    """(the frames shown before ``start`` seconds, the rest): what ``VideoReader.frames``
    puts first when asked for a ``lead``."""
    leading = []
    for item in frames:
        if item[1] is None or item[1] * time_base >= start:
            return leading, itertools.chain([item], frames)
        leading.append(item)
    return leading, iter(())


def settings_key(restorer: Restorer, options: RunOptions) -> str:
    """What a video's earlier, unfinished run must have used for its frames to be kept:
    the model file, its run-time settings, precision, self-ensemble, strength, tiling
    (a routing restorer: those of each model it may choose), the output quality, the span
    and the temporal smoothing."""
    def described(one: Restorer) -> dict:
        model = one.descriptor
        return {"model": model.name, "sha256": model.sha256 or str(model.path), "settings": model.settings, "dtype": str(one.dtype),
                "ensemble": list(one.ensemble), "strength": one.strength, "tile": [one.tile, one.tile_overlap]}

    specialists = getattr(restorer, "specialists", None)
    chosen = {task: described(one) for task, one in specialists.items()} if specialists else described(restorer)
    key = {"restorer": chosen, "router": restorer.descriptor.name if specialists else None,
           "quality": options.jpeg_quality, "span": [options.video_start, options.video_duration]}
    if getattr(restorer, "asks_clean_classifier", False):  # --leave-clean: another classifier may choose another model
        key["leave_clean"] = True
    if options.temporal.radius:
        key["temporal"] = [options.temporal.radius, options.temporal.strength, options.temporal.patch]
    return json.dumps(key, sort_keys=True, default=str)


def restore_video(job: Job, restorer: Restorer, options: RunOptions = RunOptions(),
                  on_frames: FrameProgress | None = None) -> ImageResult:
    """Restore the video ``job.source`` into ``job.output``; one result for the whole
    clip (``frames`` restored, its ``degradation`` averaged over them, the ``model``
    that restored it when ``restorer`` routes). Never raises for a bad video, a
    failing model or a failed write: the result says what went wrong, and nothing is
    left at the output name. ``on_frames`` hears the progress after each batch.

    Every ``options.video_checkpoint_seconds`` the frames encoded so far are kept
    (:meth:`VideoWriter.checkpoint`), and again when the model fails or the run is
    interrupted: the same call later restores only the frames after them (with
    ``options.temporal``, also the ``radius`` frames before them again, as neighbours)."""
    start = time.perf_counter()
    assert job.output is not None
    if not pyav_available():
        return ImageResult(job.source, None, "error", error=PYAV_MISSING)
    try:
        reader = VideoReader(job.source, options.max_pixels)
    except ImageError as exc:
        return ImageResult(job.source, None, "error", time.perf_counter() - start, exc.cause)
    info = reader.info
    deep = info.bits > 8  # frames come as uint16 and are written at 16 bits (the writer keeps 10)
    encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="restore-video-write")  # frames must stay in order
    writer: VideoWriter | FrameFolderWriter | None = None
    decoded: Prefetched | None = None
    pending: list[Future] = []
    done = 0  # frames in the output so far, an earlier run's included
    smoother = TemporalSmoother(options.temporal, smoothing_threads()) if options.temporal.radius else None
    findings = FindingsOverFrames()  # what the model found per frame (all-in-one, --sigma auto)
    decided: dict[str, float] | None = None  # routed: what the first frames showed, which chose the model
    chosen_model: str | None = None
    committed = False

    def keep_what_is_done() -> None:
        """After a failure or an interrupt: the frames already encoded become a part a
        later run keeps (nothing, if writing itself is what failed)."""
        try:
            for future in pending:
                future.result()
            writer.checkpoint()
        except Exception:  # noqa: BLE001 - the failure being reported matters more
            pass

    def fail(cause: str, stops_batch: bool = False) -> ImageResult:
        if writer is not None:
            keep_what_is_done()
            writer.abort()
            if writer.kept:
                cause += f"; {writer.frames_done} restored frame(s) kept: the same command continues from there"
        return ImageResult(job.source, None, "error", time.perf_counter() - start, cause, info.width, info.height,
                           stops_batch=stops_batch, frames=done)

    try:
        span_start, span_duration = options.video_start, options.video_duration
        span_end = span_start + span_duration if span_duration is not None else None
        if options.video_frames:
            writer = FrameFolderWriter(job.output, reader, options.video_frames, options.jpeg_quality, settings_key(restorer, options))
        else:
            writer = VideoWriter(job.output, reader, options.jpeg_quality, settings_key(restorer, options), span_start, span_end)
        restore = restorer
        lead = options.temporal.radius if smoother is not None and span_start > 0 else 0  # neighbours before a span
        decoded = Prefetched(reader.frames(span_start, span_end, lead), options.prefetch, "restore-video-read")
        leading, frames = _split_lead(iter(decoded), reader.stream.time_base, span_start) if lead else ([], iter(decoded))
        if hasattr(restorer, "specialist_for"):  # routed: one model for the whole clip, chosen from its first frames
            first = list(itertools.islice(frames, ROUTING_FRAMES))
            if first:
                restore, decided = restorer.specialist_for([_as_batch([frame]) for frame, _ in first])
                chosen_model = restore.name
            frames = itertools.chain(first, frames)
        done = writer.frames_done
        expected = _frames_in_span(info, span_start, span_duration)
        context = min(options.temporal.radius, done) if smoother is not None else 0  # neighbours of the first new frame
        frames = itertools.islice(frames, done - context, None)  # decoded, not restored: an earlier run wrote them
        if done == 0 and leading:  # a span's first frames: the frames just before it as their neighbours
            frames, context = itertools.chain(leading, frames), len(leading)

        def smooth_and_write(frame: np.ndarray, pts: int | None, emit: bool) -> None:
            for smoothed, stamp in smoother.push(frame, pts, emit):
                writer.write(_from_smoother(smoothed), stamp)

        def flush_and_write() -> None:
            for smoothed, stamp in smoother.flush():
                writer.write(_from_smoother(smoothed), stamp)
        last_checkpoint = time.perf_counter()
        for batch in _batches(frames, options.batch_size):
            restored = restore(_as_batch([frame for frame, _ in batch])).cpu().numpy().transpose(0, 2, 3, 1)
            hand_over_notices(restore, restorer)
            if not np.isfinite(restored).all():
                return fail(NON_FINITE_OUTPUT)
            findings.add(restore.last_degradation if decided is None else None, len(batch))
            new = 0
            for (_, pts), frame in zip(batch, restored):
                is_new = context == 0  # not one of the neighbours a resumed run restores again
                if smoother is None:
                    pending.append(encoder.submit(writer.write, _as_frame(frame, deep), pts))
                else:
                    pending.append(encoder.submit(smooth_and_write, _for_smoother(frame, deep), pts, is_new))
                if is_new:
                    new += 1
                else:
                    context -= 1
            if time.perf_counter() - last_checkpoint >= options.video_checkpoint_seconds:
                pending.append(encoder.submit(writer.checkpoint))
                last_checkpoint = time.perf_counter()
            while pending and (pending[0].done() or len(pending) > 2 * options.batch_size + 2):
                pending.pop(0).result()  # back-pressure, and write errors surface here
            done += new
            if on_frames is not None:
                on_frames(done, expected)
        if smoother is not None:
            pending.append(encoder.submit(flush_and_write))
        for future in pending:
            future.result()
        pending.clear()
        if done == 0 and (span_start or span_duration is not None):
            for_how_long = f" for {span_duration:g} s" if span_duration is not None else ""
            return fail(f"no frames from {span_start:g} s{for_how_long} (--start, --duration): the video is {reader.duration_text()} long")
        if done == 0 and reader.damaged_packets:
            return fail(f"cannot read: the video is damaged (its decoder refused {reader.damaged_packets} packet(s) and gave no frame)")
        if reader.damaged_packets:
            writer.notes.append(f"{reader.damaged_packets} damaged packet(s) of the video skipped: the frames they held are "
                                "missing or patched by the decoder")
        short = ended_early(done, expected) if info.frames_counted else None
        if short is not None:
            writer.notes.append(short)
        writer.commit()
        committed = True
    except ImageError as exc:
        return fail(exc.cause, exc.errno in BATCH_STOPPING_ERRNOS)
    except (RuntimeError, ValueError) as exc:
        return fail(f"model failed at frame {done + 1}: {str(exc).splitlines()[0]}")
    except KeyboardInterrupt:
        if writer is not None:
            keep_what_is_done()
        raise
    finally:
        encoder.shutdown(wait=True, cancel_futures=True)
        if smoother is not None:
            smoother.close()
        if decoded is not None:
            decoded.close()
        if writer is not None and not committed:
            writer.abort()
        reader.close()
    degradation = decided or findings.mean()
    if reader.interlaced:
        writer.notes.append(INTERLACED_NOTE)
    notes = "; ".join(writer.notes) or None
    return ImageResult(job.source, job.output, "ok", time.perf_counter() - start, None, info.width, info.height, degradation,
                       note=notes, model=chosen_model, frames=done)

