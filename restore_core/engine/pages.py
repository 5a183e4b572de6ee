"""Restoring a multi-page TIFF: each page through the model, the restored pages into one
new TIFF (:mod:`restore_core.io.tiff_pages`).

A page is restored as an image of its own (its layout, sample type and alpha plane
kept, :func:`~restore_core.io.images.from_array`), a few pages in memory at a time:
pages are decoded ahead of the model and written behind it, each in a thread of its own
(:mod:`.background`), in order. ``restore auto`` chooses one model for the whole
file from its first pages, as for a video: the pages of one stack are one subject, and
a stack whose slices went to different models would change look from slice to slice.
Nothing is left at the output's name when a page fails.
"""

from __future__ import annotations

import itertools
import time
from typing import Callable, Iterator

import numpy as np
import torch

from restore_core.engine.background import Prefetched, WriteBehind
from restore_core.engine.inputs import Job
from restore_core.engine.results import FindingsOverFrames, ImageResult
from restore_core.engine.runner import (
    BATCH_STOPPING_ERRNOS, NON_FINITE_OUTPUT, ROUTING_FRAMES, Restorer, RunOptions, hand_over_notices,
)
from restore_core.io.images import ImageError, from_array, to_array
from restore_core.io.tiff_pages import TIFF_EXTENSIONS, Page, PageStack, PageStackWriter

PageProgress = Callable[[int, int], None]  # (pages restored, pages in the file)


def _as_tensor(rgb: np.ndarray) -> torch.Tensor:
    """H x W x 3 float in [0, 1] -> a 1 x 3 x H x W view."""
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)


def restore_page_stack(job: Job, restorer: Restorer, options: RunOptions = RunOptions(),
                       on_pages: PageProgress | None = None) -> ImageResult:
    """Restore every page of the TIFF ``job.source`` into ``job.output``; one result for
    the file (``pages`` restored, its ``degradation`` averaged over them, the ``model``
    when ``restorer`` routes). Never raises for a bad file, a failing model or a failed
    write: the result says what went wrong, and nothing is left at the output name."""
    start = time.perf_counter()
    assert job.output is not None
    try:
        stack = PageStack(job.source, options.max_pixels)
    except ImageError as exc:
        return ImageResult(job.source, None, "error", time.perf_counter() - start, exc.cause)
    first = stack.pages[0]
    done = 0

    def failed(cause: str, stops_batch: bool = False) -> ImageResult:
        return ImageResult(job.source, None, "error", time.perf_counter() - start, cause, first.width, first.height,
                           stops_batch=stops_batch, pages=done)

    if job.output.suffix.lower() not in TIFF_EXTENSIONS:
        stack.close()
        return failed(f"has {len(stack.pages)} pages, and a {job.output.suffix.lstrip('.')} file holds one: "
                      "write it as a TIFF (leave out --ext, or name the output .tif)")
    writer: PageStackWriter | None = None
    behind: WriteBehind | None = None
    findings = FindingsOverFrames()
    decided: dict[str, float] | None = None
    chosen_model: str | None = None
    committed = False
    reader = Prefetched(((stack.pixels(page), page) for page in stack.pages), options.prefetch, "restore-pages-read")
    try:
        decoded: Iterator[tuple[np.ndarray, Page]] = iter(reader)
        restore = restorer
        if hasattr(restorer, "specialist_for"):  # routed: one model for the whole file, chosen from its first pages
            leading = list(itertools.islice(decoded, ROUTING_FRAMES))
            restore, decided = restorer.specialist_for([_as_tensor(from_array(pixels).rgb) for pixels, _ in leading])
            chosen_model = restore.name
            decoded = itertools.chain(leading, decoded)
        writer = PageStackWriter(job.output, stack.compressed, stack.samples_bytes, len(stack.pages) if stack.imagej else None)
        behind = WriteBehind(writer.write_all, name="restore-pages-write")
        for pixels, page in decoded:
            like = from_array(pixels)
            try:
                output = restore(_as_tensor(like.rgb))[0].cpu().numpy().transpose(1, 2, 0)
            except (RuntimeError, ValueError) as exc:
                return failed(f"model failed at page {page.index + 1}: {str(exc).splitlines()[0]}")
            hand_over_notices(restore, restorer)
            if not np.isfinite(output).all():
                return failed(NON_FINITE_OUTPUT)
            findings.add(restore.last_degradation if decided is None else None, 1)
            behind.put((to_array(output, like, pixels.shape, pixels.dtype), page))
            done += 1
            if on_pages is not None:
                on_pages(done, len(stack.pages))
        behind.finish()
        behind = None
        writer.commit()
        committed = True
    except ImageError as exc:
        return failed(exc.cause, exc.errno in BATCH_STOPPING_ERRNOS)
    except (ValueError, OSError) as exc:  # a page the encoder or from_array refuses
        return failed(f"page {done + 1}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a decoder or encoder bug must not stop the batch
        return failed(f"cannot restore page {done + 1}: {exc}")
    finally:
        if behind is not None:
            behind.abandon()
        reader.close()
        if writer is not None and not committed:
            writer.abort()
        notes = stack.read_notes()
        stack.close()
    degradation = decided or findings.mean()
    return ImageResult(job.source, job.output, "ok", time.perf_counter() - start, None, first.width, first.height, degradation,
                       note="; ".join(notes) or None, model=chosen_model, pages=done)

