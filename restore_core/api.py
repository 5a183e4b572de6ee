"""The Python interface: what the ``restore`` commands do, from a script or a notebook.

::

    import restore_core

    derain = restore_core.load("taylor-derain")            # a preset, a .safetensors file, or task="derain"
    clear = derain(rainy)                                   # NumPy H x W x 3 uint8 -> the same shape and type
    derain.restore_file("storm.jpg", "clear.png")           # metadata, depth and alpha kept, atomic write
    derain.restore_file("drive.mp4", "drive-clear.mp4")     # a video: frame by frame, timing and sound kept
    for result in derain.restore_files("photos/", "out/"):  # the CLI's streaming engine: one result per image
        print(result.input, result.status, result.error)

:func:`load` takes the options of ``restore derain`` and its siblings (device,
precision, tiling, self-ensemble, strength, and the task's own settings such as
``sigma=25`` or ``darken_only=False``) and returns an :class:`ImageRestorer`.
Arrays go through the same tiling, padding and precision as files, so an array
restored here equals the pixels ``restore derain`` writes for the same image.

Errors: a model that cannot be loaded raises :class:`~restore_core.checkpoint.CheckpointError`,
an unreadable file :class:`~restore_core.io.images.ImageError` (both name the file and
the cause); bad arguments raise ``ValueError``. Warnings the CLI prints on stderr
(a tile size retried after running out of memory, a grey-only model given colour)
are ``RuntimeWarning`` here.
"""

from __future__ import annotations

import inspect
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np
import torch

from restore_core.checkpoint import ModelDescriptor
from restore_core.configs import did_you_mean
from restore_core.device import pick_device
from restore_core.engine.inputs import InputError, Job, collect_inputs, plan_batch, with_neighbour_frames
from restore_core.engine.routing import RoutedRestorer, build_restorer
from restore_core.engine.results import ImageResult, planned_results
from restore_core.engine.runner import Restorer, RunOptions
from restore_core.engine.temporal import TemporalConfig
from restore_core.engine.batch import restore_jobs
from restore_core.io.folders import output_refusal
from restore_core.io.files import remove_stale_temporaries
from restore_core.io.images import DEFAULT_MAX_PIXELS, SUPPORTED_EXTENSIONS, ImageError, from_array, to_array
from restore_core.io.video import WRITABLE_VIDEO_EXTENSIONS, is_video_name
from restore_core.presets import DEFAULT_MODEL_FOR_TASK, load_for_task

if TYPE_CHECKING:
    from restore_core.export import ExportReport

PathLike = str | os.PathLike


# Float samples this far outside [0, 1] are not rounding: a 0-255 image, or one
# normalised to [-1, 1] or by ImageNet's mean and deviation.
UNIT_RANGE_SLACK = 0.01


def _warn_outside_unit_range(low: float, high: float, stacklevel: int) -> None:
    """A RuntimeWarning when float samples lie well outside [0, 1], where they are clipped:
    what the model would see is then mostly white or black, silently."""
    if low < -UNIT_RANGE_SLACK or high > 1 + UNIT_RANGE_SLACK:
        warnings.warn(f"float samples span [{low:.3g}, {high:.3g}] and are clipped to [0, 1], the range float images are "
                      "taken in (a 0-255 image: divide by 255 or pass uint8; a normalised one: undo the normalisation)",
                      RuntimeWarning, stacklevel=stacklevel + 1)


# The task options a model may take through ``load(**settings)``: each is a ``set_<name>``
# method of the models that have it (``restore denoise --sigma`` and its siblings).
MODEL_SETTINGS = ("sigma", "darken_only", "iterations", "recompose_radius", "blend_temperature")


def _refuse_unknown_keywords(settings: dict[str, Any]) -> None:
    """A TypeError, as Python's own for a misspelt keyword, for a setting no model takes
    (``tiles=256``, ``sigm=25``), with the closest name ``load`` knows: it was reported
    as a setting this one model lacked."""
    known = [*MODEL_SETTINGS, *(name for name in inspect.signature(load).parameters if name != "settings")]
    for name in settings:
        if name not in MODEL_SETTINGS:
            raise TypeError(f"load() got an unexpected keyword argument {name!r}{did_you_mean(name, known)}; "
                            f"its model settings: {', '.join(MODEL_SETTINGS)}")


def load(
    model: str | os.PathLike | None = None,
    task: str | None = None,
    *,
    device: str = "auto",
    precision: str = "auto",
    tile: int = 0,
    tile_overlap: int | None = None,
    max_memory: int | None = None,
    self_ensemble: bool = False,
    ensemble_views: int | None = None,
    strength: float = 1.0,
    compile: bool = False,
    route: bool | None = None,
    leave_clean: bool = False,
    **settings: Any,
) -> ImageRestorer:
    """A model ready to restore images, with the options of the ``restore`` commands.

    ``model`` is a preset name (``restore models`` lists them) or a ``.safetensors``
    file; None takes ``task``'s default model. ``task`` (derain, deblur, denoise, dehaze,
    auto) points an all-in-one model at one degradation, as ``restore derain`` does;
    without it such a model detects the degradation of each image. ``settings`` are the
    task options of the commands: ``sigma`` (denoise: a level on the 0-255 scale, or
    ``"auto"``, ``"quick"``, ``"blind"``), ``darken_only`` (derain), ``iterations``
    (deblur), ``recompose_radius`` (dehaze), ``blend_temperature`` (an all-in-one model
    run without routing). A model without a setting refuses it (CheckpointError); a
    keyword that is none of these is a TypeError.
    ``route`` (default: on for ``task="auto"``, as ``restore auto``) sends each image to
    the single-task model of the degradation an all-in-one model's classifier finds;
    ``leave_clean`` routes by the model's clean-aware classifier instead (``restore auto
    --leave-clean``): an image it finds clean comes back unchanged. ``max_memory``: the
    bytes one image may use (``--max-memory``), larger ones restored in tiles sized to fit.
    """
    _refuse_unknown_keywords(settings)
    if task is not None and task not in DEFAULT_MODEL_FOR_TASK:
        raise ValueError(f"unknown task {task!r}; one of {', '.join(DEFAULT_MODEL_FOR_TASK)}")
    if tile < 0 or (tile_overlap or 0) < 0:
        raise ValueError(f"tile and tile_overlap must be >= 0, got {tile} and {tile_overlap}")
    if tile and tile_overlap is not None and tile_overlap >= tile:
        raise ValueError(f"tile_overlap ({tile_overlap}) must be smaller than tile ({tile})")
    if tile and max_memory is not None:
        raise ValueError("tile fixes the tile size and max_memory picks one to fit: give one of them")
    torch_device = pick_device(device)
    descriptor = load_for_task(None if model is None else str(model), task, str(torch_device))
    for name, value in settings.items():
        caution = descriptor.apply_setting(name, value, flag=name)
        if caution:
            warnings.warn(caution, RuntimeWarning, stacklevel=2)
    if caution := descriptor.task_caution(task):
        warnings.warn(caution, RuntimeWarning, stacklevel=2)
    routed = route if route is not None else task == "auto"
    restorer = build_restorer(descriptor, torch_device, task or descriptor.task, precision, tile, tile_overlap, self_ensemble,
                              ensemble_views, compile, strength, routed, leave_clean, max_memory)
    return ImageRestorer(restorer, task or ("auto" if routed else descriptor.task))


class ImageRestorer:
    """A loaded model on its device: call it on an image, or let it restore files.

    Calling it takes a NumPy array (H x W grey, or H x W x C with C = 1, 2, 3, 4 for
    grey, grey + alpha, RGB, RGBA; RGB order; uint8, uint16, or float16/32/64 in [0, 1]) and
    returns the restored image in the same shape and sample type, the alpha plane
    untouched. A torch tensor (3 x H x W or N x 3 x H x W, float in [0, 1]) gives a
    float32 tensor on the tensor's device. Floats are clipped to [0, 1], with a
    RuntimeWarning when they lie well outside it. Not thread-safe: one call at a time.
    """

    def __init__(self, restorer: Restorer | RoutedRestorer, task: str) -> None:
        self.restorer = restorer
        self.task = task

    @property
    def descriptor(self) -> ModelDescriptor:
        """The loaded model and what it declares (architecture, config, task, metrics, ...)."""
        return self.restorer.descriptor

    @property
    def name(self) -> str:
        return self.descriptor.name

    @property
    def device(self) -> torch.device:
        return self.restorer.device

    @property
    def degradation(self) -> dict[str, float] | None:
        """What the model found in the last image it restored: an all-in-one model's
        degradation probabilities, a denoiser's estimated noise level; else None."""
        found = self.restorer.last_degradation
        return found[-1] if found else None

    @property
    def routed_to(self) -> str | None:
        """The single-task model that restored the last image, when routing (``task="auto"``);
        ``"unchanged"`` for an image a classifier with a clean class found clean."""
        models = self.restorer.last_models
        return models[-1] if models else None

    def export_onnx(self, path: PathLike, opset: int = 17) -> "ExportReport":
        """This model, with its settings (``darken_only``, ``iterations``,
        ``recompose_radius``), as an ONNX graph that restores one whole image
        (:mod:`restore_core.export`; as ``restore export``). Strength, tiling and the
        self-ensemble are this restorer's, not the graph's. Raises
        :class:`~restore_core.export.ExportError` for a model that cannot be exported."""
        from restore_core.export import export_onnx

        return export_onnx(self.descriptor, path, opset)

    def __repr__(self) -> str:
        dtype = str(self.restorer.dtype).removeprefix("torch.")
        return f"ImageRestorer({self.name!r}, task={self.task!r}, device={str(self.device)!r}, dtype={dtype})"

    def __call__(self, image: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        if isinstance(image, torch.Tensor):
            return self._restore_tensor(image)
        loaded = from_array(image)
        if image.dtype.kind == "f":
            _warn_outside_unit_range(float(image.min()), float(image.max()), stacklevel=2)
        batch = torch.from_numpy(loaded.rgb).permute(2, 0, 1).unsqueeze(0)
        restored = self._run(batch)[0].cpu().numpy().transpose(1, 2, 0)
        return to_array(restored, loaded, image.shape, image.dtype)

    def _restore_tensor(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim not in (3, 4) or image.shape[-3] != 3 or not image.is_floating_point():
            raise ValueError(f"expected a float tensor 3 x H x W or N x 3 x H x W in [0, 1], got {tuple(image.shape)} {image.dtype}")
        if image.numel() == 0:
            raise ValueError(f"empty image (shape {tuple(image.shape)})")
        image = image.detach()  # restoring is not differentiated through
        if not torch.isfinite(image).all():
            raise ValueError("the image holds NaN or infinite values")
        _warn_outside_unit_range(float(image.min()), float(image.max()), stacklevel=3)
        batch = image.unsqueeze(0) if image.ndim == 3 else image
        restored = self._run(batch.clamp(0, 1)).to(image.device, image.dtype)  # in the caller's type, as arrays are
        return restored[0] if image.ndim == 3 else restored

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        try:
            return self.restorer(batch)
        finally:
            self._warn_notices()

    def _warn_notices(self) -> None:
        while self.restorer.notices:
            warnings.warn(self.restorer.notices.pop(0), RuntimeWarning, stacklevel=4)

    def restore_file(self, source: PathLike, output: PathLike, *, overwrite: bool = False, quality: int = 95,
                     max_pixels: int = DEFAULT_MAX_PIXELS, temporal: int = 0,
                     temporal_strength: float = 4.0) -> ImageResult:
        """Restore the image file ``source`` into the file ``output`` (format from its
        extension), keeping depth, layout, alpha, ICC profile and EXIF where the format
        allows, written atomically; a multi-page TIFF into a TIFF of as many pages (each
        page restored as an image of its own); an animated GIF, PNG or WebP into an
        animation of any of those formats (frame by frame, with its timing and alpha);
        or the video ``source`` into the video ``output``
        (frame by frame, with its timing, colour tags and sound; needs PyAV). Raises
        :class:`ImageError` when ``source`` cannot be read or ``output`` written (nothing
        is left under ``output``; a video keeps the frames it restored in a hidden work
        folder beside it, and the same call later continues from them),
        ``FileExistsError`` when ``output`` exists and ``overwrite`` is False, ``ValueError``
        when it is ``source`` itself.
        ``temporal`` and ``temporal_strength`` (videos, as ``--temporal`` and
        ``--temporal-strength``): average each restored frame with this many aligned
        neighbours on each side (:mod:`restore_core.engine.temporal`)."""
        source, output = Path(source), Path(output)
        formats = WRITABLE_VIDEO_EXTENSIONS if is_video_name(source) else SUPPORTED_EXTENSIONS
        if output.is_dir():
            raise ValueError(f"{output}: a folder; restore_file writes the file it names (e.g. {output / source.name}), "
                             "restore_files fills a folder")
        if output.suffix.lower() not in formats:
            raise ValueError(f"{output}: unsupported output format for {source.name}; use one of {', '.join(formats)}")
        if (refusal := output_refusal(output, output.parent)) is not None:
            raise ValueError(refusal)
        if output.exists() and output.resolve() == source.resolve():  # as restore_files and the commands refuse it, overwrite or not
            raise ValueError(f"{output}: the output would overwrite the input; write the restored copy to another file")
        if output.exists() and not overwrite:
            raise FileExistsError(f"{output}: exists; pass overwrite=True to replace it")
        job = Job(source, Path(source.name), output)
        remove_stale_temporaries([output])
        [result] = self._stream([job], _run_options(1, quality, max_pixels, temporal, temporal_strength))
        if result.status != "ok":
            raise ImageError(source, result.error or "not restored")
        return result

    def restore_files(
        self,
        source: PathLike | Iterable[PathLike],
        out_dir: PathLike,
        *,
        recursive: bool = False,
        suffix: str = "",
        ext: str | None = None,
        overwrite: bool = False,
        skip_existing: bool = False,
        batch_size: int = 1,
        quality: int = 95,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        temporal: int = 0,
        temporal_strength: float = 4.0,
        frames: str | None = None,
    ) -> Iterator[ImageResult]:
        """Restore a file, a folder, a glob pattern, or a list of paths into ``out_dir``
        (sub-folders mirrored), as ``restore derain IN OUT`` does: decoding and
        encoding overlap the model, same-size images are batched, and each input yields
        one :class:`ImageResult` (``status`` ok, error or skipped, with its ``error``),
        in order, images first, then videos; a bad file does not stop the others.

        Raises before restoring anything when an output exists and neither ``overwrite``
        nor ``skip_existing`` is set (``FileExistsError``), and for inputs that name
        nothing, an ``out_dir`` that cannot be one (a file stands there) or outputs that
        would replace inputs (``out_dir`` is the inputs' folder: ``ValueError``). ``temporal``, ``temporal_strength``: as in :meth:`restore_file`,
        for videos and for image sequences: the images of each folder, in name order
        (``frame_9`` before ``frame_10``), are smoothed as one sequence's frames. ``frames``
        (``"png"``, ...; ``--frames``): each video's restored frames as numbered images in
        the folder ``out_dir/NAME/`` instead of a video. Temporary files that a killed
        run left beside these outputs, untouched for an hour, are removed.

        Leaving the loop early (``break``, an exception) stops the engine when the
        iterator is closed or collected; writes already under way finish, so ``out_dir``
        may hold an image or two beyond the last result seen, never a partial file.
        """
        if overwrite and skip_existing:
            raise ValueError("overwrite and skip_existing contradict each other")
        options = _run_options(batch_size, quality, max_pixels, temporal, temporal_strength)
        if frames is not None:
            frames = frames if frames.startswith(".") else "." + frames
            if frames.lower() not in SUPPORTED_EXTENSIONS:
                raise ValueError(f"frames {frames}: not an image format; use one of {', '.join(SUPPORTED_EXTENSIONS)}")
            options = replace(options, video_frames=frames)
        if ext is not None:
            ext = ext if ext.startswith(".") else "." + ext
            if ext.lower() not in SUPPORTED_EXTENSIONS + WRITABLE_VIDEO_EXTENSIONS:
                raise ValueError(f"ext {ext}: unsupported; use one of {', '.join(SUPPORTED_EXTENSIONS + WRITABLE_VIDEO_EXTENSIONS)}")
        out_dir = Path(out_dir)
        if (refusal := output_refusal(out_dir, out_dir)) is not None:
            raise ValueError(refusal)
        unreadable: list[Path] = []
        try:
            if isinstance(source, (str, os.PathLike)):
                jobs = collect_inputs(os.fspath(source), recursive, None, out_dir, unreadable)
            else:  # a list of paths: as on the CLI's stdin
                paths = [os.fspath(path) for path in source]
                if not any(path.strip() for path in paths):
                    raise InputError(f"no paths in the list given ({len(paths)} empty)" if paths else "an empty list of paths")
                jobs = collect_inputs("-", stdin_lines=paths)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        plan = plan_batch(jobs, out_dir, suffix, ext, overwrite, skip_existing, frames=temporal > 0, video_frames=frames is not None)
        if plan.onto_inputs:
            raise ValueError(f"{_count_and_name(plan.onto_inputs)} would replace inputs; choose another out_dir or a suffix")
        if plan.existing:
            raise FileExistsError(f"{_count_and_name(plan.existing)} already exist; pass overwrite=True or skip_existing=True")
        results = planned_results(plan, unreadable)
        remove_stale_temporaries(job.output for job in plan.runnable + plan.skipped if job.output is not None)
        runnable = with_neighbour_frames(plan.runnable, jobs, temporal) if temporal else plan.runnable
        return self._chain(results, runnable, options)  # checked above, run as iterated

    def _chain(self, planned: list[ImageResult], jobs: list[Job], options: RunOptions) -> Iterator[ImageResult]:
        yield from planned
        yield from self._stream(jobs, options)

    def _stream(self, jobs: list[Job], options: RunOptions) -> Iterator[ImageResult]:
        for result in restore_jobs(jobs, self.restorer, options):
            self._warn_notices()
            yield result


def _count_and_name(outputs: list[Path], shown: int = 5) -> str:
    """``7 output(s): a.png, b.png, c.png, d.png, e.png and 2 more``, for an error."""
    more = f" and {len(outputs) - shown} more" if len(outputs) > shown else ""
    return f"{len(outputs)} output(s): {', '.join(str(path) for path in outputs[:shown])}{more}"


def _run_options(batch_size: int, quality: int, max_pixels: int, temporal: int, temporal_strength: float) -> RunOptions:
    """The engine's options from the keyword arguments of the ``restore_*`` methods; ValueError if out of range."""
    if batch_size < 1 or not 1 <= quality <= 100:
        raise ValueError(f"batch_size must be >= 1 and quality 1-100, got {batch_size} and {quality}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    return RunOptions(batch_size=batch_size, max_pixels=max_pixels, jpeg_quality=quality, temporal=TemporalConfig(radius=temporal, strength=temporal_strength))
