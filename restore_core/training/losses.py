"""Training losses: pixel losses, the Golf Optimizer's stage losses, and the
VGG-11-BN perceptual loss.

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

PIXEL_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": F.l1_loss,
    "mse": F.mse_loss,
}


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
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable or unsafe file ends up here
        raise PerceptualWeightsError(f"{path}: not a readable VGG-11-BN weights file ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise PerceptualWeightsError(f"{path}: expected a state dict of tensors")
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
) -> torch.Tensor:
    """``L = L_c + λ·L_p`` (Golf paper, overall loss); ``L_p`` only when a VGG is given."""
    loss = PIXEL_LOSSES[pixel](output, target)
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
