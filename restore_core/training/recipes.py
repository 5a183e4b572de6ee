"""Training recipes: typed configs, and the explicit table of shipped recipes.

A recipe says everything needed to reproduce a model: architecture and config,
degradation, optimiser and schedule, patch and batch size, steps. It is stored
verbatim in every checkpoint it produces. Users start from a named recipe and
override fields from a TOML/JSON file or ``--set key=value``.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from restore_core.configs import ConfigError, config_from_dict
from restore_core.presets import TAYLOR_UNET


@dataclass(frozen=True)
class DataConfig:
    """Where training and validation images come from."""

    paired: tuple[str, ...] = ()  # folders with input/ + target/ (or rainy/ + norain/, ...)
    clean: tuple[str, ...] = ()  # folders of clean images, degraded on the fly
    builtin_photographs: bool = False  # add scikit-image's bundled photographs as clean images
    paired_fraction: float = 0.5  # share of each batch from paired folders when both kinds exist
    holdout_every: int = 0  # hold out every k-th pair of each paired folder (not trained on)
    validation: tuple[str, ...] = ()  # paired folders for validation PSNR
    exclude_near_duplicates_of: tuple[str, ...] = ()  # paired/clean folders kept out of training


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
    milestones: tuple[float, ...] = (0.3, 0.5, 0.8)  # fractions of ``steps``
    gamma: float = 0.2
    mapping_loss_weight: float = 1.0  # lambda of Eq. 21 (Taylor models)
    grad_clip: float = 0.0  # 0 = off
    ema_decay: float = 0.999  # 0 = off
    val_every: int = 500
    checkpoint_every: int = 250
    seed: int = 0
    amp: bool = True  # mixed precision on CUDA (bf16 where supported)
    data: DataConfig = field(default_factory=DataConfig)

    def lr_at(self, step: int) -> float:
        """Step schedule: ``lr * gamma^(milestones passed)`` (paper: x0.2 at 30/50/80 %)."""
        passed = sum(step >= round(m * self.steps) for m in self.milestones)
        return self.lr * self.gamma**passed


# The paper's recipe (SPEC §2.1): Adam 1e-3, batch 4, 100x100 patches, lr x0.2 at
# 30/50/80 % of training, lambda = 1, order 3. Steps are scaled to a CPU budget.
RECIPES: dict[str, Recipe] = {
    "taylor-derain": Recipe(
        name="taylor-derain",
        task="derain",
        architecture="taylor",
        model=TAYLOR_UNET,
        degradation="rain",
        steps=20000,
        batch_size=4,
        patch_size=100,
    ),
}


def _read_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix.lower() == ".json":
        return json.loads(text)
    return tomllib.loads(text)


def load_recipe(name_or_path: str) -> Recipe:
    """A recipe from the table, or from a TOML/JSON file.

    A file may name a base recipe with ``base = "taylor-derain"`` and override any
    field of it; without ``base`` it must give every required field.
    """
    if name_or_path in RECIPES:
        return RECIPES[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"unknown recipe {name_or_path!r}; known: {', '.join(RECIPES)} (or a .toml/.json file)")
    try:
        data = _read_file(path)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    base_name = data.pop("base", None)
    if base_name is not None:
        if base_name not in RECIPES:
            raise ConfigError(f"{path}: unknown base recipe {base_name!r}")
        from restore_core.configs import config_to_dict

        merged = config_to_dict(RECIPES[base_name])
        for key, value in data.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        data = merged
    return config_from_dict(Recipe, data, str(path))


def with_data(recipe: Recipe, **changes: Any) -> Recipe:
    return replace(recipe, data=replace(recipe.data, **changes))
