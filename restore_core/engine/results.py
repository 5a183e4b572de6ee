"""What a restoration run reports of each input: :class:`ImageResult`, and the results a
batch has before any image is decoded (:func:`planned_results`).

Apart from the engine (and free of torch) so that the command line can plan a run,
report what is skipped or refused, and stop there without importing torch (1.5 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from restore_core.engine.inputs import BatchPlan, Job
from restore_core.io.images import UNREADABLE_FORMATS


@dataclass
class ImageResult:
    """One input's outcome: written (``ok``, with ``output``), failed (``error`` says why;
    nothing written), or ``skipped`` (``reason``). ``as_dict`` is its ``--json`` line."""

    input: Path
    output: Path | None
    status: str  # "ok" | "error" | "skipped"
    seconds: float = 0.0
    error: str | None = None
    width: int = 0
    height: int = 0
    # What the model found in the whole image: all-in-one models the detected (or forced)
    # probabilities, denoisers told --sigma auto the estimated noise level.
    degradation: dict[str, float] | None = None
    reason: str | None = None  # why a skipped input was skipped
    note: str | None = None  # what the written file could not keep (io.images.lost_on_write)
    # A write failure every later image would meet too (engine.runner.BATCH_STOPPING_ERRNOS): the
    # stream stops restoring, and the images after it are reported ``abandoned``.
    stops_batch: bool = False
    abandoned: bool = False
    model: str | None = None  # the model that restored it, when a run routes images to several (restore auto)
    frames: int | None = None  # a video: the frames restored (engine.video)
    pages: int | None = None  # a multi-page TIFF: the pages restored (engine.pages)

    def as_dict(self) -> dict:
        extra = {"degradation": self.degradation} if self.degradation is not None else {}
        if self.model is not None:
            extra["model"] = self.model
        if self.reason is not None:
            extra["reason"] = self.reason
        if self.note is not None:
            extra["note"] = self.note
        if self.frames is not None:
            extra["frames"] = self.frames
        if self.pages is not None:
            extra["pages"] = self.pages
        return {
            "input": str(self.input),
            "output": str(self.output) if self.output and self.status == "ok" else None,
            "status": self.status,
            "seconds": round(self.seconds, 4),
            "error": self.error,
            "width": self.width,
            "height": self.height,
            **extra,
        }


class FindingsOverFrames:
    """What a model found in each frame of one file (a video's frames, a stack's pages),
    summed for the file's one result: its ``degradation`` is their mean (all-in-one
    models' probabilities, ``--sigma auto``'s level)."""

    def __init__(self) -> None:
        self._totals: dict[str, float] = {}
        self._frames = 0

    def add(self, found: Sequence[dict[str, float] | None] | None, frames: int) -> None:
        """The findings of a batch of ``frames`` frames (None: the model says nothing)."""
        for one in found or ():
            for name, value in (one or {}).items():
                self._totals[name] = self._totals.get(name, 0.0) + value
        self._frames += frames

    def mean(self) -> dict[str, float] | None:
        """The mean of each finding over the frames added, or None when there is none."""
        if not self._totals or not self._frames:
            return None
        return {name: round(total / self._frames, 4) for name, total in self._totals.items()}


def planned_results(plan: BatchPlan, unreadable: list[Path] = ()) -> list[ImageResult]:
    """The results a batch has before anything runs: inputs refused (errors), skipped
    because their output exists, found to be this run's own outputs, listed twice, or
    in a format restore cannot read."""
    results = [ImageResult(job.source, None, "error", error=why) for job, why in plan.refused]
    results += [ImageResult(job.source, job.output, "skipped", reason="output exists") for job in plan.skipped]
    results += [ImageResult(job.source, None, "skipped", reason="an output of this run") for job in plan.left_out]
    results += [ImageResult(job.source, None, "skipped", reason="listed twice") for job in plan.repeated]
    results += [ImageResult(path, None, "skipped", reason=f"{UNREADABLE_FORMATS[path.suffix.lower()]}: a format restore cannot read")
                for path in unreadable]
    return results


def abandoned_after(halted: str, job: Job) -> ImageResult:
    """The result of an input left unrestored after a write failure that every later
    output would meet too (``halted``: that failure's cause, ImageResult.stops_batch)."""
    return ImageResult(job.source, None, "error", error=f"not restored: an earlier output could not be written ({halted})", abandoned=True)
