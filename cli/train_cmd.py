"""``restore train``: parse options into a Recipe, hand it to the core Trainer."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cli import completion
from cli.console import StepLines, err_console, fail, first_few, os_cause, say, warn
from cli.options import given_options, parse_duration
from restore_core.configs import ConfigError, changed_fields, config_to_dict, override_many
from restore_core.io.folders import not_a_folder
from restore_core.training.recipes import RECIPES, ADMSRecipe, Recipe, check_recipe, load_recipe, load_recorded_recipe, resume_command
from restore_core.training.run_log import TENSORBOARD_MISSING, tensorboard_available


class _StopFlag:
    """Set by the first SIGINT/SIGTERM: training stops after the step in flight.
    A second signal stops at once (the last periodic checkpoint stays valid)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        say("stopping after this step (signal again to stop at once)")


# What --calibrate takes; any other option given beside it is for training.
CALIBRATE_OPTIONS = ("--calibrate", "--clean", "--builtin-photographs", "--device", "--threads", "--quiet")


# --help panels (what to train, where, and the other modes stay under "Options").
DATA_PANEL = "Data"
RECIPE_PANEL = "Recipe overrides"
RUNTIME_PANEL = "Device and data loading"


def train(
    ctx: typer.Context,
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", autocompletion=completion.recipes, help=f"Recipe name ({', '.join(RECIPES)}) or a .toml/.json file. Required unless --calibrate, or --resume (the run's own recipe.json)."),
    out: Path = typer.Option(Path("runs/train"), "--out", "-o", help="Run folder: checkpoints, log.csv, recipe.json."),
    data: list[Path] = typer.Option([], "--data", help="Paired folder (input/+target/, rainy/+norain/, blur/+sharp/, ..., or GoPro train/<scene>/blur+sharp). Repeatable.", rich_help_panel=DATA_PANEL),
    clean: list[Path] = typer.Option([], "--clean", help="Folder of clean images degraded on the fly. Repeatable.", rich_help_panel=DATA_PANEL),
    builtin_photographs: Optional[bool] = typer.Option(None, "--builtin-photographs/--no-builtin-photographs", help="Add scikit-image's bundled photographs as clean images.", rich_help_panel=DATA_PANEL),
    val: list[Path] = typer.Option([], "--val", help="Paired validation folder. Repeatable.", rich_help_panel=DATA_PANEL),
    holdout_every: Optional[int] = typer.Option(None, "--holdout-every", help="Hold out every k-th pair of each --data folder for validation.", rich_help_panel=DATA_PANEL),
    exclude_like: list[Path] = typer.Option([], "--exclude-like", help="Keep images near-identical to this folder's out of training. Repeatable.", rich_help_panel=DATA_PANEL),
    steps: Optional[int] = typer.Option(None, "--steps", help="Override the recipe's number of steps; with --resume, lengthens a run whose learning rate is constant (milestones=[]).", rich_help_panel=RECIPE_PANEL),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Override the batch size.", rich_help_panel=RECIPE_PANEL),
    patch_size: Optional[int] = typer.Option(None, "--patch-size", help="Override the patch size.", rich_help_panel=RECIPE_PANEL),
    lr: Optional[float] = typer.Option(None, "--lr", help="Override the initial learning rate.", rich_help_panel=RECIPE_PANEL),
    perceptual_weights: Optional[Path] = typer.Option(None, "--perceptual-weights", help="VGG-11-BN weights (.safetensors, or torchvision's .pth read safely) for recipes with a perceptual loss.", rich_help_panel=RECIPE_PANEL),
    settings: list[str] = typer.Option([], "--set", help="Override any recipe field: --set model.order=2. Repeatable.", rich_help_panel=RECIPE_PANEL),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from this checkpoint's weights (fine-tune); same architecture, or an ADMS model's unified network. Recipe adms: an ADMS model whose stages 1-3 are kept and whose classifier alone is trained anew.", rich_help_panel=RECIPE_PANEL),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    device: str = typer.Option("auto", "--device", autocompletion=completion.devices, help="auto, cpu, cuda, cuda:1, ...", rich_help_panel=RUNTIME_PANEL),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: torch's choice).", rich_help_panel=RUNTIME_PANEL),
    workers: int = typer.Option(0, "--workers", min=0, help="Processes that draw training batches ahead of the loop (0: drawn in the loop). Same batches, faster steps where the loop waits for data (on an H200, 3-6 per run kept the card busy).", rich_help_panel=RUNTIME_PANEL),
    pool: str = typer.Option("auto", "--pool", help="Where the training images are held: memory, disk (a memory-mapped file in --out, gone when the run ends: datasets larger than RAM train, at the disk's speed where the page cache falls short) or auto (disk when they would take over half the available memory). Same batches either way.", rich_help_panel=RUNTIME_PANEL),
    precision: str = typer.Option("auto", "--precision", autocompletion=completion.precisions, help="auto (the recipe's mixed precision on CUDA, fp32 on the CPU), fp32, bf16 (autocast on any device: about 2x faster steps on CPUs with AMX/AVX512-BF16), fp16 (CUDA). Weights stay fp32; may change on --resume.", rich_help_panel=RUNTIME_PANEL),
    time_limit: Optional[str] = typer.Option(None, "--time-limit", help="Train at most this long (45m, 2h, 1h30m, 90s or H:MM:SS), then pause as Ctrl-C would, but inside the limit: the last step that fits, a checkpoint, exit 0; --resume continues (with a --time-limit of its own). For a scheduler's wall time or a lent GPU's budget.", rich_help_panel=RUNTIME_PANEL),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log the loss, learning rate, speed, validation metrics and the first restored validation images to OUT/tensorboard, for tensorboard --logdir (pip install 'restore[tensorboard]'); log.csv holds them either way. ADMS: its network stages, each in its folder."),
    calibrate: Optional[Path] = typer.Option(None, "--calibrate", help="Instead of training: measure this denoiser checkpoint's noise calibration (the second look of restore denoise --sigma auto) on the --clean folders (and --builtin-photographs), store it in the checkpoint and exit. Training runs do this at their end."),
    print_recipe: bool = typer.Option(False, "--print-recipe", help="Print the recipe these options make (every field, JSON) and exit; save it to edit and pass back as --recipe FILE.json."),
) -> None:
    """Train a model from a recipe; writes safetensors checkpoints with metadata.

    Example:

        restore train --recipe taylor-derain --data ../shared/data/Rain100H_dev50 \\
            --clean photos/ --val ../shared/data/SemiIRR_val20 --steps 5000 --out runs/derain

        restore train --calibrate runs/denoise/best.safetensors --clean ../shared/data/Train400
    """
    began = time.monotonic()  # --time-limit counts the whole command: reading the data too
    if calibrate is not None:
        if training_only := [flag for flag in given_options(ctx) if flag not in CALIBRATE_OPTIONS]:
            fail(f"{', '.join(training_only)}: for training; --calibrate measures {calibrate} on --clean images (and "
                 "--builtin-photographs) and trains nothing", code=2)
        _calibrate(calibrate, clean, bool(builtin_photographs), device, threads)
        return
    if recipe is None and resume:  # the run folder records its recipe: `restore train --out RUN --resume` is enough
        if not (out / "recipe.json").is_file():
            _refuse_resume_without_a_run(out)
        recipe = str(out / "recipe.json")
    if recipe is None:
        fail("give --recipe (what to train), --resume with the --out of a run to continue, or --calibrate CHECKPOINT", code=2)

    try:
        time_budget = parse_duration(time_limit) if time_limit is not None else None
    except ValueError as exc:
        fail(f"--time-limit: {exc}", code=2)
    options = RecipeOptions(settings=settings, data=data, clean=clean, val=val, exclude_like=exclude_like,
                            builtin_photographs=builtin_photographs, holdout_every=holdout_every, steps=steps,
                            batch_size=batch_size, patch_size=patch_size, lr=lr, init=init, perceptual_weights=perceptual_weights)
    try:
        chosen, recorded = _assemble_recipe(recipe, out, resume, options)
        if print_recipe:
            print(json.dumps(config_to_dict(chosen), indent=2))
            return
        if resume and recorded is None:  # said as such, not as the data the options lack
            _refuse_resume_without_a_run(out)
        _check_trainable(chosen, recorded, out, pool, workers)
        if tensorboard and not tensorboard_available():
            raise ConfigError(TENSORBOARD_MISSING)
    except ConfigError as exc:
        fail(str(exc), code=2)
    for caution in sets_of_another_task(chosen) + degradation_cautions(chosen):
        warn(caution)
    # torch (1.5 s) from here on: a misspelt recipe or option above is answered at once.
    from restore_core.io.images import ImageError
    from restore_core.training.sources import describe, prepare_data
    from restore_core.training.state import files_a_run_would_replace, holds_run
    from restore_core.training.trainer import Trainer, TrainingError, TrainingInterrupted

    if not resume and not holds_run(out) and (replaced := files_a_run_would_replace(out)):  # before the folder is touched
        fail(f"{out} holds {', '.join(replaced)}, which a new run there would replace; choose another --out (a folder of its own)", code=2)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"{out}: cannot make the run folder: {os_cause(exc)}", code=2)
    import torch

    from restore_core.device import cpu_has_bf16_units, pick_device, set_cpu_threads, training_autocast_dtype
    from restore_core.training.distributed import init_from_env, shutdown
    from restore_core.training.state import lock_run

    try:
        set_cpu_threads(threads or 0)
        torch_device = pick_device(device)
        training_autocast_dtype(precision, torch_device)  # refuse a bad --precision before any work
    except ValueError as exc:
        fail(str(exc), code=2)
    # Under torchrun: join the process group; each rank takes its own GPU.
    dist_info = init_from_env(torch_device.type)
    if dist_info.enabled and torch_device.type == "cuda":
        torch_device = torch.device(f"cuda:{dist_info.local_rank}")
        torch.cuda.set_device(torch_device)
    if not dist_info.is_main:
        quiet = True
    else:
        try:
            lock_run(out)  # an open descriptor: held until the process ends
        except TrainingError as exc:
            fail(str(exc), code=2)
    if not resume and holds_run(out):  # on every rank: none may go on alone
        fail(f"{out} already holds a run; use --resume to continue it or another --out", code=2)

    def log(message: str) -> None:  # rank 0 speaks for every rank
        if dist_info.is_main:
            say(message)

    if isinstance(chosen, ADMSRecipe):
        _train_adms(chosen, out, torch_device, resume, quiet, precision, workers, pool, tensorboard,
                    None if time_budget is None else began + time_budget)
        return
    try:
        trainer = Trainer(chosen, out, torch_device, log=say, dist_info=dist_info, precision=precision, data_workers=workers,
                          tensorboard=tensorboard)
    except (TrainingError, ValueError) as exc:  # ValueError: a model config its network refuses (order -1, ...)
        fail(str(exc), code=2)
    if resume and not trainer.state_path.exists():  # stopped before its first checkpoint (while reading data, say)
        log(f"{out}: no checkpoint yet; the recorded run starts from step 0")
    elif resume:
        try:
            trainer.resume()
        except TrainingError as exc:
            fail(str(exc), code=2)
        final = out / "model.safetensors"
        if trainer.step >= chosen.steps and final.exists() and final.stat().st_mtime >= trainer.state_path.stat().st_mtime:
            # Resubmitting a finished job (a scheduler's retry) costs nothing: no data read, no calibration again.
            log(f"{out}: the run is complete ({trainer.step} of {chosen.steps} steps); nothing to resume")
            shutdown(dist_info)
            if dist_info.is_main:
                print(final)
            return
    ranks = f" x {dist_info.world_size} ranks" if dist_info.enabled else ""
    log(f"recipe {chosen.name}: {chosen.architecture}, {chosen.steps} steps, batch {chosen.batch_size}{ranks}, patch {chosen.patch_size}, device {torch_device}, {trainer.precision_note()}")
    if trainer.perceptual_note:
        log(trainer.perceptual_note)
    if torch_device.type == "cpu" and precision == "auto" and cpu_has_bf16_units():
        log("hint: this CPU has bf16 units (AMX/AVX512-BF16): --precision bf16 trained the shipped denoiser about 2x faster "
            "(weights stay fp32; --precision fp32 hides this line)")
    with Progress(TextColumn("[bold]read"), BarColumn(), MofNCompleteColumn(), TextColumn("training images"), TimeElapsedColumn(),
                  console=err_console, disable=quiet or not err_console.is_terminal, transient=True) as bar:
        reading = bar.add_task("read", total=None)

        def images_read(done: int, total: int) -> None:
            bar.update(reading, completed=done, total=total)
            if done == 0 and not quiet and not err_console.is_terminal:  # a log file learns why nothing else is said for a while
                log(f"reading {total} training images (or pairs)")

        try:
            training_data = prepare_data(chosen, pool, out, dist_info, images_read)
        except ImageError as exc:  # a validation pair or an --exclude-like image: training images are left out instead
            fail(f"{exc} (a validation or --exclude-like image: each is needed, or the run's measure changes: mend or remove it)", code=2)
        except (TrainingError, ValueError, OSError) as exc:
            fail(str(exc), code=2)
    for undecodable in training_data.summary.get("undecodable", []) if dist_info.is_main else []:  # each, as a restore command says a bad input
        warn(f"{undecodable['path']}: {undecodable['cause']}; left out of training")
    log(f"data: {describe(training_data.summary)} (all of it: {out / 'data.json'})")
    if not training_data.validation:
        log("no validation set: the run is not measured while it trains and keeps no best.safetensors "
            "(--val FOLDER, or --holdout-every K to hold out pairs of --data)")

    # SIGTERM (a scheduler's stop, `kill`) and Ctrl-C finish the step in flight, checkpoint, exit 130.
    stop = _StopFlag()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet or not err_console.is_terminal,
    ) as bar:
        task = bar.add_task("train", total=chosen.steps, completed=trainer.step, info="")

        step_lines = StepLines() if not quiet and not err_console.is_terminal else None  # a log file: lines instead of a bar

        def progress(step: int, total: int, info: dict) -> None:
            bar.update(task, completed=step, info=f"loss {info['loss']:.4f} lr {info['lr']:.2g}")
            if step_lines is not None and (line := step_lines(step, total, info["loss"], info["lr"])):
                say(line)

        remaining = None if time_budget is None else time_budget - (time.monotonic() - began)  # reading the data took its share
        try:
            metrics = trainer.train(training_data, progress, stop_requested=lambda: stop.requested, time_limit=remaining)
        except TrainingError as exc:
            fail(str(exc), code=1)
        except TrainingInterrupted as exc:
            log(f"interrupted at step {exc.step}; checkpoint saved, continue with: {resume_command(out)}")
            raise typer.Exit(130)
        except KeyboardInterrupt:
            say(f"stopped at once; continue from the last checkpoint in {out} with: {resume_command(out)}")
            raise typer.Exit(130)
    shutdown(dist_info)
    if not dist_info.is_main:
        return
    print(out / ("model.safetensors" if trainer.step >= chosen.steps else "last.safetensors"))  # paused: the latest weights
    if metrics:
        log(final_validation_line(metrics, trainer.best, trainer.best_step, out / "best.safetensors"))


@dataclass(frozen=True)
class RecipeOptions:
    """The options of ``restore train`` that change the recipe it trains (None or empty:
    the recipe's own value)."""

    settings: list[str]  # --set KEY=VALUE, any field
    data: list[Path]
    clean: list[Path]
    val: list[Path]
    exclude_like: list[Path]
    builtin_photographs: Optional[bool]
    holdout_every: Optional[int]
    steps: Optional[int]
    batch_size: Optional[int]
    patch_size: Optional[int]
    lr: Optional[float]
    init: Optional[Path]
    perceptual_weights: Optional[Path]


def _assemble_recipe(name: str, out: Path, resume: bool, options: RecipeOptions) -> tuple[Recipe | ADMSRecipe, Recipe | ADMSRecipe | None]:
    """The recipe to train and, with ``resume``, the one ``out`` recorded: the named (or
    recorded) recipe with ``--set`` applied, then the dedicated options. Raises
    ConfigError for a setting the recipe lacks or options that do not go together."""
    named = load_recipe(name)
    # --resume continues the run as recorded: its recipe.json (data included) is the base.
    recorded = load_recorded_recipe(out, type(named)) if resume else None
    if recorded is not None and recorded.name != named.name:
        raise ConfigError(f"{out} was trained with recipe {recorded.name!r}, not {named.name!r}")
    chosen = recorded or named
    pairs = []
    for item in options.settings:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        pairs.append((key.strip(), value.strip()))
    chosen = override_many(chosen, pairs)
    changes = {k: v for k, v in {"batch_size": options.batch_size, "patch_size": options.patch_size, "lr": options.lr,
                                 "init": str(options.init) if options.init else None,
                                 "perceptual_weights": str(options.perceptual_weights) if options.perceptual_weights else None}.items()
               if v is not None}
    if isinstance(chosen, ADMSRecipe) and ("perceptual_weights" in changes or options.val):
        raise ConfigError("recipe adms trains from clean folders (--clean, --builtin-photographs) with synthetic degradations; "
                          "--val and --perceptual-weights do not apply")
    chosen = replace(chosen, **changes)
    if isinstance(chosen, ADMSRecipe) and (options.data or options.holdout_every) and chosen.init is None:
        raise ConfigError("recipe adms: --data pairs (and --holdout-every) feed only a classifier retrained on an existing "
                          "model: give --init ADMS_MODEL and --set classifier_transplant_fraction=F")
    if options.steps is not None:
        chosen = chosen.with_steps(options.steps)
    folders = {"paired": options.data, "clean": options.clean, "validation": options.val, "exclude_near_duplicates_of": options.exclude_like}
    data_changes: dict = {field: tuple(str(p) for p in paths) for field, paths in folders.items() if paths}
    if options.builtin_photographs is not None:
        data_changes["builtin_photographs"] = options.builtin_photographs
    if options.holdout_every is not None:
        data_changes["holdout_every"] = options.holdout_every
    chosen = replace(chosen, data=replace(chosen.data, **data_changes))
    check_recipe(chosen)  # what its code would refuse, before any image is read (and before --print-recipe shows it)
    return chosen, recorded


def _refuse_resume_without_a_run(out: Path) -> NoReturn:
    """``--resume`` where no run has recorded its recipe: a run starting there now (it
    writes recipe.json once its data is read) is said as running, else that there is
    no run to resume."""
    if (out / ".lock").exists():
        from restore_core.training.state import lock_run
        from restore_core.training.trainer import TrainingError

        try:
            lock_run(out)
        except TrainingError as exc:
            fail(str(exc), code=2)
    fail(f"{out}: no run to resume there (no recipe.json); start one without --resume", code=2)


def _check_trainable(chosen: Recipe | ADMSRecipe, recorded: Recipe | ADMSRecipe | None, out: Path, pool: str, workers: int) -> None:
    """Raise ConfigError where ``chosen`` cannot be trained as asked: a resumed run whose
    recorded recipe it would change (beyond lengthening a constant-rate run: said), a
    data folder that is not one, an unknown ``--pool``, more ``--workers`` than CPUs, no data."""
    from restore_core.training.pool import POOL_MODES

    if recorded is not None and (altered := changed_fields(recorded, chosen)):
        if isinstance(chosen, Recipe) and chosen.lengthens(recorded):
            say(f"--resume --steps {chosen.steps}: lengthening {out} from {recorded.steps} steps (the schedule of its steps is unchanged)")
        else:
            how = ("a cosine schedule spreads over all the steps" if isinstance(chosen, Recipe) and chosen.schedule == "cosine"
                   else "milestones are fractions of steps: --set 'milestones=[]' keeps the rate constant")
            why = (f"; --steps can lengthen a run only when its learning rate stays the same at every recorded step ({how})"
                   if all(item.startswith(("steps:", "stages:")) for item in altered) else "")
            raise ConfigError(f"--resume continues {out} as recorded in its recipe.json, and these options would change it: "
                              f"{'; '.join(altered)}{why}. To train on with other settings, start a new run with --init {out / 'last.safetensors'}")
    for folder in chosen.data.paired + chosen.data.clean + chosen.data.validation + chosen.data.exclude_near_duplicates_of:
        if not Path(folder).is_dir():
            raise ConfigError(not_a_folder(Path(folder)))
    if pool not in POOL_MODES:
        raise ConfigError(f"--pool {pool!r}: expected one of {', '.join(POOL_MODES)}")
    if workers > (os.cpu_count() or 1):
        raise ConfigError(f"--workers {workers}: more batch-drawing processes than this machine's {os.cpu_count()} CPUs")
    if not (chosen.data.paired or chosen.data.clean or chosen.data.builtin_photographs):
        raise ConfigError("no training data: give --data, --clean or --builtin-photographs")
    if isinstance(chosen, Recipe) and chosen.data.holdout_every == 1 and chosen.data.paired:
        raise ConfigError("--holdout-every 1 holds out every pair, so no pair of --data would be trained on; to validate "
                          f"on a folder without training on it, give it as --val (--val {chosen.data.paired[0]}), or hold out "
                          "every k-th pair with k >= 2")
    if isinstance(chosen, Recipe) and chosen.data.holdout_every and not chosen.data.paired:
        raise ConfigError(f"--holdout-every {chosen.data.holdout_every} holds out pairs of --data folders, and there is none: "
                          "clean images are degraded anew at every step; validate on pairs with --val FOLDER "
                          "(restore make-pairs makes them from clean images)")


def degradation_cautions(chosen: Recipe | ADMSRecipe) -> list[str]:
    """What looks mistaken in the recipe's synthetic degradation (a noise level on the
    0-1 scale: restore_core.degradations.table.config_cautions), each prefixed with the
    recipe's name; none for ADMS, whose stages set their own."""
    from restore_core.degradations.table import config_cautions, degradation_config

    if isinstance(chosen, ADMSRecipe):
        return []
    return [f"recipe {chosen.name}: {caution}" for caution in config_cautions(degradation_config(chosen.degradation, chosen.degradation_options))]


def sets_of_another_task(chosen: Recipe | ADMSRecipe) -> list[str]:
    """A caution for each --data or --val folder that ``restore make-pairs`` made with a
    degradation other than the one the recipe removes (its degradation.json says so):
    training on, or measuring by, pairs of another task is rarely what was meant."""
    from restore_core.datasets import recorded_degradation
    from restore_core.tasks import task_of_degradation

    if isinstance(chosen, ADMSRecipe):
        return []
    cautions = []
    for flag, folders in (("--data", chosen.data.paired), ("--val", chosen.data.validation)):
        for folder in folders:
            degradation = recorded_degradation(Path(folder))
            if task_of_degradation(degradation) not in (None, chosen.task):
                cautions.append(f"{flag} {folder}: its pairs were made with {'mixed degradations' if degradation == 'mixed' else degradation} "
                                f"(its degradation.json), and recipe {chosen.name} trains {chosen.task}")
    return cautions


def final_validation_line(metrics: dict, best: float | None, best_step: int | None, best_path: Path) -> str:
    """The run's last validation, and where its best one is kept, on one line."""
    scores = ", ".join(f"{key} {value:.3f}" for key, value in metrics.items() if key != "step")
    line = f"validation at the end (step {metrics.get('step')}): {scores}"
    if best is not None and best_step is not None and best_step != metrics.get("step"):
        line += f"; best at step {best_step} (mean PSNR-Y {best:.3f}): {best_path}"
    return line


def adms_summary(metrics: dict) -> list[str]:
    """An ADMS run's measurements in a few lines (all of them are in the checkpoint's
    metadata): its size over the unified model, the classifier's accuracy and, per
    degradation, PSNR on fresh synthetic patches of the unified, ADMS and fine-tuned models."""
    lines = []
    if "parameter_overhead_percent" in metrics:
        kept = sum(metrics.get("filters_kept", {}).values())
        lines.append(f"ADMS: {metrics['parameters_extra']:,} parameters over the unified model's {metrics['parameters_unified']:,} "
                     f"(+{metrics['parameter_overhead_percent']:g} %) for {kept} of {metrics['filters_total']:,} filters")
    accuracy = metrics.get("classifier_accuracy_synthetic", {})
    if accuracy:
        lines.append("classifier accuracy on fresh synthetic patches: " + ", ".join(f"{d} {a:.2f}" for d, a in accuracy.items()))
    clean_aware = metrics.get("clean_classifier_accuracy_synthetic", {})
    if clean_aware:
        lines.append("clean-aware classifier's accuracy on fresh synthetic patches: " + ", ".join(f"{d} {a:.2f}" for d, a in clean_aware.items()))
    psnr = {key.split("/", 1)[1]: value for key, value in metrics.items() if key.startswith("synthetic/")}
    if psnr:
        def three(scores: dict) -> str:  # a file carried over from an older run may lack some ("-")
            return " / ".join(f"{scores[key]:.2f}" if key in scores else "-" for key in ("unified_psnr", "adms_psnr", "finetuned_psnr"))

        lines.append("PSNR on fresh synthetic patches, unified / ADMS / fine-tuned: "
                     + ", ".join(f"{d} {three(scores)}" for d, scores in psnr.items()))
    return lines


def _train_adms(recipe: ADMSRecipe, out: Path, device, resume: bool, quiet: bool, precision: str = "auto", workers: int = 0,
                pool: str = "auto", tensorboard: bool = False, deadline: float | None = None) -> None:
    """The ADMS stages (unified, fine-tuned copies, FAIG, classifier), each resumable;
    ``deadline``: when --time-limit ends, on ``time.monotonic()``'s clock."""
    from restore_core.training.adms import StageStopped, Stops, train_adms
    from restore_core.training.trainer import TrainingError

    log = (lambda s: None) if quiet else say
    if recipe.init is not None:
        log(f"recipe {recipe.name}: classifier {recipe.classifier_steps} steps on {recipe.init}, device {device}")
    else:
        log(f"recipe {recipe.name}: {recipe.base_architecture} unified {recipe.unified_steps} steps, "
            f"{len(recipe.degradations)} x {recipe.finetune_steps} fine-tuning steps, classifier {recipe.classifier_steps} steps, device {device}")
    stop = _StopFlag()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        path, metrics = train_adms(recipe, out, device, log, Stops(lambda: stop.requested, deadline), precision=precision,
                                   data_workers=workers, pool=pool, tensorboard=tensorboard)
    except (TrainingError, ValueError, OSError) as exc:
        fail(str(exc), code=1)
    except StageStopped as exc:
        if exc.by_signal:
            log(f"interrupted in stage {exc.stage} after step {exc.step}; what it did is saved, continue with: {resume_command(out)}")
            raise typer.Exit(130)
        say(f"paused in stage {exc.stage} after step {exc.step}, inside --time-limit; continue with: {resume_command(out)}")
        return
    except KeyboardInterrupt:
        say(f"stopped at once; continue from what {out} holds with: {resume_command(out)}")
        raise typer.Exit(130)
    print(path)
    for line in adms_summary(metrics):
        log(line)


def _calibrate(path: Path, clean: list[Path], builtin_photographs: bool, device: str, threads: Optional[int]) -> None:
    """``restore train --calibrate CHECKPOINT``: measure and store a denoiser's noise calibration."""
    from restore_core.checkpoint import CheckpointError
    from restore_core.device import pick_device, set_cpu_threads
    from restore_core.io.folders import list_images
    from restore_core.io.images import ImageError
    from restore_core.training import data as D
    from restore_core.training.calibration import calibrate_checkpoint, evenly_spread

    try:
        set_cpu_threads(threads or 0)
    except ValueError as exc:
        fail(str(exc), code=2)
    sources: list = []  # image files, then photographs already in memory
    for folder in clean:
        if not folder.is_dir():
            fail(not_a_folder(folder), code=2)
        sources.extend(list_images(folder))
    if builtin_photographs:
        sources.extend(D.builtin_photographs())
    if not sources:
        given = f"no images in {first_few(clean, 3)}; " if clean else ""
        fail(f"--calibrate needs clean images: {given}give --clean FOLDER or --builtin-photographs", code=2)
    picks = []  # only the images calibrated on are read, not every file of the folders
    for source in evenly_spread(sources):
        try:
            picks.append(D.read_rgb(source) if isinstance(source, Path) else source)
        except ImageError as exc:  # as in training: named, left out
            warn(f"{exc}; left out of the calibration")
    if not picks:
        fail("--calibrate: none of the images picked could be decoded (see above)", code=2)
    try:
        table = calibrate_checkpoint(path, picks, device=pick_device(device))
    except (CheckpointError, ValueError) as exc:
        fail(f"{path}: {exc}" if not str(exc).startswith(str(path)) else str(exc), code=2)
    say(f"{path}: noise calibration on {len(picks)} clean images (residual level -> input level): "
        + ", ".join(f"{residual:.1f}->{level:.1f}" for residual, level in table))
