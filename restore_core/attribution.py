"""Filter Attribution based on Integrated Gradients (FAIG; SPEC §2.3).

Given a baseline model θ̄ (e.g. the unified all-in-one model) and a target
model θ fine-tuned from it for one degradation, FAIG scores every convolution
filter (one output channel of a conv) by how much it is responsible for the
target model's behaviour on that degradation:

    FAIG_i = | (1/N) [θ − θ̄]_i · Σ_{t=0..N−1} ∂L(γ(α_t), x)/∂γ_i |,
    γ(α) = θ̄ + α (θ − θ̄),  α_t = t / N,  L = ||F(γ, x) − x_gt||²,

summed over the parameters of each filter. The degradation-specific score is
the mean over images of the target degradation minus the mean over images of
the other degradations. Gradients are taken with ``torch.func.functional_call``
over ``named_parameters()``: one model, no rebuilds, any architecture.

Rankings used by ``--validate`` to check FAIG as the FAIG paper does: random
filters, |θ − θ̄| per filter, and plain integrated gradients (zero baseline:
``|θ_i · (1/N) Σ_t ∂L(α_t θ)/∂θ_i|``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

Images = list[tuple[torch.Tensor, torch.Tensor]]  # (degraded, clean), each 1 x C x H x W in [0, 1]


@dataclass(frozen=True)
class FilterParam:
    """A convolution weight and the axis that indexes its filters (output channels)."""

    name: str
    axis: int  # 0 for Conv2d (out, in, kh, kw); 1 for ConvTranspose2d (in, out, kh, kw)
    filters: int


def filter_params(model: nn.Module) -> list[FilterParam]:
    """Every convolution weight of ``model``, found from its module types (not a layer list)."""
    found = []
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and module.groups == 1:
            axis = 1 if isinstance(module, nn.ConvTranspose2d) else 0
            name = f"{module_name}.weight" if module_name else "weight"
            found.append(FilterParam(name, axis, module.weight.shape[axis]))
    return found


def per_filter(values: dict[str, torch.Tensor], params: list[FilterParam]) -> dict[str, torch.Tensor]:
    """Sum a per-parameter quantity over each filter: name -> vector of length ``filters``."""
    out = {}
    for p in params:
        v = values[p.name]
        dims = [d for d in range(v.ndim) if d != p.axis]
        out[p.name] = v.sum(dim=dims)
    return out


def _loss(model: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], degraded: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    output = functional_call(model, (params, buffers), (degraded,))
    return ((output - clean) ** 2).sum()


def integrated_gradients(
    model: nn.Module,
    start: dict[str, torch.Tensor],
    end: dict[str, torch.Tensor],
    images: Images,
    steps: int,
    names: list[str],
) -> list[dict[str, torch.Tensor]]:
    """Per image: ``|(end − start) · (1/N) Σ_t ∂L(γ(α_t))/∂γ|`` for the parameters in ``names``."""
    model.eval()
    buffers = dict(model.named_buffers())
    delta = {k: end[k] - start[k] for k in end}
    results = []
    for degraded, clean in images:
        total = {k: torch.zeros_like(end[k]) for k in names}
        for t in range(steps):
            alpha = t / steps
            path = {k: (start[k] + alpha * delta[k]).detach().requires_grad_(k in names) for k in end}
            loss = _loss(model, path, buffers, degraded, clean)
            grads = torch.autograd.grad(loss, [path[k] for k in names])
            for k, g in zip(names, grads):
                total[k] += g
        results.append({k: (delta[k] * total[k] / steps).abs() for k in names})
    return results


def _mean(maps: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([m[k] for m in maps]).mean(0) for k in maps[0]}


def faig(
    model: nn.Module,
    baseline: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    target_images: Images,
    other_images: Images,
    steps: int = 100,
) -> dict[str, torch.Tensor]:
    """Degradation-specific FAIG score per filter: name -> vector (higher = more specific)."""
    params = filter_params(model)
    names = [p.name for p in params]
    on_target = _mean([per_filter(m, params) for m in integrated_gradients(model, baseline, target, target_images, steps, names)])
    if not other_images:
        return on_target
    on_others = _mean([per_filter(m, params) for m in integrated_gradients(model, baseline, target, other_images, steps, names)])
    return {k: on_target[k] - on_others[k] for k in names}


def plain_ig(model: nn.Module, target: dict[str, torch.Tensor], images: Images, steps: int = 100) -> dict[str, torch.Tensor]:
    """Integrated gradients from a zero-parameter baseline, per filter (a comparison ranking)."""
    params = filter_params(model)
    names = [p.name for p in params]
    zero = {k: torch.zeros_like(v) for k, v in target.items()}
    return _mean([per_filter(m, params) for m in integrated_gradients(model, zero, target, images, steps, names)])


def weight_change(model: nn.Module, baseline: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """|θ − θ̄| summed per filter (a comparison ranking)."""
    params = filter_params(model)
    return per_filter({p.name: (target[p.name] - baseline[p.name]).abs() for p in params}, params)


@dataclass(frozen=True)
class RankedFilter:
    layer: str
    index: int
    score: float


def rank(scores: dict[str, torch.Tensor]) -> list[RankedFilter]:
    """Every filter, highest score first (ties broken by layer order, then index)."""
    items = [RankedFilter(layer, i, float(v)) for layer, vec in scores.items() for i, v in enumerate(vec.tolist())]
    return sorted(items, key=lambda f: -f.score)


def top_masks(model: nn.Module, ranked: list[RankedFilter], fraction: float) -> dict[str, torch.Tensor]:
    """Boolean mask per layer (one entry per filter) selecting the top ``fraction`` of all filters."""
    params = filter_params(model)
    total = sum(p.filters for p in params)
    count = max(1, round(fraction * total))
    masks = {p.name: torch.zeros(p.filters, dtype=torch.bool) for p in params}
    for f in ranked[:count]:
        masks[f.layer][f.index] = True
    return masks


def random_masks(model: nn.Module, count: int, seed: int) -> dict[str, torch.Tensor]:
    params = filter_params(model)
    flat = [(p.name, i) for p in params for i in range(p.filters)]
    chosen = np.random.default_rng(seed).choice(len(flat), size=count, replace=False)
    masks = {p.name: torch.zeros(p.filters, dtype=torch.bool) for p in params}
    for j in chosen:
        masks[flat[j][0]][flat[j][1]] = True
    return masks


def revert_filters(
    model: nn.Module, baseline: dict[str, torch.Tensor], target: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Target parameters with the masked filters set back to the baseline's."""
    axes = {p.name: p.axis for p in filter_params(model)}
    out = {k: v.clone() for k, v in target.items()}
    for name, mask in masks.items():
        shape = [1] * out[name].ndim
        shape[axes[name]] = -1
        m = mask.view(shape).to(out[name].dtype)
        out[name] = target[name] * (1 - m) + baseline[name] * m
    return out


@torch.inference_mode()
def mean_psnr(model: nn.Module, params: dict[str, torch.Tensor], images: Images) -> float:
    """Mean PSNR (RGB, [0, 1] data range) of ``model`` with ``params`` on ``images``."""
    buffers = dict(model.named_buffers())
    values = []
    for degraded, clean in images:
        out = functional_call(model, (params, buffers), (degraded,)).clamp(0, 1)
        mse = float(((out - clean) ** 2).mean())
        values.append(10 * np.log10(1.0 / max(mse, 1e-12)))
    return float(np.mean(values))


def layer_counts(masks: dict[str, torch.Tensor]) -> dict[str, int]:
    """How many selected filters each layer holds (for the spread plot)."""
    return {name: int(mask.sum()) for name, mask in masks.items()}


@dataclass(frozen=True)
class ValidationRow:
    """PSNR drop (dB) when ``filters`` filters chosen by ``method`` are reverted to the baseline."""

    method: str
    filters: int
    target_drop: float
    others_drop: float


def validate(
    model: nn.Module,
    baseline: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    target_images: Images,
    other_images: Images,
    faig_scores: dict[str, torch.Tensor],
    fraction: float,
    steps: int,
    seeds: tuple[int, ...] = (0, 1, 2),
) -> list[ValidationRow]:
    """The FAIG paper's check: revert the top ``fraction`` of filters chosen by FAIG,
    by |θ − θ̄|, by plain IG, and at random (mean over ``seeds``); FAIG should hurt
    the target degradation most and the others least."""
    before_target = mean_psnr(model, target, target_images)
    before_others = mean_psnr(model, target, other_images) if other_images else float("nan")

    def drops(masks: dict[str, torch.Tensor]) -> tuple[float, float]:
        reverted = revert_filters(model, baseline, target, masks)
        after_others = mean_psnr(model, reverted, other_images) if other_images else float("nan")
        return before_target - mean_psnr(model, reverted, target_images), before_others - after_others

    rankings = {
        "FAIG": rank(faig_scores),
        "|θ−θ̄|": rank(weight_change(model, baseline, target)),
        "IG": rank(plain_ig(model, target, target_images, steps)),
    }
    rows = []
    count = 0
    for method, ranked in rankings.items():
        masks = top_masks(model, ranked, fraction)
        count = sum(int(m.sum()) for m in masks.values())
        rows.append(ValidationRow(method, count, *drops(masks)))
    random_drops = np.array([drops(random_masks(model, count, seed)) for seed in seeds])
    rows.append(ValidationRow(f"random (mean of {len(seeds)} seeds)", count, float(random_drops[:, 0].mean()), float(random_drops[:, 1].mean())))
    return rows


def spread_plot(counts: dict[str, int], width: int = 900, bar_height: int = 16) -> np.ndarray:
    """A horizontal bar chart (BGR uint8 image) of selected filters per layer."""
    import cv2

    names = list(counts)
    height = 40 + bar_height * len(names) + 10
    image = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(image, "top filters per layer", (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    label_width, top = 420, 40
    peak = max(max(counts.values(), default=0), 1)
    for row, name in enumerate(names):
        y = top + row * bar_height
        cv2.putText(image, name[-55:], (10, y + bar_height - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
        length = int((width - label_width - 60) * counts[name] / peak)
        cv2.rectangle(image, (label_width, y + 2), (label_width + length, y + bar_height - 3), (180, 110, 40), -1)
        cv2.putText(image, str(counts[name]), (label_width + length + 5, y + bar_height - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return image
