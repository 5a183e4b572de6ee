"""Training losses: pixel losses, a differentiable SSIM, the Golf Optimizer's
stage losses, and the VGG-11-BN perceptual loss.

Pure functions of tensors, plus :class:`VGGPerceptualLoss`, the one module here
(it holds the frozen feature network). Which loss a recipe uses is decided in
:func:`restore_core.training.trainer.restoration_loss`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from restore_core.metrics import LUMA_OFFSET, LUMA_WEIGHTS

PIXEL_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": F.l1_loss,
    "mse": F.mse_loss,
}


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, 1, H, W)`` BT.601 luma scaled to [0, 1]
    (:func:`restore_core.metrics.rgb_to_y` / 255, the Y channel the benchmarks score);
    grey inputs with one channel are returned as they are."""
    if rgb.shape[1] == 1:
        return rgb
    weights = rgb.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1) / 255.0
    return (rgb * weights).sum(dim=1, keepdim=True) + LUMA_OFFSET / 255.0


def gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    """1-D normalised Gaussian of scikit-image's SSIM window: radius ``int(truncate·σ + 0.5)``
    (11 taps for σ = 1.5)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def ssim_index(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of two ``(B, C, H, W)`` batches, per image (shape ``(B,)``), differentiable.

    ``SSIM = ((2 μa μb + C1)(2 σab + C2)) / ((μa² + μb² + C1)(σa² + σb² + C2))`` with
    ``C1 = (0.01 L)²``, ``C2 = (0.03 L)²`` and Gaussian-weighted local statistics (σ = 1.5,
    population covariance), averaged over the positions where the window fits: the same
    numbers as scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``, which the benchmarks report.

    Always computed in float32 with autocast off: ``σ² = E[x²] − E[x]²`` cancels
    catastrophically in bf16/fp16 (8/11-bit mantissas), which under mixed-precision
    training turned the loss into noise (even negative) and wrecked the model.
    """
    with torch.autocast(a.device.type, enabled=False):
        return _ssim_index_fp32(a.float(), b.float(), data_range, sigma)


def _ssim_index_fp32(a: torch.Tensor, b: torch.Tensor, data_range: float, sigma: float) -> torch.Tensor:
    channels = a.shape[1]
    g = gaussian_window(sigma).to(a)
    kernel_h = g.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    kernel_v = g.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:  # separable 'valid' Gaussian filter per channel
        return F.conv2d(F.conv2d(x, kernel_h, groups=channels), kernel_v, groups=channels)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.flatten(1).mean(dim=1)


def ssim_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 − SSIM`` on BT.601 luma (the benchmarks' SSIM Y), averaged over the batch."""
    return 1.0 - ssim_index(luma(output), luma(target)).mean()


class PerceptualWeightsError(ValueError):
    pass


# VGG-11 ("configuration A" of Simonyan & Zisserman): conv widths, "M" = 2x2 max-pool.
VGG11_LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg11_bn_features() -> nn.Sequential:
    """VGG-11 with batch norm up to its 5th max-pool, laid out as torchvision's
    ``vgg11_bn().features`` (conv, BN, ReLU per layer), so that its state-dict
    keys (``0.weight``, ``1.running_mean``, ...) match that file format."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG11_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.BatchNorm2d(int(item)), nn.ReLU(inplace=True)]
            channels = int(item)
    return nn.Sequential(*layers)


def read_vgg_weights(path: Path) -> dict[str, torch.Tensor]:
    """The ``features`` tensors of a VGG-11-BN weights file.

    Accepts safetensors, or a PyTorch state dict (torchvision's ``vgg11_bn``
    ``.pth``) read with ``torch.load(weights_only=True)``, which refuses
    anything but tensors and plain containers: a user's file never runs code.
    Keys may carry a ``features.`` prefix; classifier tensors are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise PerceptualWeightsError(f"{path}: no such VGG-11-BN weights file")
    from restore_core.checkpoint import CheckpointError
    from restore_core.convert import read_foreign_state_dict

    try:
        state = read_foreign_state_dict(path).tensors  # what restore convert reads, with its causes in words
    except CheckpointError as exc:
        raise PerceptualWeightsError(f"{exc} (--perceptual-weights takes VGG-11-BN weights)") from None
    features = {}
    for key, value in state.items():
        name = key[len("features."):] if key.startswith("features.") else key
        if name.split(".")[0].isdigit() and torch.is_tensor(value):
            features[name] = value
    return features


class VGGPerceptualLoss(nn.Module):
    """``L_p = 1/(w·h·d) · ||P(x) − P(x̃)||²`` with P = VGG-11-BN up to its 5th
    max-pool (Golf paper, perceptual loss; inputs in [0, 1], ImageNet-normalised).

    The network is frozen and kept in eval mode (BN uses its running statistics).
    """

    def __init__(self, weights: Path) -> None:
        super().__init__()
        self.features = vgg11_bn_features()
        state = read_vgg_weights(weights)
        expected = self.features.state_dict()
        missing = [k for k in expected if k not in state]
        wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
        if missing or wrong:
            raise PerceptualWeightsError(
                f"{weights}: not VGG-11-BN features ({len(missing)} tensors missing, {len(wrong)} of the wrong shape"
                + (f", e.g. {(missing + wrong)[0]}" if missing or wrong else "") + ")"
            )
        self.features.load_state_dict({k: state[k] for k in expected})
        self.features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> "VGGPerceptualLoss":
        super().train(mode)
        self.features.eval()  # always frozen statistics
        return self

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        a = self.features((output - self.mean) / self.std)
        with torch.no_grad():
            b = self.features((target - self.mean) / self.std)
        return F.mse_loss(a, b)


def content_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    pixel: str = "mse",
    perceptual: VGGPerceptualLoss | None = None,
    perceptual_weight: float = 0.0,
    ssim_weight: float = 0.0,
) -> torch.Tensor:
    """``L = L_c + λ·L_p`` (Golf paper, overall loss); ``L_p`` only when a VGG is given.
    ``ssim_weight`` > 0 adds ``w·(1 − SSIM_Y)`` (this project's option, not the paper's)."""
    loss = PIXEL_LOSSES[pixel](output, target)
    if ssim_weight > 0:
        loss = loss + ssim_weight * ssim_loss(output, target)
    if perceptual is not None and perceptual_weight > 0:
        loss = loss + perceptual_weight * perceptual(output, target)
    return loss


def golf_step_loss(
    step: nn.Module,
    first_shot: torch.Tensor,
    target: torch.Tensor,
    iterations: int,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Eq. 4: the mean over i = 1..N of ``L(G^(i)(x_0), x̃)``, G applied i times
    to the (frozen) first shot ``x_0 = F(y)``; gradients flow through every tap."""
    if iterations < 1:
        raise ValueError("the Golf step network is trained with at least one iteration")
    x = first_shot
    total = first_shot.new_zeros(())
    for _ in range(iterations):
        x = step(x)
        total = total + loss(x, target)
    return total / iterations


def lsgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """LSGAN generator term ``E[(D(x, G(x)) − 1)²]`` (SPEC §2.2)."""
    return F.mse_loss(fake_scores, torch.ones_like(fake_scores))


def lsgan_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """LSGAN discriminator loss ``½ E[(D(x, y) − 1)²] + ½ E[D(x, G(x))²]`` (SPEC §2.2)."""
    return 0.5 * F.mse_loss(real_scores, torch.ones_like(real_scores)) + 0.5 * F.mse_loss(fake_scores, torch.zeros_like(fake_scores))
