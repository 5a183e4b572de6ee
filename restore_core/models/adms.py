"""ADMS: all-in-one restoration with adaptive discriminative filters (SPEC §2.3).

Park et al. (CVPR 2023) start from a unified model θ_um trained on every
degradation, fine-tune one copy θ_d per degradation d, and find with FAIG the
few filters M_d that make θ_d different (see :mod:`restore_core.attribution`).
Only those filters' changes are kept. At inference a small classifier predicts
the degradation probabilities ĉ of each image and the network runs with

    θ_ads = θ_um + Σ_d ĉ_d · Δθ_d ⊙ M_d,      Δθ_d = θ_d − θ_um

(the slides' adaptive kernel; ĉ sums to 1). The extra parameters are the masked
filter deltas and the classifier. ĉ is the classifier's softmax p as the paper has it,
or, with the config's ``blend_temperature`` T below 1, p sharpened to ĉ ∝ p^(1/T)
(:func:`sharpen`), so an image the classifier ranks right but hesitates on gets more
of its degradation's filters.

Which filters are stored is part of the architecture config (indices per
degradation and layer), so a checkpoint's tensor shapes are fully checked on load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call

from restore_core.configs import MAX_REPEATS, require_at_least, require_at_most
from restore_core.tasks import CLEAN


@dataclass(frozen=True)
class ClassifierConfig:
    """A small fully convolutional classifier: a full-resolution stem (noise and
    thin streaks live in the finest scale), ``stages`` stride-2 convolutions, then
    global average and standard-deviation pooling (haze and blur are global
    statistics) and a linear layer. ``patch`` is its training crop size; a large
    image is classified on a grid of such crops (:meth:`DegradationClassifier.probabilities`).

    ``clean_class`` adds a last class, :data:`CLEAN`, for images with none of the
    degradations: trained on undegraded patches, it lets ``restore auto`` leave a clean
    photograph as it is instead of handing it to the specialist of whichever degradation
    it resembles most (the four-class classifier must name one). It is this project's
    addition, not the paper's: the network's filters are blended over the degradations
    alone (:meth:`ADMSNet.blend_weights`)."""

    width: int = 16
    stages: int = 4
    patch: int = 128
    clean_class: bool = False

    def __post_init__(self) -> None:
        require_at_least(self, 0, "stages")
        require_at_most(self, MAX_REPEATS, "stages")
        require_at_least(self, 1, "width", "patch")


class DegradationClassifier(nn.Module):
    """Probabilities of ``degradations`` classes per image, plus :data:`CLEAN` last
    with ``config.clean_class``."""

    def __init__(self, config: ClassifierConfig, degradations: int) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = [nn.Conv2d(3, config.width, 3, padding=1), nn.ReLU(inplace=True)]
        channels = config.width
        for i in range(config.stages):
            out = config.width * 2 ** min(i + 1, 2)
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * channels, degradations + int(config.clean_class))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, N x classes."""
        f = self.features(x)
        # An image under 16 pixels leaves one feature per channel, whose sample deviation
        # is NaN (it routed such images at random and blended them into NaN): 0 there.
        spread = f.std(dim=(2, 3)) if f.shape[-2] * f.shape[-1] > 1 else torch.zeros_like(f[..., 0, 0])
        pooled = torch.cat([f.mean(dim=(2, 3)), spread], dim=1)
        return self.head(pooled)

    def probabilities(self, x: torch.Tensor, grid: int = 4) -> torch.Tensor:
        """Softmax probabilities per image of an N x 3 x H x W batch: the mean over
        up to ``grid`` x ``grid`` crops of the training patch size, spread evenly
        over the image (the whole image when it is smaller than a patch)."""
        size = self.config.patch
        height, width = x.shape[-2:]
        if height <= size or width <= size:
            return self(x).softmax(dim=1)
        rows = torch.linspace(0, height - size, min(grid, height // size + 1)).round().long().tolist()
        cols = torch.linspace(0, width - size, min(grid, width // size + 1)).round().long().tolist()
        crops = [x[..., r : r + size, c : c + size] for r in rows for c in cols]
        probs = torch.stack([self(crop).softmax(dim=1) for crop in crops])
        return probs.mean(dim=0)


def sharpen(probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """ĉ_d = p_d^(1/T) / Σ_k p_k^(1/T) over the last axis: the classifier's softmax at
    temperature T (for one crop, exactly softmax(logits / T)). T = 1 leaves ĉ as the
    paper has it; T < 1 moves weight to the most probable degradation, so an image the
    classifier ranks right but hesitates on (SOTS haze at 0.6, blur 0.35) gets more of
    that degradation's filters; T → 0 is its one-hot argmax."""
    if temperature == 1.0:
        return probabilities
    logs = probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log() / temperature
    return logs.softmax(dim=-1)


def delta_key(degradation: str, parameter: str) -> str:
    """Name of a stored delta tensor (module names cannot contain dots)."""
    return f"{degradation}__{parameter.replace('.', '__')}"


class ADMSNet(nn.Module):
    """θ_ads = θ_um + Σ_d ĉ_d Δθ_d ⊙ M_d around any base architecture.

    ``filters[d][name]`` lists the filter indices of parameter ``name`` kept for
    degradation ``d``; ``axes[name]`` is the axis that indexes filters (0 for
    Conv2d, 1 for ConvTranspose2d). ``deltas`` hold Δθ_d of those filters only.

    Who decides ĉ, in order: :meth:`set_degradation` (a command such as
    ``restore derain`` forces one-hot), then :meth:`condition` (the engine
    classifies each whole image before tiling it), else the classifier on the
    input of each ``forward`` call.
    """

    def __init__(
        self,
        base: nn.Module,
        classifier: DegradationClassifier,
        degradations: Sequence[str],
        filters: dict[str, dict[str, list[int]]],
        axes: dict[str, int],
        blend_temperature: float = 1.0,
        clean_classifier: DegradationClassifier | None = None,
    ) -> None:
        super().__init__()
        self.base = base
        self.blend_temperature = blend_temperature
        self.classifier = classifier
        # A second classifier with a clean class, asked by routing on request only
        # (restore auto --leave-clean); None: the model has none.
        self.clean_classifier = clean_classifier
        if clean_classifier is not None and not clean_classifier.config.clean_class:
            raise ValueError("clean_classifier must have a clean class")
        self.degradations = tuple(degradations)
        base_params = dict(base.named_parameters())
        self.deltas = nn.ParameterDict()
        self.selected: list[tuple[int, str, str]] = []  # (degradation index, parameter, delta key)
        for d_index, degradation in enumerate(self.degradations):
            for name, indices in sorted(filters.get(degradation, {}).items()):
                if not indices:
                    continue
                shape = list(base_params[name].shape)
                shape[axes[name]] = len(indices)
                key = delta_key(degradation, name)
                self.deltas[key] = nn.Parameter(torch.zeros(shape))
                self.register_buffer(f"index__{key}", torch.tensor(indices, dtype=torch.long), persistent=False)
                self.selected.append((d_index, name, key))
        self.axes = dict(axes)
        self.forced: str | None = None
        self.conditions: torch.Tensor | None = None  # N x K, set per batch by condition()
        self._cache: tuple | None = None  # (key, merged parameters per image)

    @property
    def size_multiple(self) -> int:
        return int(getattr(self.base, "size_multiple", 1))

    # -- run-time settings -------------------------------------------------------
    def set_degradation(self, degradation: str | None) -> None:
        """Force one degradation (one-hot ĉ) for every image; None = detect."""
        if degradation is not None and degradation not in self.degradations:
            raise ValueError(f"unknown degradation {degradation!r}; this model knows {', '.join(self.degradations)}")
        self.forced = degradation

    def set_blend_temperature(self, temperature: float) -> None:
        """``--blend-temperature``: how sharply ĉ follows the classifier (:func:`sharpen`)."""
        if not temperature > 0:
            raise ValueError(f"must be above 0, got {temperature}")
        self.blend_temperature = float(temperature)
        self.conditions = None

    def condition(self, x: torch.Tensor) -> list[dict[str, float]]:
        """Decide ĉ for each image of a whole (untiled) batch and keep it for the
        ``forward`` calls that follow (one per tile); returns ĉ per image."""
        if self.forced is not None:
            weights = self._one_hot(x.shape[0], x)
        else:
            weights = self.blend_weights(x)
        self.conditions = weights
        return [{d: round(float(p), 4) for d, p in zip(self.degradations, row)} for row in weights]

    @property
    def classes(self) -> tuple[str, ...]:
        """What the classifier's probabilities are of: the degradations, then :data:`CLEAN`
        when it has that class."""
        return self.degradations + ((CLEAN,) if self.classifier.config.clean_class else ())

    def blend_weights(self, x: torch.Tensor) -> torch.Tensor:
        """ĉ per image of a batch: the classifier's probabilities of the degradations
        (renormalised to sum to 1 when it also has a clean class: no filters stand for
        "clean"), sharpened by the config's ``blend_temperature`` (:func:`sharpen`; 1 =
        as the paper)."""
        probabilities = self.classifier.probabilities(x)
        if self.classifier.config.clean_class:
            probabilities = probabilities[:, :-1] / probabilities[:, :-1].sum(dim=1, keepdim=True).clamp(min=1e-12)
        return sharpen(probabilities, self.blend_temperature)

    def _one_hot(self, count: int, like: torch.Tensor) -> torch.Tensor:
        weights = torch.zeros(count, len(self.degradations), device=like.device, dtype=like.dtype)
        weights[:, self.degradations.index(self.forced)] = 1
        return weights

    # -- the adaptive kernel -----------------------------------------------------
    def merged_parameters(self, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """θ_um + Σ_d ĉ_d Δθ_d ⊙ M_d for one image's ĉ (``weights``, length K);
        only the parameters with stored filters are returned (the rest are θ_um)."""
        base_params = dict(self.base.named_parameters())
        merged: dict[str, torch.Tensor] = {}
        for d_index, name, key in self.selected:
            if float(weights[d_index]) == 0.0:
                continue
            if name not in merged:
                merged[name] = base_params[name].clone()
            index = getattr(self, f"index__{key}")
            merged[name].index_add_(self.axes[name], index, self.deltas[key] * weights[d_index])
        return merged

    def _merged_for(self, weights: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """θ_ads per image, cached: the tiles of one image share it, and a forced
        degradation gives the same kernel for every image."""
        # Tensor versions change on any in-place update (loading weights), pointers on .to().
        stored = [*self.deltas.values(), *self.base.parameters()]
        key = (tuple(weights.flatten().tolist()), weights.dtype, tuple((p.data_ptr(), p._version) for p in stored))
        if self._cache is None or self._cache[0] != key:
            if bool((weights == weights[:1]).all()):
                merged = [self.merged_parameters(weights[0])]
            else:
                merged = [self.merged_parameters(w) for w in weights]
            self._cache = (key, merged)
        return self._cache[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.forced is not None:
            weights = self._one_hot(x.shape[0], x)
        elif self.conditions is not None and self.conditions.shape[0] == x.shape[0]:
            weights = self.conditions
        else:
            weights = self.blend_weights(x)
        merged = self._merged_for(weights)
        if len(merged) == 1:
            return functional_call(self.base, merged[0], (x,), strict=False)
        return torch.cat([functional_call(self.base, params, (x[i : i + 1],), strict=False) for i, params in enumerate(merged)])

    def extra_parameters(self) -> int:
        """Parameters beyond the unified model: masked filter deltas + classifier(s)."""
        classifiers = [self.classifier] + ([self.clean_classifier] if self.clean_classifier is not None else [])
        return sum(p.numel() for p in self.deltas.parameters()) + sum(p.numel() for c in classifiers for p in c.parameters())
