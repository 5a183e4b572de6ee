"""Restoring a batch of inputs of every kind: single images streamed and batched
(:mod:`.runner`), then each multi-page TIFF and animation (:mod:`.pages`) and each video
(:mod:`.video`), one result per input, in that order."""

from __future__ import annotations

from typing import Callable, Iterator

from restore_core.engine.inputs import Job, is_paged
from restore_core.engine.pages import restore_paged
from restore_core.engine.results import ImageResult, abandoned_after
from restore_core.engine.runner import Restorer, RunOptions, finish_interrupted, restore_stream
from restore_core.engine.video import restore_video
from restore_core.io.video import is_video_name

JobFrameProgress = Callable[[Job, int, int], None]  # a video's frames or a stack's pages: (input, done, total; 0 = unknown)


def restore_jobs(jobs: list[Job], restorer: Restorer, options: RunOptions = RunOptions(),
                 on_frames: JobFrameProgress | None = None) -> Iterator[ImageResult]:
    """Restore a batch that may hold videos, multi-page TIFFs and animations: the single
    images first, streamed and batched (:func:`~restore_core.engine.runner.restore_stream`),
    then each stack of pages or frames, then each video; one result per job. ``on_frames`` hears the
    progress within a stack or a video. After a write failure that every later output
    would meet (a full disk), the stacks and videos left are reported, not restored."""
    videos = [job for job in jobs if is_video_name(job.source)]
    paged = [job for job in jobs if not is_video_name(job.source) and is_paged(job.source)]
    stacks = [job for job in paged if not job.context]  # one offered as a neighbour of an image sequence's frame is not one of its frames
    stack_ids = {id(job) for job in stacks}
    taken = {id(job) for job in paged} | {id(job) for job in videos}
    halted: str | None = None
    images = restore_stream([job for job in jobs if id(job) not in taken], restorer, options)
    try:
        for result in images:
            if result.stops_batch and halted is None:
                halted = result.error
            yield result
    except KeyboardInterrupt:  # thrown in here by the caller: the image stream reports the writes it finished
        yield from finish_interrupted(images)
        raise
    for job in stacks + videos:
        if halted is not None:
            yield abandoned_after(halted, job)
            continue
        progress = None if on_frames is None else (lambda count, total, job=job: on_frames(job, count, total))
        restore = restore_paged if id(job) in stack_ids else restore_video
        result = restore(job, restorer, options, progress)
        if result.stops_batch:
            halted = result.error
        yield result
