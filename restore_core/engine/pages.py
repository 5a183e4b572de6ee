"""Restoring a file of many pictures, each through the model, into one new file of as
many: a multi-page TIFF's pages (:mod:`restore_core.io.tiff_pages`) or the frames of an
animated GIF, PNG, WebP or AVIF (:mod:`restore_core.io.animations`).

A page or frame is restored as an image of its own (its layout, sample type and alpha
plane kept, :func:`~restore_core.io.images.from_array`): they are decoded ahead of the
model and handed to the writer behind it, each in a thread of its own (:mod:`.background`),
in order. ``restore auto`` chooses one model for the whole file from its first pages,
as for a video: the pages of one stack are one subject, and a stack whose slices went
to different models would change look from slice to slice. With ``--temporal`` the
pages are the frames of one sequence, each restored page smoothed with its aligned
neighbours (:mod:`.temporal`) before it is written, as a video's frames are. Nothing
is left at the output's name when a page fails.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, Union

import numpy as np
import torch

from restore_core.engine.background import Prefetched, WriteBehind
from restore_core.engine.inputs import Job
from restore_core.engine.memory import MEMORY_BUDGET_SHARE, available_memory_bytes, gib_text
from restore_core.engine.results import FindingsOverFrames, ImageResult
from restore_core.engine.temporal import TemporalSmoother, smoothing_threads
from restore_core.engine.runner import (
    BATCH_STOPPING_ERRNOS, NO_PIXELS, NON_FINITE_OUTPUT, ROUTING_FRAMES, Restorer, RunOptions, hand_over_notices,
)
from restore_core.io.images import ImageError, from_array, to_array
from restore_core.io.animations import Animation, AnimationWriter
from restore_core.io.tiff_pages import TIFF_EXTENSIONS, PageStack, PageStackWriter

PageProgress = Callable[[int, int], None]  # (pages restored, pages in the file)
PagedFile = Union[PageStack, Animation]  # one reading interface: unit, count, width, height, frames(), held_bytes(), writer(), ...


def open_paged(path: Path, max_pixels: int) -> PagedFile:
    """The pages of the TIFF, or the frames of the animation, at ``path``."""
    return PageStack(path, max_pixels) if path.suffix.lower() in TIFF_EXTENSIONS else Animation(path, max_pixels)


def _memory_refusal(stack: PagedFile, output: Path) -> str | None:
    """Why the file cannot be restored here: its restored pages or frames, which wait
    until it is written (an animation's all of them, a TIFF stack's none), would take
    more than half the free memory (the rest is the model's), and the system would end
    the whole batch. None where they fit."""
    held = stack.held_bytes(output)
    if not held or (free := available_memory_bytes()) is None or held <= MEMORY_BUDGET_SHARE * free:
        return None
    return (f"its {stack.count} {stack.unit} of {stack.width}x{stack.height} would hold {gib_text(held)} GiB until the "
            f"animation is written, more than half the free memory ({gib_text(free)} GiB): restore it as a video "
            "(ffmpeg -i in.gif out.mp4) or in shorter parts")


def _as_tensor(rgb: np.ndarray) -> torch.Tensor:
    """H x W x 3 float in [0, 1] -> a 1 x 3 x H x W view."""
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)


def restore_paged(job: Job, restorer: Restorer, options: RunOptions = RunOptions(),
                  on_pages: PageProgress | None = None) -> ImageResult:
    """Restore every page of the TIFF, or every frame of the animation, ``job.source``
    into ``job.output``; one result for the file (``pages`` or ``frames`` restored, its
    ``degradation`` averaged over them, the ``model`` when ``restorer`` routes). Never
    raises for a bad file, a failing model or a failed write: the result says what went
    wrong, and nothing is left at the output name."""
    start = time.perf_counter()
    assert job.output is not None
    try:
        stack = open_paged(job.source, options.max_pixels)
    except ImageError as exc:
        return ImageResult(job.source, None, "error", time.perf_counter() - start, exc.cause)
    done = 0
    counted = stack.unit

    def failed(cause: str, stops_batch: bool = False) -> ImageResult:
        return ImageResult(job.source, None, "error", time.perf_counter() - start, cause, stack.width, stack.height,
                           stops_batch=stops_batch, **{counted: done})

    if (refusal := stack.output_refusal(job.output) or _memory_refusal(stack, job.output)) is not None:
        stack.close()
        return failed(refusal)
    writer: PageStackWriter | AnimationWriter | None = None
    behind: WriteBehind | None = None
    findings = FindingsOverFrames()
    decided: dict[str, float] | None = None
    chosen_model: str | None = None
    committed = False
    smoother: TemporalSmoother | None = None  # --temporal: each restored page smoothed with its neighbours
    reader = Prefetched(stack.frames(), options.prefetch, "restore-pages-read")
    try:
        decoded: Iterator[tuple[np.ndarray, object]] = iter(reader)
        restore = restorer
        if hasattr(restorer, "specialist_for"):  # routed: one model for the whole file, chosen from its first pages
            leading = list(itertools.islice(decoded, ROUTING_FRAMES))
            restore, decided = restorer.specialist_for([_as_tensor(from_array(pixels).rgb) for pixels, _ in leading])
            chosen_model = restore.name
            decoded = itertools.chain(leading, decoded)
        writer = stack.writer(job.output, options.jpeg_quality)
        behind = WriteBehind(writer.write_all, name="restore-pages-write")
        if options.temporal.radius:
            smoother = TemporalSmoother(options.temporal, smoothing_threads())

        def hand_over(smoothed: list[tuple[np.ndarray, tuple]]) -> None:
            for rgb, (like, shape, dtype, page) in smoothed:
                behind.put((to_array(rgb / np.float32(255.0), like, shape, dtype), page))

        for pixels, page in decoded:
            like = from_array(pixels)
            try:
                output = restore(_as_tensor(like.rgb))[0].cpu().numpy().transpose(1, 2, 0)
            except (RuntimeError, ValueError) as exc:
                return failed(f"model failed at {counted[:-1]} {page.index + 1}: {str(exc).splitlines()[0]}")
            hand_over_notices(restore, restorer)
            if not np.isfinite(output).all():
                return failed(NON_FINITE_OUTPUT)
            findings.add(restore.last_degradation if decided is None else None, 1)
            if smoother is None:
                behind.put((to_array(output, like, pixels.shape, pixels.dtype), page))
            else:  # on the 0-255 scale in float: 16-bit and float pages keep their precision
                hand_over(smoother.push(output * np.float32(255.0), (replace(like, rgb=NO_PIXELS), pixels.shape, pixels.dtype, page)))
            done += 1
            if on_pages is not None:
                on_pages(done, stack.count)
        if smoother is not None:
            hand_over(smoother.flush())
        behind.finish()
        behind = None
        writer.commit()
        committed = True
    except ImageError as exc:
        return failed(exc.cause, exc.errno in BATCH_STOPPING_ERRNOS)
    except (ValueError, OSError) as exc:  # a page the encoder or from_array refuses
        return failed(f"{counted[:-1]} {done + 1}: {exc}" if done < stack.count else f"cannot write the {counted}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a decoder or encoder bug must not stop the batch
        return failed(f"cannot restore {counted[:-1]} {done + 1}: {exc}" if done < stack.count
                      else f"cannot write the {counted}: {exc}")
    finally:
        if behind is not None:
            behind.abandon()
        if smoother is not None:
            smoother.close()
        reader.close()
        if writer is not None and not committed:
            writer.abort()
        notes = stack.read_notes()
        stack.close()
    degradation = decided or findings.mean()
    return ImageResult(job.source, job.output, "ok", time.perf_counter() - start, None, stack.width, stack.height, degradation,
                       note="; ".join(notes) or None, model=chosen_model, **{counted: done})

