"""The streaming restoration engine.

Images flow one way through three stages::

    reader threads (decode) -> model on the calling thread -> writer threads (encode + atomic write)

Decoding and encoding release the GIL inside OpenCV/Pillow, so they overlap
the model's forward pass. Consecutive images of the same size are batched.
Each image yields one :class:`ImageResult` in input order; a failure affects
only that image, and nothing is written for it.

With ``RunOptions.temporal`` (``--temporal R``) the images of each folder are the frames
of one sequence (the jobs come in :func:`~restore_core.engine.inputs.frame_order`): each
restored frame waits for the ``R`` after it, then a writer thread smooths it with its
neighbours (:mod:`.temporal`) before encoding it. ``restore auto`` then picks one model
per sequence from its first frames, as per video, not one per frame.
"""

from __future__ import annotations

import errno
import itertools
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from restore_core.checkpoint import ModelDescriptor
from restore_core.device import pick_dtype
from restore_core.engine.ensemble import self_ensemble
from restore_core.engine.inputs import Job
from restore_core.engine.memory import MEMORY_BUDGET_SHARE, PIPELINE_BYTES_PER_PIXEL, available_memory_bytes, gib_text, tile_for_budget
from restore_core.engine.results import ImageResult, abandoned_after
from restore_core.engine.temporal import Frame, FrameWindow, TemporalConfig, smooth_in_window
from restore_core.engine.tiling import MIN_OOM_TILE, central_crop, default_overlap, dense_channels_last, run_padded, run_tiled
from restore_core.io.images import (
    DEFAULT_MAX_PIXELS, ImageError, LoadedImage, WriteError, lost_on_write, read_image, write_image,
)
from restore_core.models.activation_memory import model_activation_bytes_per_pixel


# Write failures that every later image would meet too: a full disk, a full quota, a
# file system mounted read-only. The stream stops restoring at the first one.
BATCH_STOPPING_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
# restore auto: the first frames of a video or an image sequence whose mean class
# probabilities choose its one model (engine.routing.RoutedRestorer.specialist_for).
ROUTING_FRAMES = 8
MEMORY_CHECK_PIXELS = 512 * 512  # smaller images skip the CPU memory check


def blend_toward_input(degraded: torch.Tensor, restored: torch.Tensor, strength: float) -> torch.Tensor:
    """``degraded + strength * (restored - degraded)``: how much of the restoration to apply.

    1 gives the model's output, 0 the input unchanged, 0.7 keeps 30 % of what the
    model removed (some film grain after denoising, some atmosphere after dehazing).
    A linear blend, so a derainer's ``min(O, y)`` output stays no brighter than its input.
    """
    return torch.lerp(degraded, restored, strength)


@dataclass(frozen=True)
class RunOptions:
    batch_size: int = 1
    precision: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    jpeg_quality: int = 95  # JPEG and WebP outputs
    io_threads: int = 2
    prefetch: int = 4
    # A video's restored frames are kept for a later run this often (engine.video), and
    # whenever a run stops with Ctrl-C, SIGTERM or a failing model: the interval only
    # bounds what a hard kill (SIGKILL, power loss) costs. Each keep starts a new part,
    # whose first frame is a key frame: parts of 60 frames made a 240-frame H.264 clip
    # 26 % larger than one part, of 120 frames 7.5 %.
    video_checkpoint_seconds: float = 600.0
    video_start: float = 0.0  # seconds: restore a video from there (its output starts at 0)
    video_duration: float | None = None  # seconds of it to restore; None: to its end
    video_frames: str | None = None  # ".png", ...: each video's frames as numbered images in a folder (io.video_writer.FrameFolderWriter)
    # Videos and image sequences: smoothing of each frame with its neighbours (engine.temporal).
    temporal: TemporalConfig = TemporalConfig()


class Restorer:
    """A model ready for inference on one device and precision, with tiling."""

    def __init__(
        self,
        descriptor: ModelDescriptor,
        device: torch.device,
        precision: str = "auto",
        tile: int = 0,
        tile_overlap: int | None = None,
        ensemble: tuple[int, ...] = (),
        compile: bool = False,
        strength: float = 1.0,
        memory_limit: int | None = None,
    ) -> None:
        self.descriptor = descriptor
        self.device = device
        self.dtype = pick_dtype(precision, device, descriptor.supports_half)
        # channels_last: measured 7-8 % faster on this project's U-Net on a 2-core CPU (oneDNN).
        self.model = descriptor.model.to(device=device, dtype=self.dtype, memory_format=torch.channels_last).eval()
        self.tile = tile
        self.tile_overlap = tile_overlap
        self.multiple = max(1, descriptor.size_multiple)
        # Self-ensemble: the dihedral views to average (engine.ensemble); () = off.
        self.ensemble = tuple(ensemble)
        # 1 = the model's output; less blends it toward the input (blend_toward_input).
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"--strength must be between 0 and 1, got {strength}")
        self.strength = strength
        # torch.compile (Inductor): compiled lazily on the first call, once per input
        # shape until shapes are marked dynamic; falls back to eager if compiling fails.
        self.compiled = torch.compile(self.model) if compile else None
        self.notices: list[str] = []  # things the user should hear about (e.g. an OOM retry)
        if self.dtype == torch.float16 and device.type == "cpu":
            self.notices.append("--precision fp16 on the CPU: CPUs have no fp16 arithmetic, so it runs several times slower "
                                "than fp32; bf16 is the CPU's half precision (fast with AMX/AVX512-BF16 units)")
        # Bytes one image's restoration may use (--max-memory), on any device: larger images
        # are tiled to fit. None: on the CPU half the free memory, on a GPU no bound (an
        # out-of-memory error is retried in tiles).
        if memory_limit is not None and memory_limit <= 0:
            raise ValueError(f"the memory limit must be positive, got {memory_limit}")
        self.memory_limit = memory_limit
        self._activation_bytes: float | None = None  # the model's activation bytes per pixel, measured on first need
        self._announced: set[tuple[int, int, int]] = set()
        # All-in-one models decide per whole image what to restore, and denoisers told
        # --sigma auto estimate its noise level, before any tiling.
        self.conditions_model = hasattr(self.model, "condition")
        # Models with a whole-image step after the network (the dehazer's scattering-model
        # recomposition) get it once per image, after tiling and self-ensemble.
        self.finishes_model = hasattr(self.model, "finish")
        self.last_degradation: list[dict[str, float]] | None = None
        self.last_models: list[str] | None = None  # one model restores every image (engine.routing sets these)
        self._told_colour = False  # a grey-only model given colour images says so once

    @property
    def name(self) -> str:
        """The model's name (a preset's, or its file's)."""
        return self.descriptor.name

    @property
    def takes_measured_noise(self) -> bool:
        """Whether images should come with the noise level their file lets one measure
        (camera raw files: :attr:`LoadedImage.noise_level`), told to the model instead of
        its own estimate: a denoiser told ``--sigma auto`` (``quick`` reads the image alone)."""
        return bool(getattr(self.model, "estimates_sigma", False) and getattr(self.model, "second_look", False))

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor, noise_levels: Sequence[float | None] | None = None) -> torch.Tensor:
        """Restore an N x 3 x H x W float batch in [0, 1]; returns float32 in [0, 1].
        ``noise_levels``: per image, a level measured from its file, or None; ignored
        unless :attr:`takes_measured_noise`.

        Out of GPU memory, the same image is retried in tiles of half the size
        (down to :data:`MIN_OOM_TILE`), and the new tile size is kept for later images.
        """
        if self.descriptor.grey_only and not self._told_colour and _has_colour(batch):
            self._told_colour = True
            self.notices.append(f"{self.descriptor.name} was trained on grey images only: colour inputs restore much "
                                "worse with it than with a colour-trained model")
        x = batch.to(self.device, dtype=self.dtype, non_blocking=True)
        measured = None  # levels are told only to a model that takes them (takes_measured_noise)
        if noise_levels is not None and self.takes_measured_noise and any(level is not None for level in noise_levels):
            measured = torch.tensor([float("nan") if level is None else level for level in noise_levels])
        while True:
            try:
                return self._run(x, self.tile or self._memory_safe_tile(x), measured)
            except torch.OutOfMemoryError:
                smaller = (self.tile or max(x.shape[-2:])) // 2
                smaller -= smaller % self.multiple
                if smaller < max(MIN_OOM_TILE, 2 * self.overlap_for(smaller), self.multiple):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.notices.append(f"out of memory on {self.device}: retrying with --tile {smaller}")
                self.tile = smaller

    def _memory_safe_tile(self, x: torch.Tensor) -> int:
        """0 (whole image), or a tile size when the whole image would need more memory
        than its budget (:meth:`_memory_budget`): on the CPU half the free memory (the
        OOM killer would end the batch, engine.memory), and ``memory_limit`` where one is set."""
        n, _, height, width = x.shape
        if self.memory_limit is None and (self.device.type != "cpu" or n * height * width < MEMORY_CHECK_PIXELS):
            return 0
        budget, why = self._memory_budget()
        if budget is None:
            return 0
        activations = self._activation_bytes_per_pixel()
        # The pipeline's copies (decoded image, input, output) are of the whole image, tiled or not.
        whole_image = n * height * width * (PIPELINE_BYTES_PER_PIXEL if self.device.type == "cpu" else 0)
        needed = whole_image + n * height * width * activations
        if needed <= budget:
            return 0
        tile = tile_for_budget(n * activations, max(budget - whole_image, 0.0), self.multiple)
        if tile >= max(height, width):
            return 0
        if (width, height, tile) not in self._announced:  # once per size, not once per image
            self._announced.add((width, height, tile))
            over = f" (more than that: {tile}x{tile} is the smallest tile used)" if whole_image + tile * tile * n * activations > budget else ""
            self.notices.append(
                f"a {width}x{height} image needs about {gib_text(needed)} GiB untiled and {why}: restoring it in tiles of "
                f"{tile}{over} (--tile sets the size)"
            )
        return tile

    def _memory_budget(self) -> tuple[float | None, str]:
        """The bytes one image may use, and why, for the notice: the smaller of half the
        CPU's free memory and ``memory_limit`` (``--max-memory``); (None, "") when neither applies."""
        budgets = []
        if self.device.type == "cpu" and (available := available_memory_bytes()) is not None:
            budgets.append((available * MEMORY_BUDGET_SHARE, f"{gib_text(available)} GiB is free"))
        if self.memory_limit is not None:
            budgets.append((float(self.memory_limit), f"--max-memory allows {gib_text(self.memory_limit)} GiB"))
        return min(budgets, key=lambda budget: budget[0]) if budgets else (None, "")

    def _activation_bytes_per_pixel(self) -> float:
        """Bytes per pixel of the model's activations on its device, measured once (models.activation_memory)."""
        if self._activation_bytes is None:
            forward = (lambda t: self_ensemble(self.model, t, self.ensemble)) if self.ensemble else self.model
            self._activation_bytes = model_activation_bytes_per_pixel(forward, self.multiple, self.dtype, self.device)
        return self._activation_bytes

    def overlap_for(self, tile: int) -> int:
        """The overlap asked for, or :func:`default_overlap` of this tile size."""
        return default_overlap(tile) if self.tile_overlap is None else self.tile_overlap

    def _run(self, x: torch.Tensor, tile: int, measured: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditions_model:
            self.last_degradation = self.model.condition(x) if measured is None else self.model.condition(x, measured)
            if getattr(self.model, "needs_first_pass", False):
                # Two looks (restore denoise --sigma auto): restore a central crop told the
                # first estimate; the model reads its level again off what it removed there.
                probe = central_crop(x)
                self.last_degradation = self.model.condition_on_first_pass(probe, run_padded(self._forward_once, probe, self.multiple))
        if self.finishes_model:
            self.model.finish_in_forward = False
        try:
            if tile and (x.shape[-1] > tile or x.shape[-2] > tile):
                # Tiles are made channels_last one at a time: no full-size copy of the image.
                y = run_tiled(self._forward, x, tile, self.overlap_for(tile), self.multiple)
            else:
                y = run_padded(self._forward, x, self.multiple)
        finally:
            if self.finishes_model:
                self.model.finish_in_forward = True
        if self.finishes_model:
            y = self.model.finish(x, y)
        y = y.float()
        if self.strength != 1.0:
            y = blend_toward_input(x.float(), y.clamp(0, 1), self.strength)
        return y.clamp_(0, 1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ensemble:
            return self_ensemble(self._forward_once, x, self.ensemble)
        return self._forward_once(x)

    def _forward_once(self, x: torch.Tensor) -> torch.Tensor:
        x = dense_channels_last(x)
        if self.compiled is not None:
            try:
                return self.compiled(x)
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:  # no C++ compiler, an unsupported operation, ...
                self.compiled = None
                first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                self.notices.append(f"torch.compile failed ({first_line}); running without it")
        return self.model(x)

    def restore_array(self, rgb: np.ndarray) -> np.ndarray:
        """One H x W x 3 float image in [0, 1] -> restored, same shape (:func:`restore_array`)."""
        return restore_array(self, rgb)


def hand_over_notices(chosen: Restorer, restorer: Restorer) -> None:
    """The notices of the model a router ``chosen`` for a whole file, moved to the
    ``restorer`` the command line built and reads them from."""
    if chosen is not restorer:
        restorer.notices.extend(chosen.notices)
        chosen.notices.clear()


def restore_array(restore: Callable[[torch.Tensor], torch.Tensor], rgb: np.ndarray) -> np.ndarray:
    """One H x W x 3 float image in [0, 1] through ``restore`` (a batch in, a batch out).

    Values outside [0, 1] (a noisy image of the float noise protocol, `restore
    benchmark --float-noise`) are clipped first: every model here is trained on
    images in [0, 1] and reads such values worse than their clipped versions."""
    if rgb.size and (rgb.min() < 0.0 or rgb.max() > 1.0):
        rgb = np.clip(rgb, 0.0, 1.0)
    x = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)  # a view: no copy of the image
    return restore(x)[0].cpu().numpy().transpose(1, 2, 0)


@dataclass
class _Decoded:
    job: Job
    image: LoadedImage | None
    error: str | None
    seconds: float


def _decode(job: Job, max_pixels: int, measure_noise: bool = False) -> _Decoded:
    start = time.perf_counter()
    try:
        return _Decoded(job, read_image(job.source, max_pixels, measure_noise), None, time.perf_counter() - start)
    except ImageError as exc:
        return _Decoded(job, None, exc.cause, time.perf_counter() - start)
    except Exception as exc:  # a decoder bug must not stop the batch
        return _Decoded(job, None, f"cannot read: {exc}", time.perf_counter() - start)


NON_FINITE_OUTPUT = ("the model's output holds NaN or infinite values (a broken checkpoint, or half precision "
                     "overflowing: try --precision fp32); nothing written")


def _encode(job: Job, rgb: np.ndarray, like: LoadedImage, spent: float, degradation: dict | None, jpeg_quality: int,
            model: str | None = None) -> ImageResult:
    """Write one restored image (in a writer thread); an output that is not finite is an
    error, not a black or speckled file."""
    start = time.perf_counter()
    height, width = rgb.shape[:2]
    assert job.output is not None
    if not np.isfinite(rgb).all():
        return ImageResult(job.source, None, "error", spent + time.perf_counter() - start, NON_FINITE_OUTPUT, width, height, degradation, model=model)
    try:
        write_image(job.output, rgb, like, jpeg_quality)
    except ImageError as exc:  # the result names the input; a failed write names the output too
        cause = f"cannot write {job.output}: {exc.reason}" if isinstance(exc, WriteError) else exc.cause
        return ImageResult(job.source, None, "error", spent + time.perf_counter() - start, cause, width, height, degradation,
                           stops_batch=exc.errno in BATCH_STOPPING_ERRNOS, model=model)
    return ImageResult(job.source, job.output, "ok", spent + time.perf_counter() - start, None, width, height, degradation,
                       note=lost_on_write(like, job.output.suffix), model=model)


@dataclass
class _Restored:
    """A restored image of a sequence on its way to the writer (``Frame.stamp``)."""

    job: Job
    like: LoadedImage
    spent: float
    degradation: dict | None
    model: str | None
    write: "_AwaitingNeighbours | None"  # None: a context frame, never written


@dataclass
class _AwaitingNeighbours:
    """The place in the results of a frame that waits for its following neighbours; then its write's future."""

    future: Future[ImageResult] | None = None


def _smooth_and_encode(centre: Frame, neighbours: list[Frame], config: TemporalConfig, jpeg_quality: int) -> ImageResult:
    """Smooth one frame of an image sequence with its neighbours, then write it (in a writer thread)."""
    start = time.perf_counter()
    restored: _Restored = centre.stamp
    rgb = smooth_in_window(centre, neighbours, config) / np.float32(255.0)
    return _encode(restored.job, rgb, restored.like, restored.spent + time.perf_counter() - start, restored.degradation,
                   jpeg_quality, restored.model)


# A restored frame's LoadedImage waiting for its neighbours (--temporal): how to write it,
# without the input's pixels.
NO_PIXELS = np.empty((0, 0, 3), np.float32)


class _SequenceWrites:
    """``--temporal`` on images: each folder's restored frames go through a
    :class:`FrameWindow`; a frame's write (smoothing, then encoding) goes to the writer
    threads once the frames after it are in, or its folder's sequence ends (:meth:`end`)."""

    def __init__(self, config: TemporalConfig, writers: ThreadPoolExecutor, jpeg_quality: int) -> None:
        self.config, self.writers, self.jpeg_quality = config, writers, jpeg_quality
        self.window: FrameWindow | None = None
        self.folder: Path | None = None  # the folder whose frames the window holds

    def add(self, decoded: _Decoded, rgb: np.ndarray, spent: float, degradation: dict | None,
            model: str | None) -> ImageResult | _AwaitingNeighbours | None:
        """Take one restored image; returns what stands in its place among the results: an
        error, a place its write fills later, or nothing (a context frame)."""
        job = decoded.job
        if not np.isfinite(rgb).all():  # an error, and kept out of its neighbours' averages
            height, width = rgb.shape[:2]
            return None if job.context else ImageResult(job.source, None, "error", spent, NON_FINITE_OUTPUT, width, height,
                                                        degradation, model=model)
        if self.window is None or job.source.parent != self.folder:
            self.end()
            self.window, self.folder = FrameWindow(self.config.radius), job.source.parent
        place = None if job.context else _AwaitingNeighbours()
        like = replace(decoded.image, rgb=NO_PIXELS)  # how to write it: the input's pixels need not wait with it
        frame = Frame.of(rgb * np.float32(255.0), _Restored(job, like, spent, degradation, model, place), emit=place is not None)
        self._write(self.window.push(frame))
        return place

    def end(self) -> None:
        """The sequence is over: its last frames are written with the neighbours they have."""
        if self.window is not None:
            self._write(self.window.flush())
            self.window = None

    def _write(self, ready: list[tuple[Frame, list[Frame]]]) -> None:
        for centre, neighbours in ready:
            centre.stamp.write.future = self.writers.submit(_smooth_and_encode, centre, neighbours, self.config, self.jpeg_quality)


class _SequenceRouting:
    """``restore auto`` with ``--temporal`` on images: one model for each folder's frames,
    chosen from its first :data:`ROUTING_FRAMES` (as per video), not one per frame: a frame
    routed on its own could switch models, and look, from its neighbours."""

    def __init__(self, router) -> None:
        self.router = router  # engine.routing.RoutedRestorer
        self.folder: Path | None = None
        self.chosen: Restorer | None = None
        self.decided: dict[str, float] = {}

    def __call__(self, stacked: torch.Tensor, batch: list[_Decoded], decoded_ahead: Callable[[int], list[_Decoded]]):
        """Restore ``stacked`` (the images of ``batch``, of one folder); ``decoded_ahead(n)``:
        the n decoded images after them. Returns (restored, what was found, model names)."""
        folder = batch[0].job.source.parent
        if folder != self.folder:
            sample = [decoded.image.rgb for decoded in batch]
            for decoded in decoded_ahead(ROUTING_FRAMES):
                if len(sample) >= ROUTING_FRAMES or decoded.job.source.parent != folder:
                    break
                if decoded.image is not None:
                    sample.append(decoded.image.rgb)
            frames = [torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0) for rgb in sample]
            self.chosen, self.decided = self.router.specialist_for(frames)
            self.folder = folder
        restored = self.chosen(stacked)
        self.router.notices.extend(self.chosen.notices)  # the caller reads the notices of the restorer it built
        self.chosen.notices.clear()
        return restored, [self.decided] * len(batch), [self.chosen.name] * len(batch)


def _has_colour(batch: torch.Tensor) -> bool:
    """Whether an N x 3 x H x W batch holds a colour image (grey ones have three equal channels)."""
    return bool((batch[:, 0] != batch[:, 1]).any() or (batch[:, 1] != batch[:, 2]).any())


def restore_stream(jobs: list[Job], restorer: Restorer, options: RunOptions = RunOptions()) -> Iterator[ImageResult]:
    """Restore every job (each with its ``output`` set, or a ``context`` job: restored
    as a neighbour of the frames around it only); yields results in input order, none
    for context jobs."""
    readers = ThreadPoolExecutor(max_workers=max(1, options.io_threads), thread_name_prefix="restore-read")
    writers = ThreadPoolExecutor(max_workers=max(1, options.io_threads), thread_name_prefix="restore-write")
    pending_reads: deque[tuple[Job, Future[_Decoded]]] = deque()
    pending_results: deque[Future[ImageResult] | ImageResult | _AwaitingNeighbours] = deque()
    upcoming = iter(jobs)
    halted: str | None = None  # why no output can be written any more (ImageResult.stops_batch)
    sequences = _SequenceWrites(options.temporal, writers, options.jpeg_quality) if options.temporal.radius else None
    routing = _SequenceRouting(restorer) if sequences is not None and hasattr(restorer, "specialist_for") else None
    measure_noise = getattr(restorer, "takes_measured_noise", False)  # camera raw files' own noise, for a denoiser

    def refill(depth: int = 0) -> None:
        while len(pending_reads) < max(options.prefetch, options.batch_size, depth):
            job = next(upcoming, None)
            if job is None:
                return
            pending_reads.append((job, readers.submit(_decode, job, options.max_pixels, measure_noise)))

    # Back-pressure: when encoding and writing are slower than the model (a fast GPU, a
    # cheap model), wait for the oldest writes rather than hold every restored image in
    # memory; the writers still have work queued. Unbounded, 400 1280x720 images piled
    # up to 53 waiting (1.9 GB) on 2 CPU cores with a model that costs nothing.
    write_backlog = 2 * max(1, options.io_threads) + options.batch_size

    def ready_results(until: int) -> Iterator[ImageResult]:
        """Results in input order: those already finished, then waiting for the oldest
        while more than ``until`` are pending (0: all of them). A frame waiting for its
        following neighbours is never waited for: they come from this thread."""
        nonlocal halted
        while pending_results:
            head = pending_results[0]
            if isinstance(head, _AwaitingNeighbours):
                if head.future is None:
                    return
                head = head.future
            if isinstance(head, Future):
                if not head.done() and len(pending_results) <= until:
                    return
                head = head.result()
            if head.stops_batch and halted is None:
                halted = head.error
            # Popped once the caller has it: an interrupt just after a pop and before the
            # yield lost the result (a file written and never named; seen under load), and
            # one thrown in at the yield finds it popped, as the caller reports it itself.
            try:
                yield head
            finally:
                pending_results.popleft()

    def decoded_ahead(count: int) -> list[_Decoded]:
        """The next ``count`` images decoded (fewer at the end), waiting for them."""
        refill(count)
        return [future.result() for _, future in itertools.islice(pending_reads, count)]

    def abandon_the_rest() -> None:
        """After a write failure no later image can avoid: the rest are reported, not
        decoded or restored (hours of compute for outputs a full disk cannot take)."""
        if sequences is not None:
            sequences.end()
        for job, future in pending_reads:
            future.cancel()
            if not job.context:
                pending_results.append(abandoned_after(halted, job))
        pending_reads.clear()
        for job in upcoming:
            if not job.context:
                pending_results.append(abandoned_after(halted, job))

    try:
        refill()
        while pending_reads:
            if halted is not None:
                abandon_the_rest()
                break
            first = pending_reads.popleft()[1].result()
            refill()
            if first.image is None:
                if not first.job.context:
                    pending_results.append(ImageResult(first.job.source, None, "error", first.seconds, first.error))
                yield from ready_results(until=write_backlog)
                continue
            batch = [first]
            shape = first.image.rgb.shape
            while len(batch) < options.batch_size and pending_reads:
                nxt = pending_reads[0][1].result()
                if nxt.image is None or nxt.image.rgb.shape != shape:
                    break
                if routing is not None and nxt.job.source.parent != first.job.source.parent:
                    break  # another sequence: its own model
                batch.append(pending_reads.popleft()[1].result())
                refill()
            start = time.perf_counter()
            try:
                if len(batch) == 1:  # a view of the decoded pixels: no copy of a possibly huge image
                    stacked = torch.from_numpy(batch[0].image.rgb).permute(2, 0, 1).unsqueeze(0)
                else:
                    stacked = torch.from_numpy(np.stack([d.image.rgb.transpose(2, 0, 1) for d in batch]))
                if routing is not None:
                    output, detected, models = routing(stacked, batch, decoded_ahead)
                else:
                    output = restorer(stacked, [d.image.noise_level for d in batch]) if measure_noise else restorer(stacked)
                    detected = restorer.last_degradation or [None] * len(batch)
                    models = restorer.last_models or [None] * len(batch)
                restored, model_error = output.cpu().numpy().transpose(0, 2, 3, 1), None
            except (RuntimeError, ValueError) as exc:
                restored, model_error = None, f"model failed: {str(exc).splitlines()[0]}"
            share = (time.perf_counter() - start) / len(batch)
            for i, decoded in enumerate(batch):
                if restored is not None and sequences is None:
                    pending_results.append(writers.submit(_encode, decoded.job, restored[i], decoded.image, decoded.seconds + share,
                                                          detected[i], options.jpeg_quality, models[i]))
                elif restored is not None:
                    place = sequences.add(decoded, restored[i], decoded.seconds + share, detected[i], models[i])
                    if place is not None:
                        pending_results.append(place)
                elif not decoded.job.context:
                    pending_results.append(ImageResult(decoded.job.source, None, "error", decoded.seconds + share, model_error))
            yield from ready_results(until=write_backlog)
        if sequences is not None:
            sequences.end()
        yield from ready_results(until=0)
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM, here or in the caller (``finish_interrupted``): the writes
        # under way finish (atomic either way), then every result that exists is
        # reported, so that the caller names each file this run wrote.
        readers.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True, cancel_futures=True)
        yield from _finished(pending_results)
        raise
    finally:
        readers.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True, cancel_futures=True)


def _finished(pending: Iterable[Future[ImageResult] | ImageResult | _AwaitingNeighbours]) -> Iterator[ImageResult]:
    """The results among ``pending`` that exist once the writers have stopped: images
    written (or failed) before an interrupt, in input order; writes that never started
    (cancelled) and frames still waiting for their neighbours are left out."""
    for item in pending:
        if isinstance(item, _AwaitingNeighbours):
            item = item.future
        if isinstance(item, Future):
            if item.cancelled() or not item.done() or item.exception() is not None:
                continue
            item = item.result()
        if item is not None:
            yield item


def finish_interrupted(results: Iterator[ImageResult]) -> Iterator[ImageResult]:
    """After an interrupt reached the caller of :func:`restore_stream` (or of a generator
    that passes interrupts on to it): the results of the writes that finished, which
    the stream reports once the interrupt is delivered to it. Nothing when the
    interrupt was raised inside the stream, which reported them itself."""
    if not hasattr(results, "throw"):  # not a generator: nothing under way
        return
    try:
        yield results.throw(KeyboardInterrupt())
        yield from results
    except (KeyboardInterrupt, StopIteration):  # the stream re-raises once it has reported them
        return
