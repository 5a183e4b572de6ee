"""``restore benchmark``: models side by side on paired data, or throughput."""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional, Sequence

import typer
from rich.table import Table

from cli import completion
from cli.console import cell, err_console, fail, first_few, os_cause, print_json, say, table_console, warn
from cli.options import given_options
from cli.restore_cmd import parse_sigma
from restore_core.device import check_cpu_threads  # device.py imports torch only in its functions
from restore_core.io.folders import file_in_the_way, not_a_folder
from restore_core.presets import DEFAULT_MODEL_FOR_TASK, load_for_task  # presets.py imports torch only when loading
from restore_core.tasks import CLEAN, TASK_DEGRADATION

if TYPE_CHECKING:  # imported where the command runs, so that --help does not load torch
    import torch

    from restore_core.datasets import Dataset
    from restore_core.engine.routing import RoutedRestorer
    from restore_core.engine.runner import Restorer
    from restore_core.evaluation import Summary


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = text.strip().lower().split("x")
        width, height = int(w), int(h)
    except ValueError:
        raise typer.BadParameter(f"size {text!r} is not WIDTHxHEIGHT") from None
    if width < 1 or height < 1:
        raise typer.BadParameter(f"size {text!r}: width and height must be >= 1")
    return width, height


def _peak_memory_mib(device: torch.device) -> dict:
    """Peak resident memory of this process (and of the CUDA allocator when used)."""
    import resource

    import torch

    peak = {"cpu_rss": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        peak["cuda_allocated"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return peak


def _distinct_labels(specs: list[str], names: list[str]) -> list[str]:
    """Row labels for the models compared: each model's name, unless two share it (two
    runs' ``model.safetensors``), when those are labelled by the shortest tail of their
    paths that tells them apart (``run-a/model``, never ``..`` or the root, so a label is
    also a folder below ``--save-images``); a model given twice is numbered (``adms#2``).
    Rows, ``--csv`` lines and saved images are keyed by label: one must not hide another."""
    labels = list(names)
    for name in set(names):
        group = [i for i, n in enumerate(names) if n == name]
        if len(group) < 2:
            continue
        parts = [[p for p in Path(specs[i].removesuffix(".safetensors")).parts if p not in ("/", "..", ".")] for i in group]
        for depth in range(2, max(map(len, parts)) + 1):
            tails = ["/".join(p[-depth:]) for p in parts]
            if len(set(tails)) == len(tails):
                for i, tail in zip(group, tails):
                    labels[i] = tail
                break
    return [f"{label}#{labels[:i].count(label) + 1}" if labels.count(label) > 1 else label for i, label in enumerate(labels)]


# The run's settings a --markdown table names when they were given (their JSON keys).
MARKDOWN_SETTINGS = ("tile", "iterations", "model_sigma", "recompose_radius", "blend_temperature", "darken_only", "temporal")


def _markdown(rows: list[Summary], header: dict, groups: Sequence[Group] = ()) -> str:
    """``--markdown``: the table, under one line that says what was scored and how (for a
    model card: the dataset and its note, the task, the device and precision, the settings given);
    the scores per degradation (``groups``, :func:`_by_degradation`) below it."""
    pairs = f"{header['pairs']} pair{'' if header['pairs'] == 1 else 's'}" + (f"; {header['note']}" if header.get("note") else "")
    given = [f"{key.replace('_', ' ')} {header[key]}" for key in MARKDOWN_SETTINGS if header.get(key) not in (None, 0)]
    lines = [
        f"Dataset: {header['dataset']} at {header['root']} ({pairs}); task {header['task']}; {header['device']}, "
        f"{header['precision']}{''.join(f'; {item}' for item in given)}; {header['protocol']['mean']}; "
        f"crop border {header['protocol']['crop_border']}; SSIM: {header['protocol']['ssim']}.",
        "",
        "| model | PSNR Y | SSIM Y | PSNR RGB | SSIM RGB | s/image |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.label} | {r.psnr_y:.3f} | {r.ssim_y:.4f} | {r.psnr_rgb:.3f} | {r.ssim_rgb:.4f} | {_seconds(r)} |")
    if header.get("models"):  # what papers' tables put beside the scores
        lines += ["", "Size: " + "; ".join(f"{m['name']} {m['parameters']:,} parameters, {m['macs_256'] / 1e9:.2f} G MACs at 256x256"
                                           for m in header["models"]) + "."]
    if groups:
        lines += ["", "By degradation (the set's degradation.json; classified: how many the model's classifier named so):", "",
                  "| degradation | model | pairs | classified | PSNR Y | SSIM Y | PSNR RGB | SSIM RGB |", "|---|---|---|---|---|---|---|---|"]
        for group in groups:
            g = group.scores
            lines.append(f"| {group.degradation} | {group.model} | {g.count} | {_classified_cell(group)} | {g.psnr_y:.3f} | {g.ssim_y:.4f} | "
                         f"{g.psnr_rgb:.3f} | {g.ssim_rgb:.4f} |")
    return "\n".join(lines) + "\n"


def _most_probable(restorer: Restorer | RoutedRestorer) -> Callable[[], str | None]:
    """What ``restorer``'s classifier found most probable in the image it last restored
    (an all-in-one model's degradation probabilities), or None for a model without one."""
    def classified() -> str | None:
        found = restorer.last_degradation[-1] if restorer.last_degradation else None
        if not found or not set(found) <= {*TASK_DEGRADATION.values(), CLEAN}:  # a denoiser's noise level is no classification
            return None
        return max(found, key=found.get)
    return classified


class Group(NamedTuple):
    """One model's scores over the images of one degradation of the set (its labels: a
    mixed set's record, or the one degradation a set declares)."""

    degradation: str
    model: str
    scores: Summary
    classified_as: dict[str, int] | None  # what its classifier named these images, and how many each (None: no classifier)

    @property
    def classified(self) -> int | None:
        """How many of them its classifier named right (None: no classifier)."""
        return None if self.classified_as is None else self.classified_as.get(self.degradation, 0)


def _seconds(summary: Summary) -> str:
    """The s/image cell: "-" for a row where nothing ran (the input, another method's outputs)."""
    return "-" if summary.seconds_per_image is None else f"{summary.seconds_per_image:.2f}"


def _by_degradation(summaries: list[Summary], labels: dict[str, str]) -> list[Group]:
    """The set's labelled images scored per degradation: each degradation's rows
    together, the models in their order."""
    from restore_core.evaluation import summarise_by_label

    grouped = [(s.label, summarise_by_label(s, labels)) for s in summaries]
    order = list(TASK_DEGRADATION.values())  # rain, motion-blur, noise, haze; any other after them
    degradations = sorted(dict.fromkeys(name for _, groups in grouped for name in groups), key=lambda name: order.index(name) if name in order else len(order))
    rows = []
    for name in degradations:
        for label, groups in grouped:
            if name in groups:
                found = [p.classified for p in groups[name].per_image]
                rows.append(Group(name, label, groups[name], None if None in found else dict(Counter(found).most_common())))
    return rows


def _classified_cell(group: Group) -> str:
    """``2/3 (1 haze)``: named right, of how many, and what the others were taken for."""
    if group.classified_as is None:
        return "-"
    wrong = ", ".join(f"{count} {name}" for name, count in group.classified_as.items() if name != group.degradation)
    return f"{group.classified}/{group.scores.count}" + (f" ({wrong})" if wrong else "")


# Options of a scoring run, which --speed and --growth (timings on synthetic images) refuse.
SCORING_ONLY = ("--root", "--dataset", "--sigma", "--float-noise", "--limit", "--crop-border", "--save-images", "--csv", "--markdown",
                "--self-ensemble", "--ensemble-views", "--route", "--leave-clean", "--temporal", "--outputs")


# --help panels (the models and their settings stay under "Options").
DATA_PANEL = "Data and scoring"
OUTPUT_PANEL = "Output"
DEVICE_PANEL = "Device and memory"
TIMING_PANEL = "Timing instead of scoring"


def benchmark(
    ctx: typer.Context,
    folder: Optional[Path] = typer.Argument(None, metavar="ROOT", show_default=False, help="The dataset folder, as --root."),
    dataset: str = typer.Option("paired", "--dataset", "-d", autocompletion=completion.datasets, help="Dataset layout: paired, rain100h, rain100l, test100, rain1200, gopro, hide, realblur-j, realblur-r, sidd, sots-indoor, sots-outdoor, cbsd68, kodak24, mcmaster, bsd68, set12.", rich_help_panel=DATA_PANEL),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset folder. Default: the bundled samples (a small synthetic set).", rich_help_panel=DATA_PANEL),
    sigma: float = typer.Option(25.0, "--sigma", help="Noise level (0-255 scale) for the clean-only denoising sets.", rich_help_panel=DATA_PANEL),
    float_noise: bool = typer.Option(False, "--float-noise", help="Clean-only denoising sets: keep the noisy image in floating point, neither rounded to 8 bits nor clipped (most papers' protocol; the models see it clipped to [0, 1]).", rich_help_panel=DATA_PANEL),
    models: list[str] = typer.Option([], "--model", "-m", autocompletion=completion.models, help="Preset or .safetensors file; repeat to compare side by side."),
    outputs: list[Path] = typer.Option([], "--outputs", help="A folder of images another method restored from this set (matched by name, any image format), scored as a row of its own under the same protocol. Repeatable; without -m only these are scored."),
    task: Optional[str] = typer.Option(None, "--task", autocompletion=completion.tasks, help="derain, deblur, denoise, dehaze or auto: picks the default model, the self-ensemble's views and, without --root, the embedded synthetic set; an all-in-one model (adms) restores this degradation, or detects it per image with auto. Default: the --dataset's task (denoise for cbsd68, ...), else the degradation a restore make-pairs set records, else its folders' names (noisy/, hazy/, blur/, rainy/), else the task the models share (auto for adms), else derain."),
    limit: int = typer.Option(0, "--limit", help="Only the first N pairs (0 = all).", rich_help_panel=DATA_PANEL),
    crop_border: int = typer.Option(0, "--crop-border", help="Pixels cropped from every border before scoring.", rich_help_panel=DATA_PANEL),
    save_images: Optional[Path] = typer.Option(None, "--save-images", help="Write restored images to DIR/<model>/.", rich_help_panel=OUTPUT_PANEL),
    device: str = typer.Option("auto", "--device", autocompletion=completion.devices, help="auto, cpu, cuda, ...", rich_help_panel=DEVICE_PANEL),
    precision: str = typer.Option("auto", "--precision", autocompletion=completion.precisions, help="auto, fp32, fp16, bf16.", rich_help_panel=DEVICE_PANEL),
    tile: int = typer.Option(0, "--tile", help="Tile size (0 = whole images).", rich_help_panel=DEVICE_PANEL),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout.", rich_help_panel=OUTPUT_PANEL),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write per-image rows to this CSV file.", rich_help_panel=OUTPUT_PANEL),
    markdown_path: Optional[Path] = typer.Option(None, "--markdown", help="Write a Markdown table (for model cards).", rich_help_panel=OUTPUT_PANEL),
    speed: bool = typer.Option(False, "--speed", help="Measure throughput instead: end-to-end CLI vs bare forward pass.", rich_help_panel=TIMING_PANEL),
    sizes: str = typer.Option("480x320,1280x720", "--sizes", help="With --speed: image sizes, WIDTHxHEIGHT,...", rich_help_panel=TIMING_PANEL),
    count: int = typer.Option(8, "--count", help="With --speed: images per size.", rich_help_panel=TIMING_PANEL),
    iterations: Optional[int] = typer.Option(None, "--iterations", help="Golf Optimizer models: taps of G (as restore deblur --iterations)."),
    model_sigma: Optional[str] = typer.Option(None, "--model-sigma", callback=parse_sigma, autocompletion=completion.noise_levels, help="Denoisers with a noise-level input: the level they are told, auto, quick or blind (as restore denoise --sigma); default: auto."),
    blend_temperature: Optional[float] = typer.Option(None, "--blend-temperature", help="ADMS models: how sharply the classifier's probabilities weight the filters (as restore auto --no-route --blend-temperature)."),
    recompose_radius: Optional[int] = typer.Option(None, "--recompose-radius", help="Dehazers: scattering-model recomposition radius (as restore dehaze --recompose-radius; 0 = off)."),
    darken_only: Optional[bool] = typer.Option(None, "--darken-only/--no-darken-only", help="Derainers: output never brighter than the input, or not (as restore derain --darken-only)."),
    growth: bool = typer.Option(False, "--growth", help="Measure cost growth: wall time vs number of images (10/100/1000) and vs pixels per image, plus start-up.", rich_help_panel=TIMING_PANEL),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the models (with --speed: compare against eager).", rich_help_panel=DEVICE_PANEL),
    threads: int = typer.Option(0, "--threads", help="CPU threads for torch (0 = torch's default).", rich_help_panel=DEVICE_PANEL),
    self_ensemble: bool = typer.Option(False, "--self-ensemble", help="Also score each model averaged over the task's flipped/rotated views (rows <model>-xN, N views)."),
    ensemble_views: Optional[int] = typer.Option(None, "--ensemble-views", help="Self-ensemble over this many of the task's views (as restore denoise --ensemble-views); implies --self-ensemble."),
    route: bool = typer.Option(False, "--route", help="All-in-one models (adms): also score routing each image to the single-task model of the degradation their classifier finds, as restore auto does (rows <model>-routed); without --model, adms."),
    leave_clean: bool = typer.Option(False, "--leave-clean", help="All-in-one models with a clean-aware classifier: also score routing by it, as restore auto --leave-clean does (rows <model>-leave-clean; an image found clean is scored as it is); without --model, adms."),
    temporal: int = typer.Option(0, "--temporal", help="The pairs are frames of sequences (each folder of names one, in name order: GoPro's scenes): also score each model's frames smoothed with this many neighbours on each side, as restore --temporal does (rows <model>-tR), from the same pass of the model.", rich_help_panel=DATA_PANEL),
    temporal_strength: float = typer.Option(4.0, "--temporal-strength", help="With --temporal: as restore --temporal-strength.", rich_help_panel=DATA_PANEL),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No warnings on stderr (errors still), and no tables where --json, --csv or --markdown carry the results.", rich_help_panel=OUTPUT_PANEL),
) -> None:
    """Score models on a paired dataset (with the input as a baseline row), or time them.

    Examples:

        restore benchmark ../shared/data/Rain100H_dev50 --model taylor-derain --json

        restore benchmark --dataset gopro --root /datasets/GoPro --model deblur.safetensors --limit 50

        restore benchmark --dataset cbsd68 --root /datasets/CBSD68 --sigma 25 --float-noise --model infoflow-denoise

        restore benchmark --speed --sizes 480x320,1280x720 --count 10

        restore benchmark --growth --model unet-s.safetensors

        restore benchmark --dataset gopro --root /datasets/GoPro --task deblur --temporal 2

        restore benchmark --root ../shared/data/Rain100H_dev50 -m taylor-derain --outputs prenet-results/
    """
    from restore_core.datasets import benchmark_task
    from restore_core.engine.temporal import TemporalConfig
    from restore_core.evaluation import Protocol, evaluate_outputs, evaluate_samples, evaluate_sequences
    from restore_core.io.images import ImageError

    # Options and the dataset first, torch (1.5 s) and the models after: a mistake is answered at once.
    for value, rule, ok in ((count, "--count must be >= 1", count >= 1), (limit, "--limit must be >= 0 (0 = all)", limit >= 0),
                            (crop_border, "--crop-border must be >= 0", crop_border >= 0),
                            (tile, "--tile must be >= 0 (0 = whole images)", tile >= 0),
                            (sigma, "--sigma must be between 0 and 255", 0 <= sigma <= 255)):
        if not ok:
            fail(f"{rule}, got {value}", code=2)
    given = given_options(ctx)
    if folder is not None:  # restore benchmark ../shared/data/Rain100H_dev50, as restore derain IN takes its folder
        if root is not None:
            fail(f"two dataset folders: {folder} and --root {root}; give one", code=2)
        root = folder
        given.append("--root")
    timing = "--speed" if speed else "--growth" if growth else None
    if speed and growth:
        fail("--speed and --growth are two measurements: run one, then the other", code=2)
    if timing and (scoring := [flag for flag in given if flag in SCORING_ONLY]):
        fail(f"{', '.join(scoring)}: for scoring on a dataset; {timing} times the models on synthetic images (--sizes, --count) "
             "and scores nothing: run the two apart", code=2)
    if "--temporal-strength" in given and not temporal:
        fail("--temporal-strength applies with --temporal R (the neighbouring frames to smooth with, e.g. 2)", code=2)
    if not speed and (timing_only := [flag for flag in given if flag in ("--sizes", "--count")]):
        fail(f"{' and '.join(timing_only)} appl{'ies' if len(timing_only) == 1 else 'y'} with --speed", code=2)
    # --quiet hides the tables only where the results go elsewhere: alone, it would leave nothing to read.
    quiet_tables = quiet and (as_json or csv_path is not None or markdown_path is not None)
    # Outputs written after the scoring: a path that cannot be one is refused before it.
    for flag, path, wanted in (("--csv", csv_path, "file"), ("--markdown", markdown_path, "file"), ("--save-images", save_images, "folder")):
        if path is not None and path.exists() and path.is_dir() != (wanted == "folder"):
            fail(f"{flag} {path}: is a {'folder' if path.is_dir() else 'file'}; name a {wanted}", code=2)
        blocking = file_in_the_way(path.parent) if path is not None else None
        if blocking is not None:
            fail(f"{flag} {path}: {blocking} is a file, so no folder can be made there", code=2)
    for folder in outputs:
        if not folder.is_dir():
            fail(f"--outputs {not_a_folder(folder)}", code=2)
    try:
        sequences = TemporalConfig(radius=temporal, strength=temporal_strength) if temporal else None
    except ValueError as exc:
        fail(str(exc), code=2)
    speed_sizes = [_parse_size(size) for size in sizes.split(",")]  # checked before any model loads
    if task is not None and task not in DEFAULT_MODEL_FOR_TASK:
        fail(f"--task {task!r}: expected one of {', '.join(DEFAULT_MODEL_FOR_TASK)}", code=2)
    inferred = benchmark_task(dataset, root, models) if task is None else None
    guessed = task is None and inferred is None  # nothing says which: derain's, said below
    task = task or inferred or "derain"
    try:
        check_cpu_threads(threads)
    except ValueError as exc:
        fail(str(exc), code=2)
    data = None if timing else _read_dataset(task, dataset, root, sigma, float_noise, quiet)

    import torch

    from restore_core.checkpoint import CheckpointError
    from restore_core.device import pick_device, set_cpu_threads
    from restore_core.engine.ensemble import views_for_task
    from restore_core.engine.routing import RoutedRestorer
    from restore_core.engine.runner import Restorer
    from restore_core.engine.tiling import tile_cautions
    from restore_core.models.complexity import count_macs, macs_input_side

    try:
        set_cpu_threads(threads)
        torch_device = pick_device(device)
        # --route scores an all-in-one model's routing: without -m, the shipped one (adms), whatever the task.
        # --outputs alone scores those folders, no model.
        routes = route or leave_clean
        names = models or ([] if outputs and not routes else [DEFAULT_MODEL_FOR_TASK["auto" if routes else task]])
        descriptors = [load_for_task(name, task, str(torch_device)) for name in names]
        for descriptor, label in zip(descriptors, _distinct_labels(names, [d.name for d in descriptors])):
            descriptor.name = label
        for setting, value in (("iterations", iterations), ("sigma", model_sigma), ("recompose_radius", recompose_radius), ("darken_only", darken_only),
                               ("blend_temperature", blend_temperature)):
            if value is not None:
                flag = "--model-sigma" if setting == "sigma" else None  # benchmark's --sigma is the noise it adds
                for caution in {descriptor.apply_setting(setting, value, flag) for descriptor in descriptors} - {None}:
                    if not quiet:
                        warn(caution)
        if guessed and not (models or routes or timing or quiet or outputs) and root is not None:
            say(f"note: nothing says which degradation {root} holds, so it is scored as deraining with {names[0]} "
                "(--task derain, deblur, denoise, dehaze or auto, or -m MODEL, to choose)")
        if not quiet:  # as the restore commands warn: numbers scored so are easily misread
            for caution in [*tile_cautions(tile), *([] if timing else [d.task_caution(task) for d in descriptors])]:
                if caution:
                    warn(caution)
        views = views_for_task(task, ensemble_views) if self_ensemble or ensemble_views is not None else ()
        # With --speed, --compile adds compiled rows beside the eager ones; otherwise it compiles the models.
        restorers = [Restorer(d, torch_device, precision, tile, compile=compile_model and not speed) for d in descriptors]
        ways = [(False, "routed")] * route + [(True, "leave-clean")] * leave_clean  # which classifier routing asks: row suffix
        routed = [(RoutedRestorer(d, torch_device, precision, tile, compile=compile_model and not speed, leave_clean=clean), f"{d.name}-{suffix}")
                  for clean, suffix in ways for d in descriptors]
    except (CheckpointError, ValueError) as exc:
        fail(str(exc), code=2)

    if growth:
        _report_growth(restorers, names, task, precision, as_json, quiet_tables)
        return
    if speed:
        variants = [(r, r.descriptor.name) for r in restorers]
        if compile_model:
            variants += [(Restorer(r.descriptor, torch_device, precision, tile, compile=True), f"{r.descriptor.name}+compile") for r in restorers]
        _report_speed(variants, speed_sizes, count, precision, torch_device, as_json, quiet, quiet_tables)
        return

    root = data.root
    samples = data.samples[:limit] if limit else data.samples
    protocol = Protocol(crop_border=crop_border)
    start = time.perf_counter()
    try:  # a pair that cannot be read stops the benchmark: means over fewer pairs would not compare
        summaries = [evaluate_samples(samples, None, "input", protocol)]
        for restorer in restorers:
            if sequences is not None:
                summaries += evaluate_sequences(samples, restorer.restore_array, restorer.descriptor.name, sequences, protocol, save_images)
            else:
                summaries.append(evaluate_samples(samples, restorer.restore_array, restorer.descriptor.name, protocol, save_images,
                                                  _most_probable(restorer)))
            if views:
                ensembled = Restorer(restorer.descriptor, torch_device, precision, tile, ensemble=views)
                summaries.append(evaluate_samples(samples, ensembled.restore_array, f"{restorer.descriptor.name}-x{len(views)}", protocol, save_images))
        for router, label in routed:
            summaries.append(evaluate_samples(samples, router.restore_array, label, protocol, save_images, _most_probable(router)))
        taken = {summary.label for summary in summaries}
        for folder in outputs:  # labelled by the folder's name, or its path where a row has that name
            summaries.append(evaluate_outputs(samples, folder, folder.name if folder.name not in taken else str(folder), protocol))
            taken.add(summaries[-1].label)
    except ImageError as exc:
        fail(f"{exc} (every pair is scored, or the mean would not be the set's: mend or remove it)", code=2)
    except ValueError as exc:  # e.g. images smaller than SSIM's window once --crop-border is taken off (said in the message)
        fail(str(exc), code=2)
    if not quiet:  # what the restore commands would have said on the way (fp16 on a CPU, an out-of-memory retry, ...)
        for restorer in [*restorers, *(router for router, _ in routed)]:
            for notice in dict.fromkeys(restorer.notices):
                warn(f"{restorer.descriptor.name}: {notice}")
    header = {
        "dataset": data.name,
        "task": task,
        "root": str(root),
        "pairs": len(samples),
        "unpaired": [_relative(path, root) for path in data.unpaired],
        "note": data.note,
        "caution": data.caution or None,
        "protocol": {**protocol.__dict__, "target_crop": "per dataset (see note)" if data.note else None},
        "device": str(torch_device) + (f" ({torch.cuda.get_device_name(torch_device)})" if torch_device.type == "cuda" else ""),
        "precision": str(restorers[0].dtype).replace("torch.", "") if restorers else None,
        "tile": tile,
        "iterations": iterations,
        "model_sigma": model_sigma,
        "recompose_radius": recompose_radius,
        "blend_temperature": blend_temperature,
        "darken_only": darken_only,
        "self_ensemble": list(views) if views else None,
        "temporal": {"radius": sequences.radius, "strength": sequences.strength, "patch": sequences.patch} if sequences else None,
        "models": [{"name": d.name, "architecture": d.architecture, "sha256": d.sha256, "parameters": d.parameters,
                    "macs_256": count_macs(d.model.eval(), macs_input_side(d.size_multiple))} for d in descriptors],
        "outputs": [str(folder) for folder in outputs],
        "wall_seconds": round(time.perf_counter() - start, 2),
        "images_per_second": {s.label: (1.0 / s.seconds_per_image if s.seconds_per_image else None) for s in summaries[1:]},
        "peak_memory_mib": _peak_memory_mib(torch_device),
    }
    _report_scores(summaries, data.labels, header, f"{root} ({len(samples)} pair{'' if len(samples) == 1 else 's'})",
                   as_json, quiet_tables, csv_path, markdown_path)


def _report_scores(summaries: list[Summary], labels: dict[str, str], header: dict, title: str, as_json: bool, quiet_tables: bool,
                   csv_path: Optional[Path], markdown_path: Optional[Path]) -> None:
    """A scoring run's results: the table (and, where the set labels its images with
    several degradations or a model classifies them, the table per degradation), the
    JSON report, then the ``--csv`` and ``--markdown`` files."""
    from restore_core.io.files import atomic_write_bytes

    table = Table("model", "PSNR Y", "SSIM Y", "PSNR RGB", "SSIM RGB", "s/image", title=cell(title))
    for s in summaries:
        table.add_row(cell(s.label), f"{s.psnr_y:.3f}", f"{s.ssim_y:.4f}", f"{s.psnr_rgb:.3f}", f"{s.ssim_rgb:.4f}", _seconds(s))
    groups = _by_degradation(summaries, labels) if labels else []
    if len(set(labels.values())) == 1 and all(group.classified is None for group in groups):
        groups = []  # one degradation and no classifier: the table above says it all
    if not quiet_tables:
        _print_table(table, as_json)
        if groups:
            by_degradation = Table("degradation", "model", "pairs", "classified", "PSNR Y", "SSIM Y", "PSNR RGB", "SSIM RGB",
                                   title="by degradation (classified: how many the model's classifier named so)")
            for group in groups:
                g = group.scores
                by_degradation.add_row(group.degradation, cell(group.model), str(g.count), _classified_cell(group),
                                       f"{g.psnr_y:.3f}", f"{g.ssim_y:.4f}", f"{g.psnr_rgb:.3f}", f"{g.ssim_rgb:.4f}")
            _print_table(by_degradation, as_json)
    if as_json:
        results = [s.as_dict() for s in summaries]
        for result in results if groups else []:
            result["by_degradation"] = {
                group.degradation: {**{key: value for key, value in group.scores.as_dict().items() if key not in ("label", "seconds_per_image")},
                                    **({"classified": group.classified, "classified_as": group.classified_as} if group.classified_as is not None else {})}
                for group in groups if group.model == result["label"]}
        print_json({**header, "results": results}, indent=2)
    # The files last, each written whole (parent folders made): a bad path costs a line, not the results above.
    reports = [(csv_path, _csv_text(summaries, labels))] if csv_path else []
    if markdown_path:
        reports.append((markdown_path, _markdown(summaries, header, groups)))
    for path, text in reports:
        try:
            atomic_write_bytes(path, text.encode())
        except OSError as exc:
            fail(f"{path}: cannot write: {os_cause(exc)}", code=1)


def _report_growth(restorers: list, names: list[str], task: str, precision: str, as_json: bool, quiet_tables: bool = False) -> None:
    """``--growth``: each model's wall time against the number of images and against
    pixels per image (:func:`measure_growth`), and a fresh process's start-up."""
    from restore_core.engine.runner import RunOptions
    from restore_core.engine.speed import measure_growth, measure_startup

    rows = []
    for restorer, name in zip(restorers, names):
        startup = measure_startup(str(restorer.descriptor.path or name), task)
        for point in measure_growth(restorer, options=RunOptions(precision=precision)):
            rows.append({"model": restorer.descriptor.name, "series": point.label, "images": point.images, "width": point.width,
                         "height": point.height, "seconds": point.seconds, "seconds_per_megapixel": point.seconds_per_megapixel,
                         "startup_seconds": startup})
    table = Table("model", "series", "images", "size", "seconds", "s per MP")
    for r in rows:
        table.add_row(cell(r["model"]), r["series"], str(r["images"]), f"{r['width']}x{r['height']}", f"{r['seconds']:.2f}", f"{r['seconds_per_megapixel']:.3f}")
    if not quiet_tables:
        _print_table(table, as_json)
        for restorer in restorers:
            startup = next(r["startup_seconds"] for r in rows if r["model"] == restorer.descriptor.name)
            say(f"start-up of a fresh process ({restorer.descriptor.name}: imports, model load, one 64x64 image): {startup:.2f} s")
    if as_json:
        print_json(rows, indent=2)


def _report_speed(variants: list, sizes: list[tuple[int, int]], count: int, precision: str, device: torch.device, as_json: bool,
                  quiet: bool = False, quiet_tables: bool = False) -> None:
    """``--speed``: for each (restorer, label) of ``variants`` and each size, images per
    second of the bare forward pass and of the whole CLI pipeline, measured in turn in
    this process (:func:`measure_speed`), and their ratio."""
    from restore_core.engine.runner import RunOptions
    from restore_core.engine.speed import measure_speed

    rows = []
    for restorer, label in variants:
        for width, height in sizes:
            result = measure_speed(restorer, width, height, count, RunOptions(precision=precision))
            rows.append({"model": label, "device": str(device), "width": width, "height": height,
                         "images": count, "bare_images_per_s": result.bare_images_per_s,
                         "end_to_end_images_per_s": result.end_to_end_images_per_s, "ratio": result.ratio,
                         "ms_per_megapixel": result.ms_per_megapixel})
        if not quiet:
            for notice in restorer.notices:
                warn(f"{label}: {notice}")
    table = Table("model", "size", "bare img/s", "CLI img/s", "CLI / bare", "ms per MP")
    for r in rows:
        table.add_row(cell(r["model"]), f"{r['width']}x{r['height']}", f"{r['bare_images_per_s']:.3f}",
                      f"{r['end_to_end_images_per_s']:.3f}", f"{r['ratio']:.3f}", f"{r['ms_per_megapixel']:.0f}")
    if not quiet_tables:
        _print_table(table, as_json)
    if as_json:
        print_json(rows, indent=2)


def _print_table(table: Table, as_json: bool) -> None:
    """A result table on stdout, where it can be piped or saved as the command's output;
    on stderr when stdout carries the JSON report."""
    (err_console if as_json else table_console()).print(table)


def _csv_text(summaries: list[Summary], labels: dict[str, str]) -> str:
    """``--csv``: one row per model and image; ``seconds`` empty where nothing ran (the
    input, another method's outputs), ``degradation`` the image's where the set says
    (``labels``), ``classified`` what an all-in-one model's classifier named it."""
    rows = io.StringIO(newline="")
    writer = csv.writer(rows)
    writer.writerow(["model", "image", "psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb", "seconds", "degradation", "classified"])
    for s in summaries:
        for p in s.per_image:
            seconds = "" if s.seconds_per_image is None else f"{p.seconds:.3f}"
            writer.writerow([s.label, p.name, f"{p.psnr_y:.4f}", f"{p.ssim_y:.5f}", f"{p.psnr_rgb:.4f}", f"{p.ssim_rgb:.5f}", seconds,
                             labels.get(p.name, ""), p.classified or ""])
    return rows.getvalue()


def _read_dataset(task: str, dataset: str, root: Optional[Path], sigma: float, float_noise: bool, quiet: bool) -> Dataset:
    """The pairs to score (the task's embedded samples without ``--root``); a folder that
    holds none is a usage error. Warns of a set read under another's name and of images
    without a partner, before any number."""
    from restore_core.datasets import DatasetError, embedded_dataset, load_dataset

    try:
        if float_noise and root is None:
            raise DatasetError("--float-noise needs --dataset and --root (a clean-only denoising set)")
        data = embedded_dataset(task) if root is None else load_dataset(dataset, root, sigma, float_noise)
    except DatasetError as exc:
        fail(str(exc), code=2)
    if data.caution and not quiet:
        warn(f"{data.root}: {data.caution}")
    if data.unpaired and not quiet:  # scored over fewer images than the folders hold: say which, before the numbers
        warn(f"{data.root}: {len(data.unpaired)} image(s) pair with no other and are left out: "
             f"{first_few((_relative(path, data.root) for path in data.unpaired), 5)}")
    return data


def _relative(path: Path, root: Path) -> str:
    """``path`` as shown to the user: under ``root`` when it is, else as it is."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
