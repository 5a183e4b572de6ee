"""The training loop behind ``restore train``.

One :class:`Trainer` serves every recipe: it builds the model from the recipe's
architecture table entry, samples patches from the data :mod:`.sources` prepared
(:mod:`restore_core.training.data`),
optimises with Adam and the recipe's step schedule, keeps an EMA of the
weights, validates every ``val_every`` steps, and writes to ``run_dir``:

* ``state.safetensors`` — weights, EMA, optimiser moments and the step, for resume
* ``last.safetensors`` / ``best.safetensors`` — inference checkpoints (EMA weights)
  with the recipe and the validation metrics in their metadata
* ``log.csv`` — one row per logged step, and TensorBoard's event files when asked
  (:mod:`.run_log`)

Objectives (:func:`restoration_loss`): Taylor Eq. 21; Golf stage 1 (F alone) then
stage 2 (G on Eq. 4, F frozen); LSGAN with a conditional PatchGAN; otherwise the
recipe's pixel loss, plus a VGG perceptual term when weights are given. Under
``torchrun`` gradients are averaged across ranks (:mod:`.distributed`).

A NaN or infinite loss stops training with a clear error; the last good
checkpoint on disk is left untouched.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn

from restore_core.checkpoint import save_checkpoint
from restore_core.configs import config_to_dict
from restore_core.device import training_autocast_dtype, training_memory_format
from restore_core.degradations.noise_level import measured_noise_level
from restore_core.engine.tiling import dense_channels_last, run_whole_or_tiled
from restore_core.metrics import psnr, ssim, to_uint8_range
from restore_core.models import build_model
from restore_core.models.golf import GolfOptimizer
from restore_core.models.taylor import TaylorNet, taylor_loss
from restore_core.training import data as D
from restore_core.training.calibration import (
    MAX_CALIBRATION_IMAGES,
    MIN_CALIBRATION_SIDE,
    evenly_spread,
    large_enough,
    measure_noise_calibration,
)
from restore_core.training.distributed import DistInfo, average_gradients, broadcast_parameters, weights_agree
from restore_core.training.errors import TrainingError
from restore_core.training.losses import (
    PerceptualWeightsError,
    VGGPerceptualLoss,
    content_loss,
    golf_step_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)
from restore_core.training.prefetch import BatchPrefetcher
from restore_core.training.recipes import Recipe, resume_command
from restore_core.training.run_log import RunLog
from restore_core.training.sources import TrainingData, ValidationSet
from restore_core.training.state import EMA, load_state, save_state


class TrainingInterrupted(Exception):
    """Training stopped on request after a finished, checkpointed step."""

    def __init__(self, step: int) -> None:
        self.step = step
        super().__init__(f"interrupted at step {step}")


def calibration_images(sampler: D.PatchSampler, count: int = MAX_CALIBRATION_IMAGES) -> list[np.ndarray]:
    """Up to ``count`` of the sampler's clean-only images large enough to calibrate on,
    evenly spread over the pool (float32 RGB in [0, 1]): what a denoiser's noise
    calibration is measured on."""
    large = large_enough([item.clean for item in sampler.clean])
    return [clean.astype(np.float32) / 255.0 for clean in evenly_spread(large, count)]


class Pace:
    """How long this call's steps take, against a time limit (:meth:`Trainer.train`).
    A step's cost is the mean of this call's steps so far, validations and checkpoints
    taken out; the last validation's duration is added for a step that validates, and
    the last checkpoint's for the one that pausing writes."""

    def __init__(self, time_limit: float | None, first_step: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.time_limit, self.first_step, self.clock = time_limit, first_step, clock
        self.began = clock()
        self.last_validation = self.last_checkpoint = 0.0  # seconds
        self.aside = 0.0  # seconds of this call's validations and checkpoints: the mean step leaves them out
        self.ran_out = False

    def validated(self, seconds: float) -> None:
        self.last_validation = seconds
        self.aside += seconds

    def checkpointed(self, seconds: float) -> None:
        self.last_checkpoint = seconds
        self.aside += seconds

    def no_room_for_a_step(self, step: int, validates: bool) -> bool:
        """Whether step ``step + 1`` would end past the limit. Never before this call's
        first step: the pace is not known yet."""
        if self.time_limit is None or step == self.first_step:
            return False
        elapsed = self.clock() - self.began
        mean_step = max(elapsed - self.aside, 0.0) / (step - self.first_step)
        needed = mean_step + (self.last_validation if validates else 0.0) + self.last_checkpoint
        self.ran_out = elapsed + needed > self.time_limit
        return self.ran_out


def training_forward(model: nn.Module, degraded: torch.Tensor, clean: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    """``model(y)``. A model with a noise-level input (``restore denoise --sigma``) is told
    the measured level of the first ``noise_level_known_fraction`` of the batch and nothing
    of the rest, so one model learns both the blind and the non-blind case (the patches
    are drawn at random, so a fixed split is a random one)."""
    if not getattr(model, "takes_noise_level", False):
        return model(degraded)
    levels = measured_noise_level(degraded, clean)
    told = round(recipe.noise_level_known_fraction * len(levels))
    levels[told:] = float("nan")
    return model(degraded, noise_level=levels)


def restoration_loss(
    model: nn.Module,
    degraded: torch.Tensor,
    clean: torch.Tensor,
    recipe: Recipe,
    stage: int = 0,
    perceptual: VGGPerceptualLoss | None = None,
) -> torch.Tensor:
    """The recipe's objective for one batch.

    * Taylor models: Eq. 21 (mapping and reconstruction terms).
    * Golf, stage 1: ``L(F(y), x̃)``; stage 2: Eq. 4 on G with F frozen.
    * Anything else: the recipe's pixel loss (+ λ·perceptual) on ``model(y)``.
    """
    if isinstance(model, TaylorNet):
        return taylor_loss(model.expand(degraded), clean, recipe.mapping_loss_weight)

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return content_loss(output, target, recipe.loss, perceptual, recipe.perceptual_weight, recipe.ssim_weight)

    if isinstance(model, GolfOptimizer) and stage == 1:
        return loss(model.first(degraded), clean)
    if isinstance(model, GolfOptimizer) and stage == 2:
        with torch.no_grad():
            first_shot = model.first(degraded)
        return golf_step_loss(model.step, first_shot, clean, recipe.train_iterations, loss)
    return loss(training_forward(model, degraded, clean, recipe), clean)


VALIDATION_IMAGES_SHOWN = 2  # restored images of each validation set logged to TensorBoard at each validation


@torch.inference_mode()
def evaluate(model: nn.Module, sets: list[ValidationSet], device: torch.device, multiple: int,
             shown: int = 0, memory_format: torch.memory_format = torch.channels_last) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Mean PSNR/SSIM (RGB and Y, 8-bit outputs) per validation set, and the restored
    first ``shown`` images of each set (``"<set>/<index>"`` -> 8-bit H x W x 3). An image
    the device has no memory for beside the training state is restored in tiles
    (:func:`run_whole_or_tiled`) rather than ending the run. Images go in laid out as
    ``memory_format``, the model's (:func:`dense_channels_last`: a view of the decoded
    image made oneDNN copy every convolution's input)."""
    model.eval()
    metrics: dict[str, float] = {}
    images: dict[str, np.ndarray] = {}
    for vset in sets:
        scores = {"psnr_rgb": [], "psnr_y": [], "ssim_y": []}
        for index, (degraded, clean) in enumerate(vset.pairs):
            x = torch.from_numpy(D.unit_float(degraded).transpose(2, 0, 1)).unsqueeze(0).to(device)
            x = dense_channels_last(x) if memory_format == torch.channels_last else x.contiguous()
            out = run_whole_or_tiled(model, x, multiple)[0].float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0)
            a, b = to_uint8_range(out), to_uint8_range(D.unit_float(clean))
            scores["psnr_rgb"].append(psnr(a, b, "rgb"))
            scores["psnr_y"].append(psnr(a, b, "y"))
            scores["ssim_y"].append(ssim(a, b, "y"))
            if index < shown:
                images[f"{vset.name}/{index}"] = D.to_uint8(out)
        for key, values in scores.items():
            metrics[f"{vset.name}/{key}"] = float(np.mean(values))
    model.train()
    return metrics, images


class Trainer:
    """Runs a :class:`Recipe` into ``run_dir``; see the module docstring."""

    def __init__(
        self,
        recipe: Recipe,
        run_dir: Path,
        device: torch.device,
        log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
        dist_info: DistInfo = DistInfo(),
        precision: str = "auto",
        data_workers: int = 0,
        tensorboard: bool = False,
    ) -> None:
        self.recipe = recipe
        self.tensorboard = tensorboard  # also log to run_dir/tensorboard (restore_core.training.run_log)
        # Processes drawing batches ahead of the loop (restore_core.training.prefetch);
        # 0 draws each batch in the loop. Changes speed only, never the batches.
        self.data_workers = data_workers
        self.run_dir = Path(run_dir)
        self.device = device
        # How the steps are computed (restore_core.device.training_autocast_dtype), not what
        # is trained: a run may resume with another precision; checkpoints record the last.
        self.precision = precision
        self.autocast_dtype = training_autocast_dtype(precision, device, recipe.amp)
        self.dist = dist_info
        self.log = log if dist_info.is_main else (lambda s: None)
        torch.manual_seed(recipe.seed)
        # channels_last (oneDNN's and cuDNN's fast layout) unless a backend bug rules it
        # out: restore_core.device.training_memory_format.
        self.model = build_model(recipe.architecture, recipe.model)
        self.memory_format = training_memory_format(self.model, device, self.autocast_dtype)
        self.model = self.model.to(device, memory_format=self.memory_format)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed patch shapes: let cuDNN pick its fastest kernels once
        if recipe.init:
            self._load_init(Path(recipe.init))
        if recipe.stages and not isinstance(self.model, GolfOptimizer):
            raise TrainingError(f"recipe {recipe.name}: stages are for Golf models, not {recipe.architecture}")
        self.perceptual: VGGPerceptualLoss | None = None
        self.perceptual_note = ""
        if recipe.perceptual_weight > 0 and not isinstance(self.model, TaylorNet):
            if recipe.perceptual_weights:
                try:
                    self.perceptual = VGGPerceptualLoss(Path(recipe.perceptual_weights)).to(device)
                except PerceptualWeightsError as exc:
                    raise TrainingError(str(exc)) from None
                self.perceptual_note = f"perceptual loss: VGG-11-BN pool-5 features from {recipe.perceptual_weights}, weight {recipe.perceptual_weight:g}"
            else:
                self.perceptual_note = (
                    f"no VGG-11-BN weights given (--perceptual-weights): training on the {recipe.loss.upper()} loss alone, "
                    "without the recipe's perceptual term; the checkpoints record this"
                )
        elif recipe.perceptual_weights:
            why = "Taylor models train on Eq. 21 alone" if isinstance(self.model, TaylorNet) else "the recipe's perceptual_weight is 0"
            self.perceptual_note = f"--perceptual-weights {recipe.perceptual_weights} is not used: {why}"
        self.multiple = int(getattr(self.model, "size_multiple", 1))
        if recipe.patch_size % self.multiple:
            lower = recipe.patch_size // self.multiple * self.multiple
            choices = " or ".join(str(s) for s in (lower, lower + self.multiple) if s > 0)
            raise TrainingError(f"recipe {recipe.name}: patch_size {recipe.patch_size} is not a multiple of {self.multiple}, the side "
                                f"{recipe.architecture} needs (its downsamplings); use --patch-size {choices}")
        broadcast_parameters(self.model, self.dist)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=recipe.lr, betas=recipe.betas)
        self.discriminator: nn.Module | None = None
        self.d_optimizer: torch.optim.Optimizer | None = None
        if recipe.adversarial:
            self.discriminator = build_model("patchgan", recipe.discriminator).to(device, memory_format=self.memory_format)
            broadcast_parameters(self.discriminator, self.dist)
            self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=recipe.discriminator_lr or recipe.lr, betas=recipe.betas)
        self.ema = EMA(self.model, recipe.ema_decay) if recipe.ema_decay > 0 else None
        self.step = 0
        # Training seconds before this process: log.csv's elapsed_s counts the whole run
        # across resumes (the state file carries it).
        self.seconds_before = 0.0
        self.best: float | None = None  # the best mean validation PSNR-Y so far (best.safetensors)
        self.best_step: int | None = None
        self.metrics: dict[str, float] = {}
        # A model with a noise-level input: its --sigma auto calibration, measured at the
        # end of the run and stored in the final checkpoint's config.
        self.noise_calibration: tuple[tuple[float, float], ...] = ()

    def _load_init(self, path: Path) -> None:
        """Start from the weights of a restore checkpoint of the same architecture (fine-tuning),
        or from the unified network θ_um inside an ADMS checkpoint built around it."""
        from restore_core.checkpoint import CheckpointError, load_checkpoint

        try:
            source = load_checkpoint(path)
        except CheckpointError as exc:
            raise TrainingError(str(exc)) from None
        source_architecture, source_config, source_model = source.architecture, source.config, source.model
        if source_architecture == "adms" and source_config.get("base_architecture") == self.recipe.architecture:
            # An ADMS network's base is its unified model θ_um (SPEC §2.3): start from that.
            source_architecture, source_config, source_model = source_config["base_architecture"], source_config["base"], source_model.base
            self.log(f"--init {path}: the ADMS model's unified network θ_um ({source_architecture})")
        if source_architecture != self.recipe.architecture:
            raise TrainingError(f"{path}: --init checkpoint is {source.architecture}, the recipe's model is {self.recipe.architecture}")
        if source_config == json.loads(json.dumps(self.recipe.model)):
            self.model.load_state_dict(source_model.state_dict())
            return
        # Growing a model (e.g. infoflow's refine head): every tensor of the source must
        # land on a tensor of the same shape; tensors the source lacks keep their fresh init.
        target = self.model.state_dict()
        source_state = source_model.state_dict()
        misfits = [k for k, v in source_state.items() if k not in target or target[k].shape != v.shape]
        if misfits:
            raise TrainingError(
                f"{path}: --init checkpoint's config differs from the recipe's model and its tensors do not fit "
                f"(first: {misfits[0]}); use a checkpoint of the same config, or one the recipe's model extends"
            )
        self.model.load_state_dict(source_state, strict=False)
        fresh = sorted({k.rsplit(".", 2)[0] for k in target if k not in source_state})
        if fresh:
            self.log(f"--init {path}: grown model; new, freshly initialised: {', '.join(fresh)}")
        else:
            self.log(f"--init {path}: same weights, the recipe's model config differs (settings without weights)")

    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.safetensors"

    def resume(self) -> None:
        if not self.state_path.exists():
            raise TrainingError(f"{self.state_path}: nothing to resume from")
        try:
            self.step, extra = load_state(self.state_path, self._modules(), self._optimizers(), self.ema, self.device)
        except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:  # a truncated or foreign file
            cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TrainingError(f"{self.state_path}: cannot resume from it ({cause}); its last.safetensors, if whole, "
                                f"can start a new run with --init") from None
        self.best = extra.get("best")
        self.best_step = extra.get("best_step")
        self.metrics = extra.get("metrics", {})
        self.seconds_before = float(extra.get("elapsed_s", 0.0))
        self.log(f"resumed {self.run_dir} at step {self.step}")

    def _any_rank(self, flag: bool) -> bool:
        """``flag`` OR-ed over ranks, so that every rank stops at the same step."""
        if not self.dist.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(value)
        return bool(value.item() > 0)

    def _modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, **({"disc": self.discriminator} if self.discriminator is not None else {})}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optim": self.optimizer, **({"doptim": self.d_optimizer} if self.d_optimizer is not None else {})}

    def _inference_weights(self) -> dict[str, torch.Tensor]:
        return self.ema.shadow if self.ema is not None else self.model.state_dict()

    def _eval_model(self) -> nn.Module:
        model = copy.deepcopy(self.model)
        if self.ema is not None:
            model.load_state_dict(self.ema.shadow)
        if isinstance(model, GolfOptimizer) and self.recipe.stage_at(self.step - 1)[0] == 1:
            model.iterations = 0  # stage 1 validates F alone: G is still untrained
        return model

    def save(self, name: str, metrics: dict) -> Path:
        path = self.run_dir / name
        if not self.dist.is_main:
            return path
        config = dict(self.recipe.model)
        if isinstance(self.model, GolfOptimizer) and self.recipe.stage_at(max(self.step - 1, 0))[0] == 1:
            config["iterations"] = 0  # a stage-1 checkpoint is F alone until G is trained
        if self.noise_calibration:
            config["noise_calibration"] = [list(pair) for pair in self.noise_calibration]
        return save_checkpoint(
            path,
            self.model,
            self.recipe.architecture,
            config,
            self.recipe.task,
            recipe={**config_to_dict(self.recipe), "trained_steps": self.step, "objective": self.objective(),
                    "precision": self.precision_note()},
            metrics=metrics,
            state_dict=self._inference_weights(),
        )

    def precision_note(self) -> str:
        """How this run's steps were computed, in words (stored in every checkpoint)."""
        if self.autocast_dtype is None:
            return "fp32"
        name = {torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]
        layout = ", contiguous layout (dilated convolutions: see training_memory_format)" if self.memory_format == torch.contiguous_format else ""
        return f"{name} autocast on {self.device.type} (fp32 weights){layout}"

    def objective(self) -> str:
        """What the model was actually trained on, in words (stored in every checkpoint)."""
        if isinstance(self.model, TaylorNet):
            return f"Eq. 21 (L1 reconstruction + {self.recipe.mapping_loss_weight:g} x mapping term)"
        pixel = self.recipe.loss.upper()
        pretrain = f"; the first {self.recipe.pretrain_steps} steps reconstruct clean images (pre-training)" if self.recipe.pretrain_steps else ""
        if self.discriminator is not None:
            return f"LSGAN with a conditional PatchGAN + {self.recipe.adversarial_l1_weight:g} x L1" + pretrain
        if self.perceptual is not None:
            text = f"{pixel} + {self.recipe.perceptual_weight:g} x VGG-11-BN perceptual ({Path(self.recipe.perceptual_weights).name})"
        elif self.recipe.perceptual_weight > 0:
            text = f"{pixel} alone (perceptual term off: no VGG-11-BN weights file given)"
        else:
            text = pixel
        if self.recipe.ssim_weight > 0:
            text += f" + {self.recipe.ssim_weight:g} x (1 - SSIM Y)"
        if self.recipe.stages:
            text += f"; Golf stage 1 = F for {self.recipe.stages[0]} steps, stage 2 = G on Eq. 4 with N = {self.recipe.train_iterations}, F frozen, {self.recipe.stages[1]} steps"
        return text + pretrain

    def _discriminator_step(self, degraded, clean, restored, lr, scaler, amp_dtype, use_amp) -> None:
        """One LSGAN discriminator update on (real, restored) pairs conditioned on the input."""
        assert self.discriminator is not None and self.d_optimizer is not None
        for group in self.d_optimizer.param_groups:
            group["lr"] = lr * (self.recipe.discriminator_lr / self.recipe.lr if self.recipe.discriminator_lr else 1.0)
        with torch.autocast(self.device.type, dtype=amp_dtype, enabled=use_amp):
            d_loss = lsgan_discriminator_loss(self.discriminator(degraded, clean), self.discriminator(degraded, restored))
        self.d_optimizer.zero_grad(set_to_none=True)
        scaler.scale(d_loss).backward()
        average_gradients(self.discriminator, self.dist)
        scaler.step(self.d_optimizer)

    def _enter_stage(self, stage: int) -> None:
        """Freeze or unfreeze parts of a Golf model for ``stage`` (idempotent)."""
        if not isinstance(self.model, GolfOptimizer):
            return
        self.model.first.requires_grad_(stage != 2)
        self.model.step.requires_grad_(stage != 1)

    def _start_stage_two(self) -> None:
        """F is final: from now on G trains on (and the EMA keeps) F's averaged weights."""
        if self.ema is not None:
            first = {k[len("first."):]: v for k, v in self.ema.shadow.items() if k.startswith("first.")}
            self.model.first.load_state_dict(first)
        self.best = self.best_step = None  # stage 2 is scored as the whole optimiser, not comparable to stage 1
        self.log(f"step {self.step}: Golf stage 2, F frozen, training G")

    def checkpoint(self, elapsed: float) -> None:
        """The state to resume from (with ``elapsed``, the run's training seconds so far)
        and last.safetensors."""
        if not self.dist.is_main:
            return
        save_state(self.state_path, self._modules(), self._optimizers(), self.ema, self.step,
                   {"best": self.best, "best_step": self.best_step, "metrics": self.metrics, "elapsed_s": elapsed})
        self.save("last.safetensors", self.metrics)

    def train(
        self,
        data: TrainingData,
        progress: Callable[[int, int, dict], None] | None = None,
        until: int | None = None,
        stop_requested: Callable[[], bool] = lambda: False,
        time_limit: float | None = None,
    ) -> dict[str, float]:
        """Train to ``recipe.steps`` (or pause after step ``until``, checkpointed, to
        resume later with the same schedule).

        ``stop_requested`` is polled between steps (a signal handler sets it): the
        run then checkpoints the finished step and raises :class:`TrainingInterrupted`,
        so a resumed run continues exactly where this one stopped.

        ``time_limit``: seconds this call may train (``restore train --time-limit`` less
        what the command spent before: a scheduler's wall time, a lent GPU's budget). Before each step after the first, the
        run pauses as at ``until`` (checkpointed, ``paused at step ...``) when the step,
        at this call's mean pace, and the validation pass due with it would end past the
        limit: it ends inside the limit rather than be killed mid-step.
        """
        recipe = self.recipe
        stop = recipe.steps if until is None else min(until, recipe.steps)
        main = self.dist.is_main
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if main:
            (self.run_dir / "recipe.json").write_text(json.dumps(config_to_dict(recipe), indent=2))
            (self.run_dir / "data.json").write_text(json.dumps(data.summary, indent=2))
        run_log = RunLog(self.run_dir, self.step, writes=main, tensorboard=self.tensorboard)
        use_amp = self.autocast_dtype is not None
        amp_dtype = self.autocast_dtype or torch.bfloat16  # inert when use_amp is False
        scaler = torch.amp.GradScaler(self.device.type, enabled=amp_dtype == torch.float16)
        self.model.train()
        start = time.time() - self.seconds_before  # the run's start, had it never stopped
        window_loss, window_count, window_start = 0.0, 0, time.time()
        pace = Pace(time_limit, self.step)
        checkpointed = self.step
        prefetcher = (BatchPrefetcher(data.sampler, recipe.seed, recipe.batch_size, self.dist.rank, self.step, self.data_workers)
                      if self.data_workers > 0 and self.step < stop else None)
        if prefetcher is not None:
            self.log(f"batches drawn ahead by {self.data_workers} worker processes")
        try:
            while self.step < stop:
                if self._any_rank(stop_requested()):
                    self.checkpoint(time.time() - start)
                    raise TrainingInterrupted(self.step)
                validates = bool(data.validation) and ((self.step + 1) % recipe.val_every == 0 or self.step + 1 == recipe.steps)
                if self._any_rank(pace.no_room_for_a_step(self.step, validates)):
                    if checkpointed != self.step:
                        self.checkpoint(time.time() - start)
                    break
                if prefetcher is not None:
                    try:
                        degraded_np, clean_np = prefetcher.batch(self.step)
                    except RuntimeError as exc:
                        raise TrainingError(str(exc)) from None
                else:
                    degraded_np, clean_np = data.sampler.batch(recipe.seed, self.step, recipe.batch_size, self.dist.rank)
                degraded = torch.from_numpy(degraded_np).to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
                clean = torch.from_numpy(clean_np).to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
                stage = recipe.stage_at(self.step)[0]
                if stage == 2 and self.step == recipe.stages[0]:
                    self._start_stage_two()
                self._enter_stage(stage)
                lr = recipe.lr_at(self.step)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                pretraining = self.step < recipe.pretrain_steps
                if pretraining:
                    degraded = clean  # reconstruction pre-training: learn to autoencode clean images first
                adversarial = self.discriminator is not None and not pretraining
                with torch.autocast(self.device.type, dtype=amp_dtype, enabled=use_amp):
                    if adversarial:
                        restored = training_forward(self.model, degraded, clean, recipe)
                        loss = lsgan_generator_loss(self.discriminator(degraded, restored)) + recipe.adversarial_l1_weight * F.l1_loss(restored, clean)
                    else:
                        loss = restoration_loss(self.model, degraded, clean, recipe, stage, self.perceptual)
                if not torch.isfinite(loss):
                    if self.step == 0:  # no update made yet: nothing the schedule could fix
                        raise TrainingError(f"loss is {loss.item()} at the first step: the model's weights"
                                            f"{' (--init ' + recipe.init + ')' if recipe.init else ''} or the data give no finite loss")
                    if not self.state_path.exists():
                        raise TrainingError(f"loss became {loss.item()} at step {self.step}, before the first checkpoint; stopped: "
                                            "start again with a lower --lr or with grad_clip set")
                    raise TrainingError(
                        f"loss became {loss.item()} at step {self.step}; stopped. The last good checkpoint "
                        f"({self.state_path}) is unchanged: resume with a lower --lr or with grad_clip set"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                average_gradients(self.model, self.dist)
                if recipe.grad_clip > 0:
                    scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), recipe.grad_clip)
                scaler.step(self.optimizer)
                if adversarial:
                    self._discriminator_step(degraded, clean, restored.detach(), lr, scaler, amp_dtype, use_amp)
                scaler.update()
                if self.ema is not None:
                    self.ema.update(self.model, self.step - recipe.stage_at(self.step)[1])
                self.step += 1
                window_loss += loss.item()
                window_count += 1
                row_metrics: dict = {}
                if main and data.validation and (self.step % recipe.val_every == 0 or self.step == recipe.steps):
                    validation_began = time.monotonic()
                    shown = VALIDATION_IMAGES_SHOWN if self.tensorboard else 0
                    measured, restored_images = evaluate(self._eval_model(), data.validation, self.device, self.multiple, shown, self.memory_format)
                    self.metrics = {**measured, "step": self.step}
                    row_metrics = self.metrics
                    run_log.images(self.step, restored_images, data.validation)
                    score = float(np.mean([v for k, v in self.metrics.items() if k.endswith("/psnr_y")]))
                    if self.best is None or score > self.best:
                        self.best, self.best_step = score, self.step
                        self.save("best.safetensors", self.metrics)
                    self.log(f"step {self.step}: " + ", ".join(f"{k} {v:.3f}" for k, v in self.metrics.items() if k != "step"))
                    pace.validated(time.monotonic() - validation_began)
                if self.step % recipe.checkpoint_every == 0 or self.step in (stop, recipe.steps) or row_metrics:
                    writing_began = time.monotonic()
                    self.checkpoint(time.time() - start)
                    checkpointed = self.step
                    pace.checkpointed(time.monotonic() - writing_began)
                if self.step % 50 == 0 or row_metrics or self.step == recipe.steps:
                    elapsed = time.time() - window_start
                    run_log.row(self.step, window_loss / max(window_count, 1), lr, window_count * recipe.batch_size / max(elapsed, 1e-9),
                                time.time() - start, row_metrics)
                    if progress:
                        progress(self.step, recipe.steps, {"loss": window_loss / max(window_count, 1), "lr": lr})
                    window_loss, window_count, window_start = 0.0, 0, time.time()
        finally:
            run_log.close()
            self.seconds_before = time.time() - start
            if prefetcher is not None:
                prefetcher.close()
        if self.dist.enabled:
            if not weights_agree(self.model, self.dist):
                raise TrainingError(f"ranks hold different weights at step {self.step}: data-parallel training went out of step")
            self.log(f"weights identical on {self.dist.world_size} ranks at step {self.step}")
        if self.step < recipe.steps:
            why = "time limit reached: " if pace.ran_out else ""
            self.log(f"{why}paused at step {self.step} of {recipe.steps}; continue with: {resume_command(self.run_dir)}")
            return self.metrics
        if main and getattr(self.model, "takes_noise_level", False):
            images = calibration_images(data.sampler)
            if not images:
                self.log(f"no noise calibration: no clean-only training image of {MIN_CALIBRATION_SIDE}x{MIN_CALIBRATION_SIDE} pixels "
                         "or more (--sigma auto reads levels from the image alone; restore train --calibrate adds the table later)")
            else:
                started = time.time()
                self.noise_calibration = measure_noise_calibration(self._eval_model(), images, device=self.device)
                self.log(
                    f"noise calibration for --sigma auto on {len(images)} clean training images ({time.time() - started:.0f} s): "
                    + ", ".join(f"{residual:.1f}->{level:.1f}" for residual, level in self.noise_calibration)
                )
        final = self.save("model.safetensors", self.metrics)
        self.log(f"saved {final}")
        return self.metrics
