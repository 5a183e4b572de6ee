"""Training an ADMS all-in-one model (SPEC §2.3): the stages of :class:`ADMSRecipe`.

Every stage writes into its own sub-folder or file of the run (``unified/``,
``finetune-<d>/``, ``filters.json``, ``masked-<d>.safetensors``,
``classifier.safetensors``), and a stage whose result exists
is not run again: an interrupted run is continued by running it again with
``--resume``. The assembled model is ``model.safetensors`` (architecture ``adms``).

Every stage stops between two of its steps (:class:`Stops`): on a signal (Ctrl-C, a
scheduler's SIGTERM), or when the next step would end past ``restore train
--time-limit``. What it did is kept (the network stages' checkpoints; FAIG's filters of
each degradation done, in ``filters.partial.json``; the state of the filters' and the
classifier's training, in ``masked-<d>.state.safetensors`` and
``classifier.state.safetensors``), and ``--resume`` goes on from there as an
uninterrupted run would: every step draws its patches from its own seed.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from restore_core import attribution
from restore_core.checkpoint import atomic_save_file, load_checkpoint, save_checkpoint
from restore_core.configs import config_from_dict, config_to_dict
from restore_core.device import training_autocast_dtype
from restore_core.io.folders import list_images
from restore_core.models import ADMSConfig, build_model, count_parameters
from restore_core.degradations.noise import jpeg_noise
from restore_core.models.adms import CLEAN, ClassifierConfig, DegradationClassifier
from restore_core.training import data as D
from restore_core.training.errors import TrainingError
from restore_core.training.recipes import ADMSRecipe, Recipe, classifier_config
from restore_core.training.sources import TrainingData, describe, make_degradation, prepare_data
from restore_core.training.state import load_state, save_state
from restore_core.training.trainer import Pace, Trainer, TrainingInterrupted

Log = Callable[[str], None]
StopFlag = Callable[[], bool]


class StageStopped(Exception):
    """The run stopped between two steps of ``stage``, what the stage did kept: on a
    signal (``by_signal``) or inside its time limit; ``--resume`` goes on from there."""

    def __init__(self, stage: str, step: int, by_signal: bool) -> None:
        self.stage, self.step, self.by_signal = stage, step, by_signal
        super().__init__(f"{'interrupted' if by_signal else 'paused'} in stage {stage} after step {step}")


class Stops:
    """When an ADMS run stops: ``requested`` (a signal handler sets it) is polled between
    steps; ``deadline`` (on ``time.monotonic()``'s clock; ``restore train --time-limit``)
    is met by pausing before a step that would end past it, at the pace of the steps so
    far. The first stage a run enters takes at least one step however late it is (as
    the Trainer does), so that every run moves on."""

    def __init__(self, requested: StopFlag = lambda: False, deadline: float | None = None) -> None:
        self.requested, self.deadline = requested, deadline
        self.finished_a_stage = False  # by this run: a stage begun later may find no time left

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no time limit)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def before_stage(self, stage: str, step: int = 0) -> None:
        """Stop before ``stage`` begins (or goes on from ``step``) when a signal came, or
        when no time is left after a stage this run finished."""
        if self.requested():
            raise StageStopped(stage, step, by_signal=True)
        if self.finished_a_stage and (left := self.remaining()) is not None and left <= 0:
            raise StageStopped(stage, step, by_signal=False)


def run_resumable(stage: str, steps: int, take_step: Callable[[int], None], module: torch.nn.Module,
                  optimizer: torch.optim.Optimizer, state_path: Path | None, stops: Stops | None, device: torch.device) -> None:
    """``take_step(step)`` for the steps of a stage that trains outside the :class:`Trainer`
    (FAIG's filters trained again, the classifier), stoppable between any two as the
    Trainer's are: the state an earlier stop left at ``state_path`` (the module's
    weights, the optimiser's moments and learning rate, the step) is loaded first; a
    signal, or a next step that would end past the time limit, saves it there and raises
    :class:`StageStopped`. The caller removes ``state_path`` once the stage's result is
    saved. Without ``stops``, every step is taken."""
    stops = stops or Stops()
    first = 0
    if state_path is not None and state_path.exists():
        first, _ = load_state(state_path, {"model": module}, {"optim": optimizer}, None, device)
    pace = Pace(stops.remaining(), first)
    for step in range(first, steps):
        by_signal = stops.requested()
        if by_signal or pace.no_room_for_a_step(step, validates=False):
            if state_path is not None:
                save_state(state_path, {"model": module}, {"optim": optimizer}, None, step, {"stage": stage})
            raise StageStopped(stage, step, by_signal)
        take_step(step)


def degradation_samplers(recipe: ADMSRecipe, pool: D.PatchSampler) -> dict[str, D.PatchSampler]:
    """One patch sampler per degradation over the same clean images, drawn as stage 1
    draws them (``data.colour_fraction``, ``data.channel_shuffle``, ``data.quarter_turns``),
    for the fine-tuned copies, FAIG's patches and the synthetic measurements."""
    return {d: D.PatchSampler([], pool.clean, recipe.patch_size, make_degradation(d, {}), colour_fraction=recipe.data.colour_fraction,
                              channel_shuffle=recipe.data.channel_shuffle, quarter_turns=recipe.data.quarter_turns)
            for d in recipe.degradations}


def classifier_samplers(recipe: ADMSRecipe, pool: D.PatchSampler) -> dict[str, D.PatchSampler | OneOf]:
    """The classifier's patches: each degradation over the clean images, colour ones at
    ``classifier_colour_fraction`` (channels shuffled with ``classifier_channel_shuffle``),
    and ``classifier_transplant_fraction`` of the ``paired_degradation`` patches degraded
    by a real pair's residual (:func:`data.transplant_residual`) from the ``--data`` pairs;
    ``classifier_photo_fraction`` of that degradation's patches cropped from the
    ``classifier_photos`` folders as they are. ``classifier_degradation_options`` change
    a degradation's synthetic draws for these patches alone. With the classifier's ``clean_class``,
    one more entry, :data:`CLEAN`: the clean patches as they are (:func:`as_stored`)."""
    if recipe.classifier_transplant_fraction > 0 and not pool.paired:
        raise TrainingError(f"classifier_transplant_fraction needs pairs of real {recipe.paired_degradation} (--data FOLDER)")
    if pool.paired and recipe.classifier_transplant_fraction == 0:
        raise TrainingError("recipe adms uses --data pairs only as real residuals for its classifier: "
                            "set classifier_transplant_fraction (e.g. --set classifier_transplant_fraction=0.5)")
    if bool(recipe.classifier_photos) != (recipe.classifier_photo_fraction > 0):
        raise TrainingError("classifier_photos (folders of real photographs) and classifier_photo_fraction (the share of "
                            f"{recipe.paired_degradation} patches cut from them) go together: set both")
    samplers: dict[str, D.PatchSampler | OneOf] = {}
    for d in recipe.degradations:
        transplant = recipe.classifier_transplant_fraction if d == recipe.paired_degradation else 0.0
        # paired_fraction 0: the pairs are residual sources only; every patch is a clean one, degraded.
        degrade = make_degradation(d, recipe.classifier_degradation_options.get(d, {}))
        samplers[d] = D.PatchSampler(pool.paired if transplant else [], pool.clean, recipe.patch_size, degrade,
                                     paired_fraction=0.0, colour_fraction=recipe.classifier_colour_fraction,
                                     channel_shuffle=recipe.classifier_channel_shuffle, transplant_fraction=transplant)
    if recipe.classifier_photos:
        photos = D.PatchSampler(read_photos(recipe.classifier_photos), [], recipe.patch_size, None)
        samplers[recipe.paired_degradation] = OneOf(samplers[recipe.paired_degradation], photos, recipe.classifier_photo_fraction)
    if classifier_config(recipe).clean_class:
        samplers[CLEAN] = D.PatchSampler([], pool.clean, recipe.patch_size, as_stored, paired_fraction=0.0,
                                         colour_fraction=recipe.classifier_colour_fraction, channel_shuffle=recipe.classifier_channel_shuffle)
    return samplers


# The JPEG qualities of the clean class's compressed patches: a camera's or a phone's
# (75-95), well above the noise degradation's JPEG kind (20-70).
STORED_JPEG_QUALITY = (75, 95)


def as_stored(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A patch of the clean class: the clean patch itself, or (half of them) JPEG-compressed
    at a quality in :data:`STORED_JPEG_QUALITY`, as most photographs are stored, so that
    a camera's JPEG is not taken for noise."""
    if rng.random() < 0.5:
        return jpeg_noise(clean, int(rng.integers(STORED_JPEG_QUALITY[0], STORED_JPEG_QUALITY[1] + 1)))
    return clean


def classifier_classes(recipe: ADMSRecipe, config: ClassifierConfig) -> tuple[str, ...]:
    """The classifier's classes in the order of its outputs."""
    return tuple(recipe.degradations) + ((CLEAN,) if config.clean_class else ())


def accuracy_samplers(samplers: dict[str, D.PatchSampler], for_classifier: dict, config: ClassifierConfig) -> dict:
    """What :func:`classifier_accuracy` measures on: each degradation as stage 1 draws it,
    and the clean class's patches when the classifier has one."""
    return {**samplers, CLEAN: for_classifier[CLEAN]} if config.clean_class else samplers


def read_photos(folders: tuple[str, ...]) -> list[D.PairedImage]:
    """Every image of ``folders`` as 8-bit RGB, each its own "pair" (the classifier reads
    only the degraded side of a patch, so a photograph needs no clean version)."""
    images = []
    for folder in folders:
        files = list_images(Path(folder))
        if not files:
            raise TrainingError(f"{folder}: no images restore can read (classifier_photos)")
        images += [D.to_uint8(D.read_rgb(path)) for path in files]
    return [D.PairedImage(image, image) for image in images]


@dataclass
class OneOf:
    """Draws a patch from ``other`` with probability ``fraction``, else from ``usual``."""

    usual: D.PatchSampler
    other: D.PatchSampler
    fraction: float

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return (self.other if rng.random() < self.fraction else self.usual).sample(rng)


def _train_stage(recipe: Recipe, run_dir: Path, sampler: D.PatchSampler, device: torch.device, log: Log, stops: Stops,
                 precision: str = "auto", data_workers: int = 0, tensorboard: bool = False) -> Path:
    final = run_dir / "model.safetensors"
    if final.exists():
        log(f"{recipe.name}: done earlier ({final})")
        return final
    trainer = Trainer(recipe, run_dir, device, log, precision=precision, data_workers=data_workers, tensorboard=tensorboard)
    if trainer.state_path.exists():
        trainer.resume()
    stops.before_stage(run_dir.name, trainer.step)
    log(f"{recipe.name}: {recipe.steps} steps")
    try:
        trainer.train(TrainingData(sampler, [], {}), stop_requested=stops.requested, time_limit=stops.remaining())
    except TrainingInterrupted as exc:
        raise StageStopped(run_dir.name, exc.step, by_signal=True) from None
    if not final.exists():  # paused inside the time limit, checkpointed
        raise StageStopped(run_dir.name, trainer.step, by_signal=False)
    stops.finished_a_stage = True
    return final


def _patches(sampler: D.PatchSampler, seed: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    degraded, clean = sampler.batch(seed, 0, count)
    return [(torch.from_numpy(degraded[i : i + 1]), torch.from_numpy(clean[i : i + 1])) for i in range(count)]


def select_filters(
    model: torch.nn.Module,
    unified: dict[str, torch.Tensor],
    finetuned: dict[str, torch.Tensor],
    target_images: list,
    other_images: list,
    steps: int,
    fraction: float,
) -> dict[str, list[int]]:
    """M_d: the top ``fraction`` of filters by degradation-specific FAIG, as indices per layer."""
    scores = attribution.faig(model, unified, finetuned, target_images, other_images, steps)
    masks = attribution.top_masks(model, attribution.rank(scores), fraction)
    return {name: torch.nonzero(mask).flatten().tolist() for name, mask in masks.items() if mask.any()}


def retrain_filters(
    base: torch.nn.Module,
    unified: dict[str, torch.Tensor],
    start: dict[str, torch.Tensor],
    filters: dict[str, list[int]],
    sampler: D.PatchSampler,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    log: Log = print,
    stops: Stops | None = None,
    state_path: Path | None = None,
    stage: str = "masked filters",
) -> dict[str, torch.Tensor]:
    """Train the filters M_d alone, θ_um frozen around them (FAIG's "re-train the
    discovered filters"; stage 3b of :class:`ADMSRecipe`).

    A copy of ``base`` holds θ_um (``unified``) except the output filters ``filters``
    (layer -> filter indices), which start from ``start`` (the fine-tuned θ_d) and are
    the only weights that move: L1 on ``sampler``'s patches, Adam at ``lr`` x0.3 at
    50/75/90 % of ``steps``, gradient norm clipped at 1. Biases and every other weight
    stay θ_um's, as in the ADMS kernel (SPEC §2.3), so the network trained is the one
    ADMS runs when told d. Returns the trained weights of the layers in ``filters``.
    Stoppable and resumable through ``state_path`` (:func:`run_resumable`).
    """
    model = copy.deepcopy(base).to(device).train()
    params = dict(model.named_parameters())
    axes = {p.name: p.axis for p in attribution.filter_params(model)}
    trainable = []
    with torch.no_grad():
        for name, param in params.items():
            param.requires_grad_(name in filters)
        for name, indices in filters.items():
            param = params[name]
            shape = [1] * param.ndim
            shape[axes[name]] = -1
            mask = torch.zeros(param.shape[axes[name]], dtype=param.dtype, device=device)
            mask[indices] = 1
            mask = mask.view(shape)
            param.copy_(unified[name].to(device) * (1 - mask) + start[name].to(device) * mask)
            param.register_hook(lambda grad, mask=mask: grad * mask)  # Adam's moments stay 0 outside M_d: no step there
            trainable.append(param)
    optimizer = torch.optim.Adam(trainable, lr=lr)
    milestones = {round(steps * f) for f in (0.5, 0.75, 0.9)}

    def take_step(step: int) -> None:
        degraded, clean = (torch.from_numpy(a).to(device) for a in sampler.batch(seed, step, batch_size))
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            restored = model(degraded)
        loss = F.l1_loss(restored.float(), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        if step + 1 in milestones:
            for group in optimizer.param_groups:
                group["lr"] *= 0.3
        if (step + 1) % 250 == 0:
            log(f"masked filters step {step + 1}/{steps}: L1 {loss.item():.4f}")

    run_resumable(stage, steps, take_step, model, optimizer, state_path, stops, device)
    return {name: params[name].detach().cpu() for name in filters}


def _masked_stage(recipe: ADMSRecipe, path: Path, unified_model: torch.nn.Module, unified: dict[str, torch.Tensor],
                  finetuned: dict[str, torch.Tensor], filters: dict[str, list[int]], sampler: D.PatchSampler, seed: int,
                  device: torch.device, precision: str, log: Log, stops: Stops) -> dict[str, torch.Tensor]:
    """θ_um with degradation d's filters trained again (:func:`retrain_filters`), kept in ``path``."""
    if path.exists():
        log(f"{path.stem}: done earlier ({path})")
        trained = load_file(path)
    else:
        state = path.with_name(f"{path.stem}.state.safetensors")
        stops.before_stage(path.stem)
        log(f"{path.stem}: {recipe.masked_finetune_steps} steps on {sum(map(len, filters.values()))} filters")
        dtype = training_autocast_dtype(precision, device)
        trained = retrain_filters(unified_model, unified, finetuned, filters, sampler, recipe.masked_finetune_steps,
                                  recipe.finetune_lr, recipe.batch_size, seed, device,
                                  dtype if dtype == torch.bfloat16 else None, log,  # fp16 would need loss scaling: fp32
                                  stops, state, path.stem)
        atomic_save_file({k: v.contiguous() for k, v in trained.items()}, path, {})
        state.unlink(missing_ok=True)
        stops.finished_a_stage = True
    return {**unified, **trained}


def train_classifier(recipe: ADMSRecipe, config: ClassifierConfig, samplers: dict[str, D.PatchSampler | OneOf], device: torch.device,
                     log: Log, stops: Stops | None = None, state_path: Path | None = None) -> DegradationClassifier:
    """Cross-entropy on synthetic patches, classes drawn uniformly per patch; stoppable
    and resumable through ``state_path`` (:func:`run_resumable`)."""
    torch.manual_seed(recipe.seed)
    classifier = DegradationClassifier(config, len(recipe.degradations)).to(device)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=recipe.classifier_lr)
    sampler_list = [samplers[c] for c in classifier_classes(recipe, config)]
    size = config.patch

    def take_step(step: int) -> None:
        rng = np.random.default_rng([recipe.seed, 7, step])
        labels = rng.integers(len(sampler_list), size=recipe.classifier_batch_size)
        patches = np.stack([_crop(sampler_list[k].sample(rng)[0], size, rng) for k in labels]).transpose(0, 3, 1, 2)
        logits = classifier(torch.from_numpy(np.ascontiguousarray(patches)).to(device))
        loss = F.cross_entropy(logits, torch.from_numpy(labels).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for group in optimizer.param_groups:  # cosine decay to 0
            group["lr"] = recipe.classifier_lr * 0.5 * (1 + np.cos(np.pi * (step + 1) / recipe.classifier_steps))
        if (step + 1) % 200 == 0:
            log(f"classifier step {step + 1}/{recipe.classifier_steps}: loss {loss.item():.4f}")

    run_resumable("classifier", recipe.classifier_steps, take_step, classifier, optimizer, state_path, stops, device)
    return classifier.eval()


def _crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    if h <= size and w <= size:
        return image
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return image[top : top + size, left : left + size]


@torch.inference_mode()
def classifier_accuracy(classifier: DegradationClassifier, samplers: dict[str, D.PatchSampler], seed: int, per_class: int) -> dict[str, float]:
    """Accuracy per class (each degradation, and :data:`CLEAN` when ``samplers`` has it)
    on fresh synthetic patches (a seed never trained on)."""
    result = {}
    for label, (degradation, sampler) in enumerate(samplers.items()):
        degraded, _ = sampler.batch(seed, label, per_class)
        predicted = classifier(torch.from_numpy(degraded)).argmax(dim=1)
        result[degradation] = float((predicted == label).float().mean())
    return result


def train_adms(recipe: ADMSRecipe, run_dir: Path, device: torch.device, log: Log, stops: Stops | None = None,
               precision: str = "auto", data_workers: int = 0, pool: str = "memory", tensorboard: bool = False) -> tuple[Path, dict]:
    """Run every stage of ``recipe`` into ``run_dir``; returns the model path and its metrics.
    ``stops``: a stage stops between two steps on a signal or at the time limit,
    raising :class:`StageStopped` (what it did kept for ``--resume``).
    ``tensorboard``: the network stages (unified, fine-tuned) also log there, each in its folder."""
    started, stops = time.time(), stops or Stops()
    classifier_settings = classifier_config(recipe)  # a mistyped setting stops the run here, not at stage 4
    run_dir.mkdir(parents=True, exist_ok=True)
    data = prepare_data(recipe.unified_recipe(), pool, run_dir)
    # Recorded once the data is read: a run that found no images is no run to --resume.
    (run_dir / "recipe.json").write_text(json.dumps(config_to_dict(recipe), indent=2))
    (run_dir / "data.json").write_text(json.dumps(data.summary, indent=2))
    log(f"data: {describe(data.summary)} (all of it: {run_dir / 'data.json'})")
    samplers = degradation_samplers(recipe, data.sampler)
    for_classifier = classifier_samplers(recipe, data.sampler)
    if recipe.classifier_photos:
        photos = for_classifier[recipe.paired_degradation].other.paired
        log(f"classifier photos: {len(photos)} real {recipe.paired_degradation} photographs from "
            f"{', '.join(recipe.classifier_photos)}, {recipe.classifier_photo_fraction:.0%} of its patches")
    if recipe.keep_classifier and recipe.init is None:
        raise TrainingError("keep_classifier stores a clean-aware classifier beside an existing model's: give --init ADMS_MODEL")
    if recipe.init is not None:
        return _retrain_classifier(recipe, run_dir, samplers, for_classifier, classifier_settings, device, log, started, stops)
    if data.sampler.paired:
        raise TrainingError(f"recipe {recipe.name} trains its stages from clean folders; --data pairs feed only a classifier "
                            "retrained with --init ADMS_MODEL")

    unified_path = _train_stage(recipe.unified_recipe(), run_dir / "unified", data.sampler, device, log, stops, precision, data_workers,
                                tensorboard)
    finetuned_paths = {
        d: _train_stage(recipe.finetune_recipe(d, str(unified_path)), run_dir / f"finetune-{d}", samplers[d], device, log, stops, precision,
                        data_workers, tensorboard)
        for d in recipe.degradations
    }

    unified_model = load_checkpoint(unified_path).model.eval()
    unified = {k: v.detach() for k, v in unified_model.named_parameters()}
    finetuned = {d: {k: v.detach() for k, v in load_checkpoint(p).model.named_parameters()} for d, p in finetuned_paths.items()}

    filters = _faig_stage(recipe, run_dir, unified_model, unified, finetuned, samplers, log, stops)

    # Δθ_d ⊙ M_d: cut from θ_d as it is, or (stage 3b) the filters M_d trained again on d.
    sources = finetuned
    if recipe.masked_finetune_steps:
        sources = {d: _masked_stage(recipe, run_dir / f"masked-{d}.safetensors", unified_model, unified, finetuned[d], filters[d],
                                    samplers[d], recipe.seed + 10 + i, device, precision, log, stops)
                   for i, d in enumerate(recipe.degradations)}

    classifier_path = run_dir / "classifier.safetensors"
    if classifier_path.exists():
        classifier = DegradationClassifier(classifier_settings, len(recipe.degradations))
        classifier.load_state_dict(load_file(classifier_path))
    else:
        classifier = _classifier_stage(recipe, classifier_settings, for_classifier, device, log, stops, run_dir)
        atomic_save_file({k: v.contiguous() for k, v in classifier.state_dict().items()}, classifier_path, {})
        (run_dir / _CLASSIFIER_STATE).unlink(missing_ok=True)

    config = ADMSConfig(recipe.base_architecture, recipe.base, recipe.degradations, filters, classifier_settings)
    model = assemble(config, unified_model.state_dict(), sources, classifier.state_dict())
    metrics = measure(model, unified, finetuned, samplers, recipe, classifier, filters,
                      accuracy_samplers(samplers, for_classifier, classifier_settings))
    metrics["train_seconds"] = round(time.time() - started, 1)
    path = save_checkpoint(run_dir / "model.safetensors", model, "adms", config, "all",
                           recipe={**config_to_dict(recipe), "objective": "ADMS stages: unified L1, per-degradation L1 fine-tuning, FAIG"
                                   + (", L1 re-training of the FAIG filters alone" if recipe.masked_finetune_steps else "") + ", classifier"},
                           metrics=metrics)
    return path, metrics


def _faig_stage(recipe: ADMSRecipe, run_dir: Path, unified_model: torch.nn.Module, unified: dict[str, torch.Tensor],
                finetuned: dict[str, dict[str, torch.Tensor]], samplers: dict[str, D.PatchSampler], log: Log,
                stops: Stops) -> dict[str, dict[str, list[int]]]:
    """M_d for every degradation d (:func:`select_filters`), kept in ``filters.json``; each
    degradation's as it is found in ``filters.partial.json``, so that a stop between two
    (a signal, the time limit at the pace of those found so far) loses none of them."""
    filters_path, partial_path = run_dir / "filters.json", run_dir / "filters.partial.json"
    if filters_path.exists():
        return json.loads(filters_path.read_text())
    filters = json.loads(partial_path.read_text()) if partial_path.exists() else {}
    images = {d: _patches(s, recipe.seed + 1000, recipe.faig_images) for d, s in samplers.items()}
    stops.before_stage("FAIG", len(filters))
    pace = Pace(stops.remaining(), len(filters))
    for d in recipe.degradations:
        if d in filters:
            continue
        by_signal = stops.requested()
        if by_signal or pace.no_room_for_a_step(len(filters), validates=False):
            raise StageStopped("FAIG", len(filters), by_signal)
        others = [pair for other in recipe.degradations if other != d for pair in images[other]]
        others = others[:: max(1, len(others) // recipe.faig_images)][: recipe.faig_images]
        filters[d] = select_filters(unified_model, unified, finetuned[d], images[d], others, recipe.faig_steps, recipe.top_fraction)
        log(f"FAIG {d}: {sum(len(v) for v in filters[d].values())} filters in {len(filters[d])} layers")
        partial_path.write_text(json.dumps(filters, indent=1))
        stops.finished_a_stage = True
    filters = {d: filters[d] for d in recipe.degradations}  # the recipe's order, however the run was split
    filters_path.write_text(json.dumps(filters, indent=1))
    partial_path.unlink(missing_ok=True)
    return filters


_CLASSIFIER_STATE = "classifier.state.safetensors"  # the classifier's training, stopped part-way


def _classifier_stage(recipe: ADMSRecipe, settings: ClassifierConfig, samplers: dict[str, D.PatchSampler | OneOf],
                      device: torch.device, log: Log, stops: Stops, run_dir: Path) -> DegradationClassifier:
    """The classifier trained (:func:`train_classifier`), stoppable and resumable from
    ``run_dir``'s :data:`_CLASSIFIER_STATE`; on the CPU."""
    stops.before_stage("classifier")
    classifier = train_classifier(recipe, settings, samplers, device, log, stops, run_dir / _CLASSIFIER_STATE).cpu()
    stops.finished_a_stage = True
    return classifier


def _retrain_classifier(recipe: ADMSRecipe, run_dir: Path, samplers: dict[str, D.PatchSampler],
                        for_classifier: dict[str, D.PatchSampler], settings: ClassifierConfig, device: torch.device, log: Log,
                        started: float, stops: Stops) -> tuple[Path, dict]:
    """``init`` given: the unified model, filters and deltas of that ADMS checkpoint, with
    a classifier trained anew (stage 4 only). Its metrics are carried over, the
    classifier's synthetic accuracy measured again, and the file it came from recorded.
    With ``keep_classifier`` the checkpoint's classifier stays as it is (and with it every
    metric) and the new one, which has a clean class, is stored beside it as the model's
    ``clean_classifier``."""
    source = load_checkpoint(recipe.init)
    if source.architecture != "adms":
        raise TrainingError(f"{recipe.init}: --init for recipe {recipe.name} must be an ADMS checkpoint, not {source.architecture}")
    old = config_from_dict(ADMSConfig, source.config, f"{recipe.init}: config")
    if tuple(old.degradations) != tuple(recipe.degradations):
        raise TrainingError(f"{recipe.init} tells apart {', '.join(old.degradations)}; the recipe names {', '.join(recipe.degradations)}")
    log(f"classifier only: stages 1-3 from {recipe.init} ({source.sha256[:12]})")
    classifier = _classifier_stage(recipe, settings, for_classifier, device, log, stops, run_dir)
    slot = "clean_classifier" if recipe.keep_classifier else "classifier"
    config = replace(old, **{slot: settings})
    model = build_model("adms", config_to_dict(config))
    state = {k: v for k, v in source.model.state_dict().items() if not k.startswith(f"{slot}.")}
    state.update({f"{slot}.{k}": v for k, v in classifier.state_dict().items()})
    model.load_state_dict(state)
    measured_on = accuracy_samplers(samplers, for_classifier, settings)
    accuracy = classifier_accuracy(classifier, measured_on, recipe.seed + 2000, 32)
    if recipe.keep_classifier:
        kept = {k: v for k, v in source.metrics.items() if not k.startswith("clean_classifier")}  # train_seconds too: the model's
        metrics = {**kept, "clean_classifier_accuracy_synthetic": accuracy,
                   "clean_classifier_parameters": sum(p.numel() for p in classifier.parameters()),
                   "clean_classifier_trained_on": {"file": Path(recipe.init).name, "sha256": source.sha256},
                   "clean_classifier_train_seconds": round(time.time() - started, 1)}
        objective = "clean-aware classifier trained beside an existing ADMS model's (stages 1-4 kept)"
        # The model's own recipe stays what trained it; this run's is recorded under it.
        recorded = {**source.recipe, "clean_classifier": {**config_to_dict(recipe), "objective": objective}}
    else:
        kept = {k: v for k, v in source.metrics.items() if not k.startswith("classifier_accuracy") and "/auto/" not in k}
        metrics = {**kept, "classifier_accuracy_synthetic": accuracy,
                   "classifier_retrained_from": {"file": Path(recipe.init).name, "sha256": source.sha256},
                   "train_seconds": round(time.time() - started, 1)}
        objective = "classifier retrained on an existing ADMS model (stages 1-3 kept)"
        recorded = {**config_to_dict(recipe), "objective": objective}
    path = save_checkpoint(run_dir / "model.safetensors", model.eval(), "adms", config, "all", recipe=recorded, metrics=metrics)
    (run_dir / _CLASSIFIER_STATE).unlink(missing_ok=True)
    return path, metrics


def assemble(config: ADMSConfig, unified_state: dict, finetuned: dict[str, dict[str, torch.Tensor]], classifier_state: dict) -> torch.nn.Module:
    """The ADMS network: θ_um, Δθ_d of the selected filters only, and the classifier."""
    model = build_model("adms", config_to_dict(config))
    model.base.load_state_dict(unified_state)
    model.classifier.load_state_dict(classifier_state)
    with torch.no_grad():
        for d_index, name, key in model.selected:
            degradation = config.degradations[d_index]
            index = getattr(model, f"index__{key}")
            change = finetuned[degradation][name] - unified_state[name]
            model.deltas[key].copy_(change.index_select(model.axes[name], index))
    return model.eval()


@torch.inference_mode()
def measure(model, unified: dict, finetuned: dict, samplers: dict, recipe: ADMSRecipe, classifier, filters: dict,
            accuracy_on: dict) -> dict:
    """Parameter overhead, classifier accuracy (on ``accuracy_on``), and PSNR on fresh
    synthetic patches of each degradation: unified θ_um vs ADMS (forced to d) vs the
    full fine-tuned θ_d."""
    base_params = count_parameters(model.base)
    extra = model.extra_parameters()
    metrics: dict = {
        "parameters_unified": base_params,
        "parameters_extra": extra,
        "parameter_overhead_percent": round(100 * extra / base_params, 2),
        "parameters_single_task_copies": base_params * len(recipe.degradations),
        "filters_kept": {d: sum(len(v) for v in per_layer.values()) for d, per_layer in filters.items()},
        "filters_total": sum(p.filters for p in attribution.filter_params(model.base)),
        "classifier_accuracy_synthetic": classifier_accuracy(classifier, accuracy_on, recipe.seed + 2000, 32),
    }
    for d_index, (d, sampler) in enumerate(samplers.items()):
        images = _patches(sampler, recipe.seed + 3000, 8)
        weights = torch.zeros(len(recipe.degradations))
        weights[d_index] = 1
        adms_params = {**unified, **model.merged_parameters(weights)}
        metrics[f"synthetic/{d}"] = {
            "unified_psnr": round(attribution.mean_psnr(model.base, unified, images), 3),
            "adms_psnr": round(attribution.mean_psnr(model.base, adms_params, images), 3),
            "finetuned_psnr": round(attribution.mean_psnr(model.base, finetuned[d], images), 3),
        }
    return metrics
