"""Model architectures, and the one explicit table that names them.

A checkpoint says which architecture it holds by a name in
:data:`ARCHITECTURES`; nothing else is ever instantiated from a file. Each entry
pairs a config dataclass with a builder, so ``build_model(name, config_dict)``
is the single place where a model comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from restore_core.configs import MAX_REPEATS, ConfigError, config_from_dict, did_you_mean, require_at_least, require_at_most
from restore_core.models.adms import ADMSNet, ClassifierConfig, DegradationClassifier
from restore_core.models.golf import GolfNet, GolfNetConfig, GolfOptimizer
from restore_core.models.infoflow import InfoFlowConfig, InfoFlowGenerator, PatchDiscriminator, PatchGANConfig
from restore_core.models.taylor import DerivativeConfig, DerivativeNet, TaylorNet
from restore_core.models.unet import UNet, UNetConfig


@dataclass(frozen=True)
class TaylorConfig:
    """A Taylor framework around any mapping architecture of this table."""

    mapping_architecture: str = "unet"
    mapping: dict[str, Any] = field(default_factory=dict)
    derivative: DerivativeConfig = DerivativeConfig()
    order: int = 3
    eq17_term: bool = False
    darken_only: bool = False  # output min(O, y): for degradations that only add light (rain)

    def __post_init__(self) -> None:
        require_at_least(self, 0, "order")
        require_at_most(self, MAX_REPEATS, "order")


def _build_taylor(config: TaylorConfig) -> TaylorNet:
    if config.mapping_architecture == "taylor":
        raise ConfigError("a Taylor model cannot wrap another Taylor model")
    mapping = build_model(config.mapping_architecture, config.mapping)
    return TaylorNet(mapping, DerivativeNet(config.derivative), config.order, config.eq17_term, config.darken_only)


@dataclass(frozen=True)
class GolfConfig:
    """The Golf Optimizer: F (first shot) and G (shared iterative step), each any
    architecture of this table. Defaults are the paper's (Table 1): GolfNet with
    f = 32 for F and f = 16 for G; N = 3 iterations at test (5 in training)."""

    first_architecture: str = "golf-net"
    first: dict[str, Any] = field(default_factory=lambda: {"filters": 32})
    step_architecture: str = "golf-net"
    step: dict[str, Any] = field(default_factory=lambda: {"filters": 16})
    iterations: int = 3

    def __post_init__(self) -> None:
        require_at_least(self, 0, "iterations")
        require_at_most(self, MAX_REPEATS, "iterations")


def _build_golf(config: GolfConfig) -> GolfOptimizer:
    if "golf" in (config.first_architecture, config.step_architecture):
        raise ConfigError("a Golf Optimizer cannot nest another Golf Optimizer")
    first = build_model(config.first_architecture, config.first)
    step = build_model(config.step_architecture, config.step)
    return GolfOptimizer(first, step, config.iterations)


@dataclass(frozen=True)
class ADMSConfig:
    """ADMS (SPEC §2.3) around any base architecture of this table: the unified
    model's architecture and config, the degradations it tells apart, the
    FAIG-selected filter indices kept per degradation (``filters[d][parameter]``)
    and the degradation classifier. ``clean_classifier`` (optional, this project's
    addition) is a second classifier, with a clean class, that routing may ask instead
    (``restore auto --leave-clean``): the paper's classifier keeps deciding the filter
    blend and the default routing."""

    base_architecture: str = "unet"
    base: dict[str, Any] = field(default_factory=dict)
    degradations: tuple[str, ...] = ("rain", "motion-blur", "noise", "haze")
    filters: dict[str, Any] = field(default_factory=dict)
    classifier: ClassifierConfig = ClassifierConfig()
    blend_temperature: float = 1.0  # ĉ ∝ p^(1/T): 1 = the paper's softmax, below 1 sharper (models.adms.sharpen)
    clean_classifier: ClassifierConfig | None = None

    def __post_init__(self) -> None:
        if not self.blend_temperature > 0:
            raise ConfigError(f"adms: blend_temperature must be above 0, got {self.blend_temperature}")
        if self.clean_classifier is not None and not self.clean_classifier.clean_class:
            raise ConfigError("adms: clean_classifier must have clean_class = true (it is asked whether an image is clean)")


def _build_adms(config: ADMSConfig) -> ADMSNet:
    from restore_core.attribution import filter_params

    if config.base_architecture == "adms":
        raise ConfigError("an ADMS model cannot wrap another ADMS model")
    base = build_model(config.base_architecture, config.base)
    axes = {p.name: p.axis for p in filter_params(base)}
    sizes = {p.name: p.filters for p in filter_params(base)}
    for degradation, per_layer in config.filters.items():
        if degradation not in config.degradations:
            raise ConfigError(f"adms: filters given for unknown degradation {degradation!r}")
        if not isinstance(per_layer, dict):
            raise ConfigError(f"adms: filters[{degradation!r}] must map layer names to index lists")
        for name, indices in per_layer.items():
            if name not in axes:
                raise ConfigError(f"adms: {name!r} is not a convolution weight of {config.base_architecture}")
            if not isinstance(indices, list) or not all(isinstance(i, int) and 0 <= i < sizes[name] for i in indices) or len(set(indices)) != len(indices):
                raise ConfigError(f"adms: filters[{degradation!r}][{name!r}] must be distinct indices below {sizes[name]}")
    classifier = DegradationClassifier(config.classifier, len(config.degradations))
    clean = DegradationClassifier(config.clean_classifier, len(config.degradations)) if config.clean_classifier else None
    return ADMSNet(base, classifier, config.degradations, config.filters, axes, config.blend_temperature, clean)


@dataclass(frozen=True)
class Architecture:
    config_class: type
    build: Callable[[Any], nn.Module]
    description: str


ARCHITECTURES: dict[str, Architecture] = {
    "unet": Architecture(UNetConfig, UNet, "compact residual U-Net (PixelShuffle upsampling)"),
    "taylor": Architecture(TaylorConfig, _build_taylor, "Deep Taylor's Approximations framework around a mapping net"),
    "golf-net": Architecture(GolfNetConfig, GolfNet, "the residual CNN of the Golf Optimizer (Fig. 6), F or G alone"),
    "infoflow": Architecture(InfoFlowConfig, InfoFlowGenerator, "pix2pix U-Net-N with InfoAccum and SubPixUpsamp (information-flow GAN generator)"),
    "patchgan": Architecture(PatchGANConfig, PatchDiscriminator, "5-layer PatchGAN discriminator conditioned on the input"),
    "golf": Architecture(GolfConfig, _build_golf, "Golf Optimizer: x0 = F(y), x_i = G(x_{i-1}) (blind deconvolution)"),
    "adms": Architecture(ADMSConfig, _build_adms, "ADMS all-in-one: unified model + classifier-weighted FAIG filter deltas"),
}


def parse_config(architecture: str, config: dict[str, Any]) -> Any:
    """Validate ``config`` against the architecture's dataclass."""
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {architecture!r}{did_you_mean(architecture, ARCHITECTURES)}; known: {', '.join(sorted(ARCHITECTURES))}")
    return config_from_dict(ARCHITECTURES[architecture].config_class, config, architecture)


def build_model(architecture: str, config: dict[str, Any]) -> nn.Module:
    """Instantiate ``architecture`` from a plain config dict (validated)."""
    parsed = parse_config(architecture, config)  # first: an unknown name is a ConfigError listing the known ones
    return ARCHITECTURES[architecture].build(parsed)


def build_skeleton(architecture: str, config: dict[str, Any]) -> nn.Module:
    """``architecture`` built on PyTorch's meta device: every tensor's shape, without
    memory or initialisation time. For counting parameters and for checking a
    checkpoint's shapes before anything is allocated (a user's file may ask for
    terabytes). Its forward computes shapes, not values (what
    :mod:`restore_core.models.complexity` counts on)."""
    with torch.device("meta"):
        return build_model(architecture, config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
