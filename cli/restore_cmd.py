"""The restoration commands (``restore derain`` and its siblings).

One factory builds every task's command, so they share options and behaviour
exactly: stdout carries one written path per line (or one JSON object per
image with ``--json``), stderr carries progress and errors, and the exit status
is 0 when every image succeeded, 1 when any failed, 2 on usage errors.
"""

from __future__ import annotations

import inspect
from collections import Counter
from contextlib import contextmanager
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cli import completion
from cli.console import (
    OUTPUT_CLOSED_STATUS, OutputClosed, ProgressLines, emit, err_console, error, fail, first_few, print_json, say, stdin_paths, warn,
)
from cli.options import given_options, parse_clock, parse_memory_size
from restore_core.device import check_cpu_threads  # device.py imports torch only in its functions
from restore_core.engine.inputs import (
    BatchPlan, InputError, Job, OtherCase, check_suffix, collect_all_inputs, is_paged, left_out_unreadable, names_output_file,
    other_case_warning, output_name_refusal, parse_shard, plan_batch, raw_plus_jpeg_pairs, several_inputs_refusal, with_neighbour_frames,
)
from restore_core.io.camera_raw import RAW_OUTPUT
from restore_core.io.folders import output_refusal
from restore_core.io.files import remove_stale_temporaries
from restore_core.io.images import DEFAULT_MAX_PIXELS, LOSSY_EXTENSIONS, READ_ONLY_EXTENSIONS, SUPPORTED_EXTENSIONS, encoder_extension
from restore_core.io.tiff_pages import TIFF_EXTENSIONS
from restore_core.io.video import READ_ONLY_VIDEO_OUTPUT, WRITABLE_VIDEO_EXTENSIONS, is_video_name
from restore_core.presets import DEFAULT_MODEL_FOR_TASK, load_for_task  # presets.py imports torch only when loading

# Modules that import torch are imported where a command runs, not here: building
# the app (and answering --help) then takes a fraction of a second.
if TYPE_CHECKING:
    from restore_core.checkpoint import ModelDescriptor
    from restore_core.engine.results import ImageResult
    from restore_core.engine.runner import RunOptions


BF16_HINT_MIN_IMAGES = 10  # batches this large on a bf16-capable CPU get a hint about --precision bf16

# An example --suffix per command, for its help text.
EXAMPLE_SUFFIX = {"derain": "_derained", "deblur": "_deblurred", "denoise": "_denoised", "dehaze": "_dehazed", "auto": "_restored"}


class _Interrupts:
    """SIGINT and SIGTERM as KeyboardInterrupt, except inside :meth:`held`, which they
    end instead: a result is reported whole (counted and listed) or not at all."""

    def __init__(self) -> None:
        self.holding = False
        self.pending = False

    def handle(self, signum, frame) -> None:
        if self.holding:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextmanager
    def held(self) -> Iterator[None]:
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
            if self.pending:
                self.pending = False
                raise KeyboardInterrupt


def _emit(result: ImageResult, as_json: bool) -> None:
    if as_json:
        print_json(result.as_dict())
    elif result.status == "ok":
        emit(str(result.output))
    if result.status == "error" and not result.abandoned:  # abandoned ones are counted in one line at the end
        error(f"{result.input}: {result.error}")


@dataclass(frozen=True)
class RestoreRequest:
    """Everything one restoration command was asked to do, as parsed from its options."""

    task: str
    sources: tuple[str, ...]  # IN...: files, folders, glob patterns; or '-' (paths on stdin) alone
    out_dir: Path
    model: Optional[str] = None
    device: str = "auto"
    tile: int = 0
    tile_overlap: Optional[int] = None
    max_memory: Optional[str] = None  # the memory one image may use, as given ("4G"): tiles sized to fit
    batch_size: int = 1
    precision: str = "auto"
    recursive: bool = False
    suffix: str = ""
    ext: Optional[str] = None
    quality: int = 95
    overwrite: bool = False
    skip_existing: bool = False
    as_json: bool = False
    quiet: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    shard: Optional[str] = None
    model_settings: dict[str, Any] = field(default_factory=dict)
    self_ensemble: bool = False
    ensemble_views: Optional[int] = None
    compile_model: bool = False
    threads: int = 0
    dry_run: bool = False
    strength: float = 1.0
    route: bool = False  # restore auto: each image to the single-task model of what it suffers from
    leave_clean: bool = False  # restore auto: route by the model's clean-aware classifier; an image it finds clean is written unchanged
    start: Optional[str] = None  # videos: restore from this time (seconds, M:SS or H:MM:SS)
    duration: Optional[str] = None  # videos: this long a span of them
    temporal: int = 0  # videos and image sequences: smooth each restored frame with this many aligned neighbours on each side
    temporal_strength: float = 4.0  # how strongly (engine.temporal: h^2 in multiples of a neighbour's median distance)
    frames: Optional[str] = None  # videos: write each one's frames as numbered images of this format into a folder
    given: tuple[str, ...] = ()  # the options given on the command line (cli.options), not left at their defaults


@dataclass(frozen=True)
class CheckedOptions:
    """What :func:`_check_options` makes of a request's options: formats with their dot,
    times in seconds, the shard as numbers, and the output file where OUT names one."""

    ext: Optional[str]  # images' or videos' output format, e.g. ".png"
    output_file: Optional[Path]  # OUT itself, when IN is one image (video) and OUT names a file
    shard: Optional[tuple[int, int]]
    video_start: float
    video_duration: Optional[float]
    video_frames: Optional[str]  # the image format of a video's frames (--frames), e.g. ".png"
    memory_limit: Optional[int] = None  # --max-memory in bytes


def run_restore(request: RestoreRequest) -> None:
    """Shared body of every restoration command: check the options, plan the outputs,
    load the model, stream the images through it, report.

    ``model_settings`` are task options applied to the loaded model (e.g. the
    Golf Optimizer's ``iterations``); a model without that setting is a usage error.
    """
    checked = _check_options(request)
    jobs, plan, results = _plan_outputs(request, checked)
    for result in results:
        _emit(result, request.as_json)
    runnable = plan.runnable
    descriptor, restorer = _load_restorer(request, runnable, checked.memory_limit)
    if request.dry_run:
        _report_dry_run(request, runnable, results, descriptor.name if descriptor else None)
        return
    # A run killed without warning (kill -9, a node lost) leaves its temporary files; a
    # later run for the same outputs clears them (skipped ones too: --overwrite runs leave some).
    stale = remove_stale_temporaries(job.output for job in runnable + plan.skipped if job.output is not None)
    if stale and not request.quiet:
        say(f"note: removed {len(stale)} temporary file(s) that an interrupted run left: {first_few(stale, 2)}")
    _warn_of_options_without_inputs(request, checked, runnable)
    start = time.perf_counter()
    done = results  # every output already there: nothing to restore, and torch never imported
    if runnable:
        to_restore = runnable
        if request.temporal:
            to_restore = with_neighbour_frames(runnable, jobs, request.temporal)  # image sequences, with the neighbours they need
        done = _stream_with_progress(request, restorer, to_restore, _run_options(request, checked), results, len(runnable))
    _report_summary(request, done, time.perf_counter() - start, descriptor)


def _run_options(request: RestoreRequest, checked: CheckedOptions) -> RunOptions:
    """The engine's options of this run."""
    from restore_core.engine.runner import RunOptions
    from restore_core.engine.temporal import TemporalConfig

    return RunOptions(batch_size=request.batch_size, precision=request.precision, max_pixels=request.max_pixels,
                      jpeg_quality=request.quality, video_start=checked.video_start, video_duration=checked.video_duration,
                      temporal=TemporalConfig(radius=request.temporal, strength=request.temporal_strength),
                      video_frames=checked.video_frames)


def _check_options(request: RestoreRequest) -> CheckedOptions:
    """Every option on its own and against the others, before any input is looked at:
    a usage error (exit 2) names the option and what it takes. Nothing here imports
    torch: a mistake is answered in a fraction of a second, not after torch's 1.5 s."""
    if request.overwrite and request.skip_existing:
        fail("--overwrite and --skip-existing contradict each other", code=2)
    ext = request.ext
    if ext is not None:
        ext = ext if ext.startswith(".") else "." + ext
        if ext.lower() not in SUPPORTED_EXTENSIONS + WRITABLE_VIDEO_EXTENSIONS:
            fail(f"--ext {ext}: unsupported; use one of {', '.join(SUPPORTED_EXTENSIONS)} (images) or {', '.join(WRITABLE_VIDEO_EXTENSIONS)} (videos)", code=2)
    if request.max_pixels < 1:
        fail(f"--max-pixels must be >= 1, got {request.max_pixels}", code=2)
    try:
        check_suffix(request.suffix)
    except InputError as exc:
        fail(f"--{exc}", code=2)
    if not 1 <= request.quality <= 100:
        fail(f"--quality must be between 1 and 100, got {request.quality}", code=2)
    if not 0.0 <= request.strength <= 1.0:
        fail(f"--strength must be between 0 and 1 (1 = the full restoration, 0 = the input), got {request.strength:g}", code=2)
    try:
        video_start = parse_time(request.start, "--start") if request.start is not None else 0.0
        video_duration = parse_time(request.duration, "--duration") if request.duration is not None else None
    except ValueError as exc:
        fail(str(exc), code=2)
    if video_duration is not None and video_duration <= 0:
        fail(f"--duration must be more than 0 seconds, got {request.duration}", code=2)
    video_frames = None
    if request.frames is not None:
        video_frames = request.frames if request.frames.startswith(".") else "." + request.frames
        if video_frames.lower() not in SUPPORTED_EXTENSIONS:
            fail(f"--frames {request.frames}: not an image format; use one of {', '.join(SUPPORTED_EXTENSIONS)} (png or tif keep 16 bits)", code=2)
        if ext is not None and ext.lower() in WRITABLE_VIDEO_EXTENSIONS:
            fail(f"--frames writes videos as folders of images; --ext {ext} names a video format", code=2)
    if not 0 <= request.temporal <= 8:
        fail(f"--temporal must be between 0 (off) and 8 frames on each side, got {request.temporal}", code=2)
    if not 0 < request.temporal_strength <= 100:
        fail(f"--temporal-strength must be more than 0 and at most 100, got {request.temporal_strength:g}", code=2)
    if "--temporal-strength" in request.given and not request.temporal:
        fail("--temporal-strength applies with --temporal R (the neighbouring frames to smooth with, e.g. 2)", code=2)
    for flag, value, least in (("--tile", request.tile, 0), ("--tile-overlap", request.tile_overlap or 0, 0),
                               ("--batch-size", request.batch_size, 1)):
        if value < least:  # the option that is wrong, alone
            fail(f"{flag} must be >= {least}{' (0 = whole images)' if flag == '--tile' else ''}, got {value}", code=2)
    if request.tile and request.tile_overlap is not None and request.tile_overlap >= request.tile:
        fail(f"--tile-overlap ({request.tile_overlap}) must be smaller than --tile ({request.tile})", code=2)
    try:
        check_cpu_threads(request.threads)
    except ValueError as exc:
        fail(str(exc), code=2)
    output_file = None
    if len(request.sources) > 1:  # their outputs go into a folder
        refusal = several_inputs_refusal(request.sources, request.out_dir)
        if refusal is not None:
            fail(refusal, code=2)
    else:  # one IN: OUT may be its output file
        source = request.sources[0]
        output_file = request.out_dir if names_output_file(source, request.out_dir) else None
        refusal = output_name_refusal(source, request.out_dir) if video_frames is None else None
        if refusal is not None:
            fail(refusal, code=2)
        if output_file is not None and video_frames and is_video_name(source):
            fail(f"--frames writes a folder of images, and {request.out_dir} names a video file; give a folder", code=2)
        if (output_file is None and is_video_name(source) and is_video_name(request.out_dir) and not request.out_dir.is_dir()
                and Path(source).is_file()):
            fail(f"{request.out_dir}: restore reads {request.out_dir.suffix} videos but does not write them; name the output "
                 f"{request.out_dir.stem}{READ_ONLY_VIDEO_OUTPUT} (or use one of {', '.join(WRITABLE_VIDEO_EXTENSIONS)})", code=2)
    if output_file is not None and output_file.suffix.lower() in READ_ONLY_EXTENSIONS:
        fail(f"{output_file}: restore reads {output_file.suffix} images (camera raw) but does not write them; name the output "
             f"{output_file.stem}{RAW_OUTPUT} (16 bits) or give another image format", code=2)
    if output_file is not None and (request.suffix or ext):
        fail(f"--suffix and --ext name outputs in a folder; {output_file} is the output file itself (its extension sets the format)", code=2)
    refusal = output_refusal(request.out_dir, request.out_dir.parent if output_file is not None else request.out_dir)
    if refusal is not None:  # else every image is restored, then refused on write ("Not a directory")
        fail(refusal, code=2)
    try:
        shard = parse_shard(request.shard) if request.shard else None
    except InputError as exc:
        fail(str(exc), code=2)
    memory_limit = None
    if request.max_memory is not None:
        if request.tile:
            fail("--tile fixes the tile size and --max-memory picks one to fit: give one of them", code=2)
        try:
            memory_limit = parse_memory_size(request.max_memory)
        except ValueError as exc:
            fail(f"--max-memory: {exc}", code=2)
    return CheckedOptions(ext, output_file, shard, video_start, video_duration, video_frames, memory_limit)


def _plan_outputs(request: RestoreRequest, checked: CheckedOptions) -> tuple[list[Job], BatchPlan, list[ImageResult]]:
    """The inputs IN names, each one's output, and what is already decided about them
    (refused, skipped, left out; :func:`planned_results`). Warns once of what is left
    out; outputs that would replace inputs, and existing outputs without ``--overwrite`` or
    ``--skip-existing``, are usage errors."""
    from restore_core.engine.results import planned_results

    unreadable: list[Path] = []
    videos_left_out: list[Path] = []
    other_case: list[OtherCase] = []
    try:
        stdin = stdin_paths(request.quiet) if request.sources == ("-",) else None
        jobs = collect_all_inputs(request.sources, request.recursive, stdin, request.out_dir, unreadable, videos_left_out, other_case)
    except InputError as exc:
        fail(str(exc), code=2)
    reports_for_the_job = checked.shard is None or checked.shard[0] == 0  # shard 0 speaks for the whole job
    if not reports_for_the_job:
        unreadable = videos_left_out = other_case = []
    if unreadable and not request.quiet:
        warn(left_out_unreadable(unreadable))
    for missed in other_case if not request.quiet else ():
        warn(other_case_warning(missed))
    shot_twice = raw_plus_jpeg_pairs(jobs) if reports_for_the_job else []
    if shot_twice and not request.quiet:
        raw, rendition = shot_twice[0]
        warn(f"{len(shot_twice)} photo(s) are here twice, as camera raw and as the camera's own "
             f"{rendition.suffix[1:].upper()} (e.g. {raw.name} and {rendition.name}): both are restored; name one kind "
             f"to restore it alone, e.g. '{raw.parent / ('*' + raw.suffix)}'")
    if videos_left_out and not request.quiet:
        folder = next((Path(spec) for spec in request.sources if videos_left_out[0].is_relative_to(spec)), videos_left_out[0].parent)
        pattern = folder / ("**/*" if request.recursive else "*")
        warn(f"left out {len(videos_left_out)} video(s) in {folder}: a folder's videos are restored only when named, "
             f"e.g. '{pattern}{videos_left_out[0].suffix}'")
    plan = plan_batch(jobs, request.out_dir, request.suffix, checked.ext, request.overwrite, request.skip_existing, checked.shard,
                      checked.output_file, frames=request.temporal > 0, video_frames=checked.video_frames is not None)
    if plan.left_out and not request.quiet:
        warn(f"left out {len(plan.left_out)} input(s) that are this run's outputs of other inputs: "
             f"{first_few((job.source for job in plan.left_out), 3)}")
    if plan.onto_inputs:
        fail(f"{len(plan.onto_inputs)} output(s) would replace inputs of this run: {first_few(plan.onto_inputs, 5)}; "
             "choose another output folder or --suffix", code=2)
    if plan.existing:
        fail(f"{len(plan.existing)} output(s) already exist: {first_few(plan.existing, 5)}; pass --overwrite or --skip-existing", code=2)
    return jobs, plan, planned_results(plan, unreadable)


def _load_restorer(request: RestoreRequest, runnable: list[Job], memory_limit: Optional[int] = None) -> tuple[Optional[ModelDescriptor], Any]:
    """The model (None when nothing is left to restore) with the task's settings applied,
    and what restores with it (a Restorer, or a RoutedRestorer for ``restore auto``).
    A model that cannot be loaded, or a setting it does not take, is a usage error.
    Nothing left to restore (every output there already, with ``--skip-existing``):
    no model is loaded, nor torch imported."""
    if not runnable:
        return None, None
    from restore_core.checkpoint import CheckpointError
    from restore_core.device import cpu_has_bf16_units, pick_device, set_cpu_threads
    from restore_core.engine.routing import build_restorer
    from restore_core.engine.tiling import tile_cautions

    set_cpu_threads(request.threads)
    try:
        torch_device = pick_device(request.device)
        descriptor = load_for_task(request.model, request.task, str(torch_device))
        for name, value in request.model_settings.items():
            caution = descriptor.apply_setting(name, value) if value is not None else None
            if caution and not request.quiet:
                warn(caution)
        restorer = build_restorer(
            descriptor, torch_device, request.task, request.precision, request.tile, request.tile_overlap, request.self_ensemble,
            request.ensemble_views, request.compile_model, request.strength, request.route, request.leave_clean, memory_limit)
    except (CheckpointError, ValueError) as exc:
        fail(str(exc), code=2)
    if request.quiet:
        return descriptor, restorer
    for caution in [*tile_cautions(request.tile, request.tile_overlap), descriptor.task_caution(request.task)]:
        if caution:
            warn(caution)
    if restorer.device.type == "cpu" and request.batch_size > 1:
        warn(f"--batch-size {request.batch_size} on the CPU: batches run slower than one image at a time there (12 photos of "
             "480x320, batches of 4 on 2 cores: 1.3-1.6x the time with the shipped models); batching pays on GPUs")
    model = descriptor.model
    if getattr(model, "takes_noise_level", False) and model.estimates_sigma and model.second_look and not model.needs_first_pass:
        say(f"note: {descriptor.name} has no noise calibration, so --sigma auto reads each level from the image alone "
            f"('restore train --calibrate {descriptor.path or descriptor.name} --clean PHOTOS/' adds the second look)")
    if (restorer.device.type == "cpu" and request.precision == "auto" and len(runnable) >= BF16_HINT_MIN_IMAGES
            and cpu_has_bf16_units()):
        say("hint: this CPU has bf16 units (AMX/AVX512-BF16): --precision bf16 restores 1.2-3.6x faster, "
            "within 0.015 dB PSNR on the shipped models (--precision fp32 keeps this default and hides this line)")
    return descriptor, restorer


def _warn_of_options_without_inputs(request: RestoreRequest, checked: CheckedOptions, runnable: list[Job]) -> None:
    """Options that apply to videos (or images) alone, given none: said, not refused.
    ``--temporal`` over image sequences says how it orders their frames."""
    if request.quiet:
        return
    videos = sum(is_video_name(job.source) for job in runnable)
    if (request.start or request.duration or checked.video_frames) and not videos:
        warn(f"{'--frames applies' if checked.video_frames else '--start and --duration apply'} to videos; there is none among the inputs")
    if checked.ext is not None and runnable:  # a video format changes videos alone, an image format images alone
        for_videos = checked.ext.lower() in WRITABLE_VIDEO_EXTENSIONS
        if not any(is_video_name(job.source) == for_videos for job in runnable):
            warn(f"--ext {checked.ext} applies to {'videos' if for_videos else 'images'}; there is none among the inputs, "
                 "which keep their own format")
    if "--quality" in request.given and runnable:
        def written_as(job: Job) -> str:  # the format of what the job writes
            if checked.video_frames and is_video_name(job.source):
                return checked.video_frames.lower()
            return "video" if is_video_name(job.output or job.source) else (job.output or job.source).suffix.lower()

        formats = sorted({written_as(job) for job in runnable})
        if not any(f == "video" or encoder_extension(f) in LOSSY_EXTENSIONS for f in formats):
            warn(f"--quality applies to JPEG, WebP, AVIF, HEIC and JPEG XL outputs and to videos; the outputs here are "
                 f"{', '.join(formats)}, written losslessly ({'--frames' if checked.video_frames else '--ext'} jpg for JPEG)")
    if request.temporal:
        paged = sum(not is_video_name(job.source) and is_paged(job.source) for job in runnable)  # animations, stacks
        stills = len(runnable) - videos - paged
        if stills > 1:
            say(f"--temporal {request.temporal}: the images of each folder are smoothed as the frames of one sequence, "
                "in name order (frame_9 before frame_10)")
        elif runnable and stills == len(runnable):
            warn("--temporal smooths the frames of videos, animations, multi-page TIFFs and image sequences; "
                 "there is none among the inputs")


def _stream_with_progress(request: RestoreRequest, restorer: Any, to_restore: list[Job], options: RunOptions,
                          planned: list[ImageResult], runnable_count: int) -> list[ImageResult]:
    """Restore ``to_restore`` and report each result as it comes (a path or a JSON line
    on stdout, an error on stderr) under a progress bar; returns every result, the
    ``planned`` ones first. Ctrl-C and SIGTERM end the run like a closed stdout: the
    image being restored is abandoned, writes under way finish (atomic renames: no
    partial file) and are reported, then the command exits 130 (141)."""
    from restore_core.engine.runner import finish_interrupted
    from restore_core.engine.batch import restore_jobs

    # A signal during a report waits for its end (_Interrupts). SIGINT explicitly too: a
    # process started in the background by a non-interactive shell inherits SIGINT
    # ignored, and `kill -INT` must still stop it cleanly.
    interrupts = _Interrupts()
    signal.signal(signal.SIGTERM, interrupts.handle)
    signal.signal(signal.SIGINT, interrupts.handle)
    inputs = runnable_count + len(planned)
    done: list[ImageResult] = list(planned)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=request.quiet or not err_console.is_terminal,
    ) as bar:
        progress = bar.add_task(request.task, total=runnable_count)
        frame_bars: dict[Path, Any] = {}  # a video's or an animation's own line: its frames (a multi-page TIFF's: its pages)
        plain = not (request.quiet or err_console.is_terminal)  # a log file: lines now and then instead of bars
        frame_lines = ProgressLines("frames") if plain else None
        page_lines = ProgressLines("pages") if plain else None
        input_lines = ProgressLines("inputs") if plain else None
        if input_lines is not None:
            input_lines(request.task, 0, runnable_count)  # the batch is timed from its start

        def show_frames(job, count: int, total: int) -> None:
            if job.source not in frame_bars:
                frame_bars[job.source] = bar.add_task(f"  {escape(job.source.name)}", total=None)  # the column reads markup
            bar.update(frame_bars[job.source], completed=count, total=total or None)
            lines = page_lines if job.source.suffix.lower() in TIFF_EXTENSIONS else frame_lines
            line = lines(job.source, count, total) if lines is not None else None
            if line is not None:
                say(line)

        def report(result: ImageResult) -> None:
            if result.input in frame_bars:
                bar.remove_task(frame_bars.pop(result.input))
            while restorer.notices:
                warn(restorer.notices.pop(0))
            done.append(result)
            _emit(result, request.as_json)
            bar.advance(progress)
            line = input_lines(request.task, len(done) - len(planned), runnable_count) if input_lines is not None else None
            if line is not None:
                say(line)

        stream = restore_jobs(to_restore, restorer, options, show_frames)
        result = None
        try:
            for result in stream:
                with interrupts.held():
                    report(result)
        except KeyboardInterrupt:
            if result is not None and (not done or done[-1] is not result):  # the signal came before its report began
                report(result)
            for result in finish_interrupted(stream):  # writes that finished after the signal: named too
                report(result)
            ok = sum(r.status == "ok" for r in done)
            videos = " (a video stopped part-way keeps the frames it restored and continues from them)" if any(
                is_video_name(job.source) for job in to_restore) else ""
            say(f"interrupted: {ok} of {inputs} input(s) written; re-run with --skip-existing to finish{videos}")
            raise typer.Exit(130)
        except OutputClosed:
            # Stopped as an interrupt stops the engine: writes under way finish (atomic: no
            # partial file) and are counted, though stdout can no longer name them.
            done.extend(finish_interrupted(stream))
            ok = sum(r.status == "ok" for r in done)
            try:
                say(f"stopped: stdout was closed by its reader; {ok} of {inputs} input(s) written; "
                    "re-run with --skip-existing to finish")
            except (OutputClosed, OSError):  # stderr went with it (2>&1 | head)
                pass
            raise typer.Exit(OUTPUT_CLOSED_STATUS)
    return done


def _report_summary(request: RestoreRequest, done: list[ImageResult], elapsed: float, descriptor: Optional[ModelDescriptor]) -> None:
    """The run's last lines on stderr (a batch stopped early, notes once per kind, the
    counts and the model) and its exit status: 1 when any image failed."""
    ok = sum(r.status == "ok" for r in done)
    failed = sum(r.status == "error" for r in done)
    skipped = sum(r.status == "skipped" for r in done)
    abandoned = [r for r in done if r.abandoned]
    if abandoned:  # even with --quiet: it is why the batch ended early
        stopper = next(r for r in done if r.stops_batch)
        error(f"stopped: {stopper.output or stopper.input}: {stopper.error}; {len(abandoned)} image(s) not restored "
              "(free space or fix the output folder, then re-run with --skip-existing)")
    if not request.quiet:
        noted: dict[str, list[Path]] = {}
        for r in done:
            if r.note is not None:
                noted.setdefault(r.note, []).append(r.input)
        for note, inputs in noted.items():  # once per kind, naming the inputs; each one's own line has it with --json
            which = str(inputs[0]) if len(inputs) == 1 else f"{len(inputs)} inputs ({first_few(inputs, 2)})"
            warn(f"{which}: {note}")
        model_note = f" with {descriptor.name}" if descriptor else ""
        routed = Counter(r.model for r in done if r.model is not None)
        if routed:
            from restore_core.engine.routing import UNCHANGED

            clean = routed.pop(UNCHANGED, 0)
            if routed:
                model_note = f", routed by {descriptor.name}'s classifier to " + ", ".join(f"{name} ({count})" for name, count in routed.most_common())
                model_note += f"; {clean} found clean, written unchanged" if clean else ""
            else:
                model_note = f"; {descriptor.name}'s classifier found every one clean: written unchanged"
        say(f"{ok} restored, {failed} failed, {skipped} skipped in {elapsed:.1f} s{model_note}")  # plain: names may hold brackets
    if failed:
        raise typer.Exit(1)


def _report_dry_run(request: RestoreRequest, runnable: list, results: list[ImageResult], model_name: str | None) -> None:
    """``--dry-run``: each input the run would restore, as a ``planned`` line (its
    output path, or a JSON object with ``--json``), then the summary; nothing is read
    or written. The exit status is the run's own: 1 when inputs would be refused."""
    for job in runnable:
        if request.as_json:
            print_json({"input": str(job.source), "output": str(job.output), "status": "planned"})
        else:
            emit(str(job.output))
    refused = sum(r.status == "error" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    if not request.quiet:
        model_note = f" with {model_name}" if model_name else ""
        say(f"dry run: {len(runnable)} to restore{model_note}, {refused} refused, {skipped} skipped; nothing written")
    if refused:
        raise typer.Exit(1)


def parse_time(text: str, flag: str) -> float:
    """``90``, ``90.5``, ``1:30`` or ``1:02:03.5`` -> seconds (a time in a video)."""
    try:
        return parse_clock(text)
    except ValueError as exc:
        raise ValueError(f"{flag} {text!r}: {exc}") from None


def parse_sigma(value: Optional[str]) -> float | str | None:
    """``--sigma``: a noise level on the 0-255 scale, ``auto`` (estimated per image, in
    two looks), ``quick`` (estimated in one look) or ``blind`` (not told)."""
    if value is None or value in ("auto", "quick", "blind"):
        return value
    try:
        return float(value)
    except ValueError:
        raise typer.BadParameter(f"expected a number (the noise's standard deviation, 0-255), 'auto', 'quick' or 'blind', got {value!r}") from None


# Options only some tasks have: task -> [(parameter name, typer.Option, annotation)].
# Their values reach the model as settings (see ModelDescriptor.apply_setting).
TASK_OPTIONS: dict[str, list[tuple[str, Any, Any]]] = {
    "derain": [
        ("darken_only", typer.Option(None, "--darken-only/--no-darken-only", help="Never brighter than the input (min of the network's output and the input: rain only adds light), or the network's output as is. Default: the model's own (on for the shipped one)."), Optional[bool]),
    ],
    "deblur": [
        ("iterations", typer.Option(None, "--iterations", help="Golf Optimizer: taps N of G after F's first shot (default: the model's own; 0 for the shipped golf-deblur, whose G gained nothing measurable). More taps than G was trained over drift: warned."), Optional[int]),
    ],
    "dehaze": [
        ("recompose_radius", typer.Option(None, "--recompose-radius", help="Rebuild the output from the input by the scattering model with the transmission the network implies, smoothed by a guided filter of this radius (pixels); 0 = the network's output as is. Default: the model's own (40 for the shipped one)."), Optional[int]),
    ],
    "auto": [
        ("route", typer.Option(True, "--route/--no-route", help="Restore each image with the single-task model of the degradation the all-in-one model's classifier finds (taylor-derain, golf-deblur, infoflow-denoise, infoflow-dehaze: 2.4-6.9 dB above the ADMS network on rain, blur, noise and haze test sets; little is done to an image the classifier gets wrong; an image a classifier trained with a clean class finds clean is written unchanged; the JSON line names the model), or with the all-in-one model itself."), bool),
        ("leave_clean", typer.Option(False, "--leave-clean", help="Route by the model's classifier that also knows clean photographs (the shipped adms has one): an image it finds clean is written unchanged, not handed to a specialist (of CBSD68's 68 clean photographs: 57 unchanged, where the default dehazes 24 and darkens them), but it finds less light rain and indoor haze (SemiIRR_val20 routed 23.60 dB Y against 24.32, SOTS 23.53 against 25.84). For folders of mostly clean photos."), bool),
        ("blend_temperature", typer.Option(None, "--blend-temperature", help="With --no-route: how sharply the classifier's probabilities p weight each degradation's filters, ĉ ∝ p^(1/T): 1 = as the ADMS paper, below 1 more of the most probable degradation's filters. Default: the model's own (0.25 for the shipped one)."), Optional[float]),
    ],
    "denoise": [
        ("sigma", typer.Option(None, "--sigma", callback=parse_sigma, autocompletion=completion.noise_levels, help="Noise level of the input (standard deviation, 0-255 scale) for models with a noise-level input: told it, they are non-blind; 'auto' (their default) estimates it per image, from the image and then (calibrated checkpoints) from what the model removes from a central 256x256 crop, raised where the image's colour shows a camera's demosaiced noise, or measures it from a camera raw file's own sensor data; 'quick' from the image alone (one pass, less exact); 'blind' tells them nothing. Blind-only models refuse a level."), Optional[str]),
    ],
}


# One more help example for the tasks that have options of their own.
TASK_EXAMPLES = {
    "derain": "restore derain storm/ clear/ --no-darken-only",
    "deblur": "restore deblur shaky/ sharp/ --iterations 3",
    "denoise": "restore denoise scans/ clean/ --sigma 15\n\n        restore denoise photos/ clean/ --sigma auto --strength 0.8",
    "dehaze": "restore dehaze foggy/ clear/ --recompose-radius 0",
    "auto": "restore auto archive/ restored/ --leave-clean",
}


# The --help panels of the restore commands' options (the model and what it does stay under "Options").
OUTPUT_PANEL = "Output"
BATCH_PANEL = "Inputs and batch jobs"
SPEED_PANEL = "Speed and memory"
VIDEO_PANEL = "Videos and image sequences"


def make_restore_command(task: str, verb: str) -> Callable[..., None]:
    """Build the Typer command for ``task`` (e.g. derain) with the shared options,
    plus the task's own options from :data:`TASK_OPTIONS`."""
    default_model = DEFAULT_MODEL_FOR_TASK.get(task, "none")
    extras = TASK_OPTIONS.get(task, [])

    def command(
        ctx: typer.Context,
        sources: list[str] = typer.Argument(..., metavar="IN", show_default=False, help="Image or video files, folders (their images), glob patterns (photos/*.jpg, as the shell expands it, or quoted), or '-' alone for paths on stdin (one a line, or NUL-separated as find -print0 writes them)."),
        out_dir: Path = typer.Argument(..., metavar="OUT", help="Output folder (sub-folders of IN are mirrored); or, when IN is one image (video), the output file if OUT ends in an image (video) extension and is not a folder."),
        model: Optional[str] = typer.Option(None, "--model", "-m", autocompletion=completion.models, help=f"Preset name or .safetensors file (default: {default_model})."),
        device: str = typer.Option("auto", "--device", autocompletion=completion.devices, help="auto (CUDA if present, else CPU), cpu, cuda, cuda:1, ..."),
        self_ensemble: bool = typer.Option(False, "--self-ensemble", help="Average the model over flipped/rotated views of each image (those the task's models handle: 2 to 8): a little better, 2-8x slower."),
        ensemble_views: Optional[int] = typer.Option(None, "--ensemble-views", help="Self-ensemble over this many of the task's views (identity, mirror, half turn, upside-down mirror, then quarter turns): 4 of denoising's 8 give most of the gain at half the time. Implies --self-ensemble."),
        strength: float = typer.Option(1.0, "--strength", help="How much of the restoration to apply, 0-1: 1 = all of it, 0.7 = keep 30 % of what the model removes (grain, atmosphere), 0 = the input."),
        suffix: str = typer.Option("", "--suffix", help=f"Appended to each output file's stem, e.g. {EXAMPLE_SUFFIX.get(task, '_restored')}.", rich_help_panel=OUTPUT_PANEL),
        ext: Optional[str] = typer.Option(None, "--ext", autocompletion=completion.output_formats, help="Output format of images (png, jpg, tif, webp, bmp, gif; avif, heic and jxl where this install reads them) or of videos (mp4, mkv, mov, m4v, webm, avi, ts, mts, m2ts); default: the input's (tif for camera raw; mkv for mpg, 3gp, wmv, flv).", rich_help_panel=OUTPUT_PANEL),
        quality: int = typer.Option(95, "--quality", help="JPEG, WebP, AVIF, HEIC and JPEG XL outputs, and videos (95 = H.264 CRF 18): encoder quality, 1-100.", rich_help_panel=OUTPUT_PANEL),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs.", rich_help_panel=OUTPUT_PANEL),
        skip_existing: bool = typer.Option(False, "--skip-existing", help="Leave existing outputs alone and skip those inputs.", rich_help_panel=OUTPUT_PANEL),
        as_json: bool = typer.Option(False, "--json", help="One JSON object per image on stdout.", rich_help_panel=OUTPUT_PANEL),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary on stderr.", rich_help_panel=OUTPUT_PANEL),
        dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Plan only: list each input's output (status 'planned' with --json), refusals and skips, check the model; read and write no image.", rich_help_panel=OUTPUT_PANEL),
        recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders of IN.", rich_help_panel=BATCH_PANEL),
        max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", help="Refuse images larger than this many pixels.", rich_help_panel=BATCH_PANEL),
        shard: Optional[str] = typer.Option(None, "--shard", help="I/N: process only shard I of N of the sorted inputs (split a job over N machines).", rich_help_panel=BATCH_PANEL),
        tile: int = typer.Option(0, "--tile", help="Restore in tiles of this size (0 = whole image, tiled automatically on the CPU when it would not fit in free memory); bounds memory.", rich_help_panel=SPEED_PANEL),
        tile_overlap: Optional[int] = typer.Option(None, "--tile-overlap", help="Pixels shared by neighbouring tiles (blended); default half the tile, at most 96.", rich_help_panel=SPEED_PANEL),
        max_memory: Optional[str] = typer.Option(None, "--max-memory", help="The memory one image may use, e.g. 4G or 512M (1G = 1024^3 bytes): larger images are restored in tiles sized to fit, measured per model (CPU: RAM; GPU: its memory). Default: on the CPU half the free memory.", rich_help_panel=SPEED_PANEL),
        batch_size: int = typer.Option(1, "--batch-size", help="Images of the same size restored together (for GPUs: on a CPU, batches run slower than single images).", rich_help_panel=SPEED_PANEL),
        precision: str = typer.Option("auto", "--precision", autocompletion=completion.precisions, help="auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16.", rich_help_panel=SPEED_PANEL),
        compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model (Inductor; needs a C++ compiler): slower start, then faster on many same-size images.", rich_help_panel=SPEED_PANEL),
        threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0 = torch's default, one per core).", rich_help_panel=SPEED_PANEL),
        start: Optional[str] = typer.Option(None, "--start", help="Videos: restore from this time (seconds, M:SS or H:MM:SS); the output starts there, sound cut alike.", rich_help_panel=VIDEO_PANEL),
        duration: Optional[str] = typer.Option(None, "--duration", help="Videos: restore this long a span (seconds or M:SS): try settings on a few seconds before hours of frames.", rich_help_panel=VIDEO_PANEL),
        temporal: int = typer.Option(0, "--temporal", help="Videos, animations, multi-page TIFFs, and image sequences (the images of each folder, in name order): average each restored frame with this many neighbours on each side, aligned by optical flow, where they agree (2 is a good start; 0 = off): less flicker, less residual noise.", rich_help_panel=VIDEO_PANEL),
        temporal_strength: float = typer.Option(4.0, "--temporal-strength", help="With --temporal: how much of a neighbour is taken where it agrees less than usual; lower keeps more detail in motion (2 suited denoising), higher removes more flicker (8 suited heavy rain).", rich_help_panel=VIDEO_PANEL),
        frames: Optional[str] = typer.Option(None, "--frames", autocompletion=completion.frame_formats, help="Videos: write each one's restored frames as numbered images of this format (png; tif or png keep 10-bit video at 16 bits, heic at 10) into the folder OUT/NAME/ (000001.png, ...), not a video: lossless, for editing or scoring frame by frame.", rich_help_panel=VIDEO_PANEL),
        **settings: Any,
    ) -> None:
        route = settings.pop("route", False)  # engine choices, not model settings
        leave_clean = settings.pop("leave_clean", False)
        if route and settings.get("blend_temperature") is not None:
            fail("--blend-temperature weights the ADMS network's filters, which only --no-route runs", code=2)
        if leave_clean and not route:
            fail("--leave-clean chooses the classifier routing asks; --no-route restores every image with the ADMS network", code=2)
        run_restore(RestoreRequest(
            task=task, sources=tuple(sources), out_dir=out_dir, model=model, device=device, tile=tile, tile_overlap=tile_overlap, max_memory=max_memory,
            batch_size=batch_size, precision=precision, recursive=recursive, suffix=suffix, ext=ext, quality=quality, overwrite=overwrite,
            skip_existing=skip_existing, as_json=as_json, quiet=quiet, max_pixels=max_pixels, shard=shard,
            model_settings=settings, self_ensemble=self_ensemble, ensemble_views=ensemble_views, compile_model=compile_model, threads=threads, dry_run=dry_run,
            strength=strength, route=route, leave_clean=leave_clean, start=start, duration=duration, temporal=temporal, temporal_strength=temporal_strength,
            frames=frames, given=tuple(given_options(ctx)),
        ))

    # Typer reads the signature: replace **settings by the task's own options.
    signature = inspect.signature(command)
    shared = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    own = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation) for name, option, annotation in extras]
    command.__signature__ = signature.replace(parameters=shared + own)  # type: ignore[attr-defined]
    command.__doc__ = f"""{verb} images: files, folders, globs or '-' (stdin) into OUT.

    Examples:

        restore {task} photos/ restored/

        restore {task} photos/*.jpg more/IMG_0042.heic restored/

        restore {task} big.tif out/ --tile 512

        restore {task} shot.jpg shot-clear.png

        restore {task} stack.tif out/   # every page of a multi-page TIFF

        restore {task} loop.gif loop-clear.webp   # every frame of an animation, its timing kept

        restore {task} clip.mp4 clip-clear.mp4

        restore {task} clip.mp4 try.mp4 --start 1:30 --duration 5

        restore {task} clip.mp4 clip-clear.mp4 --temporal 2

        restore {task} clip.mp4 frames/ --frames png

        find /data -name '*.png' | restore {task} - out/ --json

        restore {task} photos/ out/ --shard $SLURM_ARRAY_TASK_ID/8 --skip-existing

        restore {task} photos/ out/ --shard 3/8 --dry-run
    """ + (f"\n        {TASK_EXAMPLES[task]}\n" if task in TASK_EXAMPLES else "")
    command.__name__ = task
    return command
