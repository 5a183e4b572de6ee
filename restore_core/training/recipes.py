"""Training recipes: typed configs, and the explicit table of shipped recipes.

A recipe says everything needed to reproduce a model: architecture and config,
degradation, optimiser and schedule, patch and batch size, steps. It is stored
verbatim in every checkpoint it produces. Users start from a named recipe and
override fields from a TOML/JSON file or ``--set key=value``.
"""

from __future__ import annotations

import json
import math
import shlex
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from restore_core.configs import ConfigError, config_from_dict, did_you_mean
from restore_core.degradations import SINGLE_DEGRADATIONS
from restore_core.presets import GOLF_FAST, INFOFLOW_DEHAZE, INFOFLOW_DENOISE, INFOFLOW_S, TAYLOR_DERAIN, UNET_S
from restore_core.tasks import check_model_task


def _require(where: str, checks: dict[str, tuple[Any, bool, str]]) -> None:
    """Raise ConfigError for the first field whose check failed: ``name -> (value, ok, what it must be)``."""
    for field_name, (value, ok, rule) in checks.items():
        if not ok:
            raise ConfigError(f"{where}: {field_name} must be {rule}, got {value!r}")


SCHEDULES = ("step", "cosine")


def scheduled_lr(lr: float, step: int, length: int, schedule: str = "step", milestones: tuple[float, ...] = (),
                 gamma: float = 1.0, min_lr: float = 0.0, warmup_steps: int = 0) -> float:
    """The learning rate at ``step`` (0-based) of a stage ``length`` steps long.

    The first ``warmup_steps`` climb linearly to ``lr``: ``lr * (step + 1) / warmup_steps``.
    Then ``step``: ``lr * gamma^k``, k the ``milestones`` (fractions of ``length``)
    passed (the Taylor paper: x0.2 at 30, 50 and 80 %); or ``cosine``: from ``lr`` down
    to ``min_lr`` along half a cosine over the steps after the warm-up,
    ``min_lr + (lr - min_lr) * (1 + cos(pi * t)) / 2`` with t from 0 to 1 (SGDR,
    Loshchilov & Hutter 2017, without restarts; Restormer's and NAFNet's schedule)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "cosine":
        t = (step - warmup_steps) / max(length - warmup_steps - 1, 1)
        return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * min(t, 1.0))) / 2
    passed = sum(step >= round(m * length) for m in milestones)
    return lr * gamma**passed


@dataclass(frozen=True)
class DataConfig:
    """Where training and validation images come from."""

    paired: tuple[str, ...] = ()  # folders with input/ + target/ (or rainy/ + norain/, ...)
    clean: tuple[str, ...] = ()  # folders of clean images, degraded on the fly
    builtin_photographs: bool = False  # add scikit-image's bundled photographs as clean images
    paired_fraction: float = 0.5  # share of each batch from paired folders when both kinds exist
    colour_fraction: float | None = None  # share of clean-only patches from colour images (None: by image count)
    channel_shuffle: bool = False  # permute the RGB channels of colour clean patches at random
    transplant_fraction: float = 0.0  # share of clean-only patches degraded by a real pair's residual instead
    quarter_turns: bool = True  # augment with 90-degree rotations; False: flips and half turns only (rain)
    holdout_every: int = 0  # hold out every k-th pair of each paired folder (not trained on)
    validation: tuple[str, ...] = ()  # paired folders for validation PSNR
    exclude_near_duplicates_of: tuple[str, ...] = ()  # paired/clean folders kept out of training

    def __post_init__(self) -> None:
        _require("recipe data", {
            "paired_fraction": (self.paired_fraction, 0 <= self.paired_fraction <= 1, "in [0, 1]"),
            "colour_fraction": (self.colour_fraction, self.colour_fraction is None or 0 <= self.colour_fraction <= 1, "in [0, 1] or null"),
            "transplant_fraction": (self.transplant_fraction, 0 <= self.transplant_fraction <= 1, "in [0, 1]"),
            "holdout_every": (self.holdout_every, self.holdout_every >= 0, ">= 0 (0 = none held out)"),
        })


@dataclass(frozen=True)
class Recipe:
    name: str
    task: str
    architecture: str
    model: dict[str, Any]
    degradation: str = "rain"  # synthetic degradation for clean images: rain, noise, motion-blur, haze
    degradation_options: dict[str, Any] = field(default_factory=dict)  # overrides of its config (e.g. RainConfig)
    init: str = ""  # start from this checkpoint's weights (fine-tuning); same architecture and config
    steps: int = 20000
    batch_size: int = 4
    patch_size: int = 100
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "step"  # step (milestones, gamma) or cosine (lr down to min_lr): scheduled_lr
    milestones: tuple[float, ...] = (0.3, 0.5, 0.8)  # fractions of ``steps`` (step schedule)
    gamma: float = 0.2  # lr factor at each milestone (step schedule)
    min_lr: float = 0.0  # where the cosine schedule ends
    warmup_steps: int = 0  # linear warm-up to lr over the first steps of each stage (0 = none)
    mapping_loss_weight: float = 1.0  # lambda of Eq. 21 (Taylor models)
    loss: str = "l1"  # pixel loss: l1 or mse (Taylor models always use Eq. 21)
    ssim_weight: float = 0.0  # adds w * (1 - SSIM on luma) to the pixel loss (not in the papers; 0 = off)
    noise_level_known_fraction: float = 0.5  # models with a noise-level input: share of each batch told its level
    perceptual_weight: float = 0.0  # lambda of L_c + lambda * L_p (Golf paper: 5e-6)
    perceptual_weights: str = ""  # VGG-11-BN weights file for L_p; empty = pixel loss alone
    stages: tuple[int, ...] = ()  # Golf models: (steps training F, steps training G with F frozen); sum = steps
    train_iterations: int = 5  # N taps of G in Eq. 4 during training (paper: 5; 3 at test)
    adversarial: bool = False  # LSGAN with a conditional PatchGAN (SPEC §2.2); False = pure pixel loss
    adversarial_l1_weight: float = 100.0  # lambda of L_G = E[(D(x, G(x)) - 1)^2] + lambda * L1
    discriminator: dict[str, Any] = field(default_factory=dict)  # PatchGAN config
    discriminator_lr: float = 0.0  # 0 = same as lr
    pretrain_steps: int = 0  # first steps reconstruct clean images (autoencoding) before the task
    grad_clip: float = 0.0  # 0 = off
    ema_decay: float = 0.999  # 0 = off
    val_every: int = 500
    checkpoint_every: int = 250
    seed: int = 0
    amp: bool = True  # mixed precision on CUDA (bf16 where supported)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(int(s) for s in self.stages))
        try:
            check_model_task(self.task)
        except ValueError as exc:
            raise ConfigError(f"recipe {self.name}: {exc}") from None
        _require(f"recipe {self.name}", {
            "steps": (self.steps, self.steps >= 1, ">= 1"),
            "batch_size": (self.batch_size, self.batch_size >= 1, ">= 1"),
            "patch_size": (self.patch_size, self.patch_size >= 1, ">= 1"),
            "lr": (self.lr, self.lr > 0, "> 0"),
            "discriminator_lr": (self.discriminator_lr, self.discriminator_lr >= 0, ">= 0 (0 = lr)"),
            "gamma": (self.gamma, self.gamma > 0, "> 0"),
            "grad_clip": (self.grad_clip, self.grad_clip >= 0, ">= 0 (0 = off)"),
            "ema_decay": (self.ema_decay, 0 <= self.ema_decay < 1, "in [0, 1) (0 = off)"),
            "val_every": (self.val_every, self.val_every >= 1, ">= 1"),
            "checkpoint_every": (self.checkpoint_every, self.checkpoint_every >= 1, ">= 1"),
            "pretrain_steps": (self.pretrain_steps, self.pretrain_steps >= 0, ">= 0"),
            "betas": (list(self.betas), len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "two numbers in [0, 1)"),
            "milestones": (list(self.milestones), all(0 <= m <= 1 for m in self.milestones), "fractions of steps, in [0, 1]"),
            "seed": (self.seed, self.seed >= 0, ">= 0"),
            "schedule": (self.schedule, self.schedule in SCHEDULES, " or ".join(SCHEDULES)),
            "min_lr": (self.min_lr, 0 <= self.min_lr <= self.lr, f">= 0 and at most lr ({self.lr})"),
            "warmup_steps": (self.warmup_steps, 0 <= self.warmup_steps < self.steps, f">= 0 and fewer than steps ({self.steps})"),
        })
        if self.stages and (len(self.stages) != 2 or sum(self.stages) != self.steps or min(self.stages) < 0):
            raise ConfigError(f"recipe {self.name}: stages must be two step counts (F, G) summing to steps={self.steps}, got {self.stages}")
        if self.pretrain_steps and self.pretrain_steps >= self.steps:
            raise ConfigError(f"recipe {self.name}: its first {self.pretrain_steps} steps (pretrain_steps) reconstruct clean images, "
                              f"so in {self.steps} steps the model would never see a degraded one: train longer than "
                              f"{self.pretrain_steps} steps, or --set pretrain_steps=N with N < {self.steps} (0 = no pre-training)")
        if self.loss not in ("l1", "mse"):
            raise ConfigError(f"recipe {self.name}: loss must be l1 or mse, got {self.loss!r}")
        if self.ssim_weight < 0:
            raise ConfigError(f"recipe {self.name}: ssim_weight must be >= 0, got {self.ssim_weight}")
        if not 0 <= self.noise_level_known_fraction <= 1:
            raise ConfigError(f"recipe {self.name}: noise_level_known_fraction must be in [0, 1], got {self.noise_level_known_fraction}")

    def stage_at(self, step: int) -> tuple[int, int, int]:
        """``(stage, first step of the stage, steps in the stage)``; stage 0 = the
        whole model, 1 = Golf F alone, 2 = Golf G with F frozen."""
        if not self.stages:
            return 0, 0, self.steps
        if step < self.stages[0]:
            return 1, 0, self.stages[0]
        return 2, self.stages[0], self.stages[1]

    def lr_at(self, step: int) -> float:
        """The learning rate at ``step``, scheduled within its stage (:func:`scheduled_lr`)."""
        _, start, length = self.stage_at(step)
        return scheduled_lr(self.lr, step - start, length, self.schedule, self.milestones, self.gamma, self.min_lr, self.warmup_steps)

    def with_steps(self, steps: int) -> "Recipe":
        """This recipe with ``steps`` in all; Golf stages keep their proportions."""
        if not self.stages:
            return replace(self, steps=steps)
        first = round(steps * self.stages[0] / max(sum(self.stages), 1))
        return replace(self, steps=steps, stages=(first, steps - first))

    def lengthens(self, earlier: "Recipe") -> bool:
        """Whether this recipe is ``earlier`` with more steps and nothing else changed,
        its learning rate equal at every one of ``earlier``'s steps: a run of
        ``earlier`` resumed under this recipe is then the same as one trained under it
        from the start. True for a constant rate (``milestones = []``); false in
        general for milestones, which are fractions of ``steps`` and move with it, and
        for Golf stages, whose boundary moves."""
        if self.stages or earlier.stages or self.steps <= earlier.steps:
            return False
        if replace(earlier, steps=self.steps) != self:
            return False
        return all(self.lr_at(step) == earlier.lr_at(step) for step in range(earlier.steps))


def _infoflow(name: str, task: str, model: dict[str, Any], degradation: str, adversarial: bool, data: DataConfig) -> Recipe:
    """Information-flow recipes (SPEC §2.2). ``adversarial``: the paper's LSGAN
    (lambda = 100 x L1, Adam 2e-4 with betas (0.5, 0.999), reconstruction
    pre-training first); otherwise the fidelity-first pure-L1 form the shipped
    models use (Adam 1e-3, a short pre-training)."""
    if adversarial:
        return Recipe(name=name, task=task, architecture="infoflow", model=model, degradation=degradation, loss="l1",
                      adversarial=True, adversarial_l1_weight=100.0, lr=2e-4, betas=(0.5, 0.999), milestones=(0.5, 0.75),
                      gamma=0.5, pretrain_steps=1000, steps=20000, batch_size=8, patch_size=128, ema_decay=0.0, data=data)
    return Recipe(name=name, task=task, architecture="infoflow", model=model, degradation=degradation, loss="l1",
                  lr=5e-4, milestones=(0.5, 0.75, 0.9), gamma=0.3, grad_clip=1.0, pretrain_steps=100,
                  steps=3000, batch_size=8, patch_size=128, data=data)


@dataclass(frozen=True)
class ADMSRecipe:
    """Recipe of an ADMS all-in-one model (SPEC §2.3), run as stages by
    :func:`restore_core.training.adms.train_adms`:

    1. the unified model θ_um on every degradation (one drawn per patch);
    2. one copy fine-tuned from θ_um per degradation, θ_d;
    3. FAIG between θ_um and θ_d on ``faig_images`` patches of d minus the other
       degradations' patches, ``faig_steps`` path steps; the top ``top_fraction``
       of filters is M_d and only Δθ_d ⊙ M_d is kept;
       with ``masked_finetune_steps`` > 0, the filters M_d are then trained again on d
       alone, θ_um frozen around them, starting from θ_d's values (FAIG's "re-train the
       discovered filters"): Δθ_d ⊙ M_d is what this trained, not a cut from θ_d;
    4. the degradation classifier (cross-entropy on synthetic patches).

    With ``unified_init`` (a checkpoint of the base architecture, such as an earlier
    run's ``unified/model.safetensors``, or an ADMS checkpoint, whose θ_um is taken)
    stage 1 starts from its weights instead of a
    fresh initialisation: a second cycle of the schedule, at ``lr``, for a unified model
    trained further. With ``init`` (an ADMS checkpoint) stages 1-3 are that model's, and only the
    classifier is trained: a new detector for an existing model. The classifier's
    patches can favour colour photographs (``classifier_colour_fraction``, with
    ``classifier_channel_shuffle``), and ``classifier_transplant_fraction`` of the
    ``paired_degradation`` patches carry a real pair's residual (``--data`` pairs, such
    as Rain100H's streak layers) laid over a clean patch instead of the synthetic one.
    ``classifier_photo_fraction`` of them are instead crops of real photographs of that
    degradation that have no clean version (``classifier_photos`` folders: a user's own
    rainy photos, SemiIRR's real rain).
    """

    name: str = "adms"
    task: str = "all"
    base_architecture: str = "unet"
    base: dict[str, Any] = field(default_factory=lambda: dict(UNET_S))
    degradations: tuple[str, ...] = ("rain", "motion-blur", "noise", "haze")
    unified_steps: int = 3000
    finetune_steps: int = 600
    batch_size: int = 8
    patch_size: int = 128
    lr: float = 5e-4
    finetune_lr: float = 2e-4
    faig_steps: int = 32
    faig_images: int = 8
    top_fraction: float = 0.05
    masked_finetune_steps: int = 0  # stage 3b per degradation; 0: Δθ_d ⊙ M_d cut from θ_d as it is (versions 1-2)
    # ClassifierConfig fields (models/adms.py); empty = its defaults. A plain dict, like
    # ``base``, so that recipes (and `restore train --help`) load without torch.
    classifier: dict[str, Any] = field(default_factory=dict)
    classifier_steps: int = 1000
    classifier_batch_size: int = 32
    classifier_lr: float = 1e-3
    classifier_colour_fraction: float | None = None  # share of colour photographs among clean patches; None: drawn uniformly
    classifier_channel_shuffle: bool = False
    classifier_transplant_fraction: float = 0.0
    classifier_photos: tuple[str, ...] = ()  # folders of real photographs of paired_degradation, no targets needed
    classifier_photo_fraction: float = 0.0
    # Per degradation, overrides of its config for the classifier's synthetic patches only
    # ({"rain": {"sheet_probability": 0.3}}: some rain patches carry a sheet, as SemiIRR's do).
    classifier_degradation_options: dict[str, Any] = field(default_factory=dict)
    paired_degradation: str = "rain"  # the degradation whose real residuals the --data pairs hold
    init: str | None = None  # an ADMS checkpoint: keep its stages 1-3, train the classifier only
    # With init and classifier.clean_class: keep init's classifier too, and store the one
    # trained here beside it as the clean-aware classifier routing asks on request.
    keep_classifier: bool = False
    unified_init: str | None = None  # a base-architecture (or ADMS: its θ_um) checkpoint stage 1 starts from (None: fresh weights)
    seed: int = 0
    data: DataConfig = field(default_factory=lambda: DataConfig(builtin_photographs=True))

    def __post_init__(self) -> None:
        _require(f"recipe {self.name}", {
            "unified_steps": (self.unified_steps, self.unified_steps >= 1, ">= 1"),
            "finetune_steps": (self.finetune_steps, self.finetune_steps >= 1, ">= 1"),
            "classifier_steps": (self.classifier_steps, self.classifier_steps >= 1, ">= 1"),
            "batch_size": (self.batch_size, self.batch_size >= 1, ">= 1"),
            "classifier_batch_size": (self.classifier_batch_size, self.classifier_batch_size >= 1, ">= 1"),
            "patch_size": (self.patch_size, self.patch_size >= 1, ">= 1"),
            "lr": (self.lr, self.lr > 0, "> 0"),
            "finetune_lr": (self.finetune_lr, self.finetune_lr > 0, "> 0"),
            "classifier_lr": (self.classifier_lr, self.classifier_lr > 0, "> 0"),
            "faig_steps": (self.faig_steps, self.faig_steps >= 1, ">= 1"),
            "faig_images": (self.faig_images, self.faig_images >= 1, ">= 1"),
            "top_fraction": (self.top_fraction, 0 < self.top_fraction <= 1, "in (0, 1]"),
            "masked_finetune_steps": (self.masked_finetune_steps, self.masked_finetune_steps >= 0, ">= 0 (0 = none)"),
            "classifier_colour_fraction": (self.classifier_colour_fraction,
                                           self.classifier_colour_fraction is None or 0 <= self.classifier_colour_fraction <= 1, "in [0, 1] or null"),
            "classifier_transplant_fraction": (self.classifier_transplant_fraction, 0 <= self.classifier_transplant_fraction <= 1, "in [0, 1]"),
            "classifier_photo_fraction": (self.classifier_photo_fraction, 0 <= self.classifier_photo_fraction <= 1, "in [0, 1]"),
            "degradations": (list(self.degradations), bool(self.degradations) and len(set(self.degradations)) == len(self.degradations)
                             and set(self.degradations) <= set(SINGLE_DEGRADATIONS), f"one or more of {', '.join(SINGLE_DEGRADATIONS)}, each once"),
            "paired_degradation": (self.paired_degradation, self.paired_degradation in self.degradations, f"one of {', '.join(self.degradations)}"),
            "classifier_degradation_options": (self.classifier_degradation_options,
                                               set(self.classifier_degradation_options) <= set(self.degradations)
                                               and all(isinstance(v, dict) for v in self.classifier_degradation_options.values()),
                                               f"a table of {', '.join(self.degradations)} (each a table of its config's fields)"),
            "unified_init": (self.unified_init, self.unified_init is None or self.init is None,
                             "unset with --init (which keeps an ADMS model's stages 1-3 and trains no unified model)"),
            "keep_classifier": (self.keep_classifier, not self.keep_classifier or bool(self.classifier.get("clean_class")),
                                "true only with classifier.clean_class = true (the classifier trained, with its clean class, is "
                                "stored beside the --init model's own)"),
        })

    @property
    def steps(self) -> int:
        return self.unified_steps + len(self.degradations) * (self.finetune_steps + self.masked_finetune_steps) + self.classifier_steps

    def with_steps(self, steps: int) -> "ADMSRecipe":
        """``steps`` for the unified model; fine-tuning and the classifier scale with it."""
        return replace(self, unified_steps=steps, finetune_steps=max(1, steps // 5), classifier_steps=max(1, steps // 3))

    def unified_recipe(self) -> Recipe:
        """Stage 1 as a plain recipe: L1, Adam, x0.3 at 50/75/90 %, EMA; from ``unified_init``'s weights if set."""
        return Recipe(name=f"{self.name}:unified", task="all", architecture=self.base_architecture, model=self.base,
                      degradation="mixed", degradation_options={"degradations": list(self.degradations)},
                      steps=self.unified_steps, batch_size=self.batch_size, patch_size=self.patch_size, lr=self.lr,
                      milestones=(0.5, 0.75, 0.9), gamma=0.3, grad_clip=1.0, seed=self.seed, data=self.data,
                      init=self.unified_init)

    def finetune_recipe(self, degradation: str, init: str) -> Recipe:
        """Stage 2 for one degradation: θ_d fine-tuned from θ_um at a lower rate."""
        return replace(self.unified_recipe(), name=f"{self.name}:finetune-{degradation}", degradation=degradation,
                       degradation_options={}, init=init, steps=self.finetune_steps, lr=self.finetune_lr, seed=self.seed + 1)


# The paper's recipe (SPEC §2.1): Adam 1e-3, batch 4, 100x100 patches, lr x0.2 at
# 30/50/80 % of training, lambda = 1, order 3. Steps are scaled to a CPU budget, and
# patches are 96x96: the U-Net's 4 downsamplings take sides in multiples of 16.
RECIPES: dict[str, Recipe | ADMSRecipe] = {
    "taylor-derain": Recipe(
        name="taylor-derain",
        task="derain",
        architecture="taylor",
        model=TAYLOR_DERAIN,
        degradation="rain",
        steps=20000,
        batch_size=4,
        patch_size=96,
    ),
    # Golf paper (SPEC §2.4): MSE + 5e-6 x VGG-11-BN perceptual, Adam (0.9, 0.999),
    # F first, then G with F frozen on Eq. 4 with N = 5 taps. Scaled to a CPU budget:
    # the fast preset (U-Net F, small U-Net G), 128-px patches, batch 8. The paper's
    # lr 1e-3 diverged here (MSE 0.006 -> 1200 at step ~550 with the U-Net F): 4e-4.
    "golf-deblur": Recipe(
        name="golf-deblur",
        task="deblur",
        architecture="golf",
        model=GOLF_FAST,
        degradation="motion-blur",
        loss="mse",
        perceptual_weight=5e-6,
        steps=4500,
        stages=(3500, 1000),
        train_iterations=5,
        batch_size=8,
        patch_size=128,
        lr=4e-4,
        milestones=(0.5, 0.75, 0.9),
        gamma=0.3,
        grad_clip=1.0,
        checkpoint_every=250,
        val_every=500,
        data=DataConfig(builtin_photographs=True),
    ),
    # The shipped denoiser's shape, and the sigma range of its last two runs (0-50:
    # the clean end keeps light noise from being over-smoothed); its card has the
    # history (runs 1-5 were infoflow-s, ``--set model.refine=0``, sigma 5-50).
    "infoflow-denoise": replace(
        _infoflow("infoflow-denoise", "denoise", INFOFLOW_DENOISE, "noise", False, DataConfig(builtin_photographs=True)),
        degradation_options={"sigma": [0, 50]},
    ),
    "infoflow-denoise-gan": _infoflow("infoflow-denoise-gan", "denoise", INFOFLOW_S, "noise", True, DataConfig(builtin_photographs=True)),
    "infoflow-dehaze": _infoflow("infoflow-dehaze", "dehaze", INFOFLOW_DEHAZE, "haze", False, DataConfig(builtin_photographs=True)),
    "infoflow-dehaze-gan": _infoflow("infoflow-dehaze-gan", "dehaze", INFOFLOW_DEHAZE, "haze", True, DataConfig(builtin_photographs=True)),
    "adms": ADMSRecipe(),
}


def _read_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix.lower() == ".json":
        return json.loads(text)
    return tomllib.loads(text)


def load_recipe(name_or_path: str) -> Recipe | ADMSRecipe:
    """A recipe from the table, or from a TOML/JSON file.

    A file may name a base recipe with ``base = "taylor-derain"`` and override any
    field of it; without ``base`` it must give every required field (as the
    output of ``restore train --print-recipe`` does).
    """
    if name_or_path in RECIPES:
        return RECIPES[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        if path.suffix.lower() in (".toml", ".json"):
            raise ConfigError(f"{path}: no such recipe file")
        raise ConfigError(f"unknown recipe {name_or_path!r}{did_you_mean(name_or_path, RECIPES)}; known: {', '.join(RECIPES)} (or a .toml/.json file)")
    try:
        data = _read_file(path)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    # ``base = "<recipe>"`` names a table recipe to start from; a table ``base`` is the
    # ADMS recipe's own field (its base network's config), not a recipe name.
    base_name = data.pop("base") if isinstance(data.get("base"), str) else None
    if base_name is not None:
        if base_name not in RECIPES:
            raise ConfigError(f"{path}: unknown base recipe {base_name!r}{did_you_mean(base_name, RECIPES)}; known: {', '.join(RECIPES)}")
        from restore_core.configs import config_to_dict

        merged = config_to_dict(RECIPES[base_name])
        for key, value in data.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        data = merged
        return config_from_dict(type(RECIPES[base_name]), data, str(path))
    kind = ADMSRecipe if "base_architecture" in data else Recipe  # a whole recipe, as --print-recipe writes it
    try:
        return config_from_dict(kind, data, str(path))
    except ConfigError as exc:
        if "missing key(s)" not in str(exc):
            raise
        raise ConfigError(f"{exc}: a recipe file gives every field (as 'restore train --recipe NAME --print-recipe' writes one), "
                          f"or starts from a table recipe with base = \"NAME\" ({', '.join(RECIPES)}) and gives what changes") from None


def classifier_config(recipe: ADMSRecipe):
    """An ADMS recipe's classifier settings as the model's ``ClassifierConfig``,
    validated (the recipe keeps them as a plain dict)."""
    from restore_core.models.adms import ClassifierConfig

    return config_from_dict(ClassifierConfig, recipe.classifier, f"recipe {recipe.name}: classifier")


def check_recipe(recipe: Recipe | ADMSRecipe) -> None:
    """Raise ConfigError for what a recipe's fields hold that its code would refuse: the
    model's (and discriminator's) config, the degradation and its options, an ADMS
    recipe's classifier and base network. Training refuses them too, but the degradation
    only once every training image is read; ``--print-recipe`` shows only recipes that pass."""
    from restore_core.degradations.table import degradation_config
    from restore_core.models import build_model

    def builds(architecture: str, config: dict, what: str) -> None:
        try:
            build_model(architecture, config)
        except ConfigError as exc:
            raise ConfigError(f"recipe {recipe.name}: {what}: {exc}") from None
        except ValueError as exc:  # a config its network refuses (order -1, ...)
            raise ConfigError(f"recipe {recipe.name}: {what}: {exc}") from None

    if isinstance(recipe, ADMSRecipe):
        classifier_config(recipe)
        builds(recipe.base_architecture, recipe.base, "base")
        for name, options in recipe.classifier_degradation_options.items():
            try:
                degradation_config(name, options)
            except ConfigError as exc:
                raise ConfigError(f"recipe {recipe.name}: classifier_degradation_options: {exc}") from None
        return
    builds(recipe.architecture, recipe.model, "model")
    if recipe.adversarial:
        builds("patchgan", recipe.discriminator, "discriminator")
    try:
        degradation_config(recipe.degradation, recipe.degradation_options)
    except ConfigError as exc:
        raise ConfigError(f"recipe {recipe.name}: {exc}") from None


def load_recorded_recipe(run_dir: Path, kind: type) -> Recipe | ADMSRecipe | None:
    """The recipe a run folder was trained with (its ``recipe.json``, every field
    written out), or None when the folder has none. ``kind`` is the recipe class."""
    path = Path(run_dir) / "recipe.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config_from_dict(kind, data, str(path))


def resume_command(run_dir: Path) -> str:
    """The command that continues the run in ``run_dir``: its recipe.json holds the rest."""
    return f"restore train --out {shlex.quote(str(run_dir))} --resume"


def with_data(recipe: Recipe, **changes: Any) -> Recipe:
    return replace(recipe, data=replace(recipe.data, **changes))
