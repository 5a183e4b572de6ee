"""Golf Optimizer for blind deconvolution (SPEC §2.4; papers/golf-optimizer-deconvolution.txt).

Two networks of one architecture (Fig. 6, Table 1):

* ``F`` makes the aggressive first shot: ``x_0 = F(y)``;
* ``G`` taps towards the optimum, shared across iterations:
  ``x_i = G(x_{i-1}) = x_{i-1} + r(x_{i-1})``, i = 1..N (Eq. 4; N = 5 in
  training, 3 at test), where ``r`` learns the negative gradient of the image prior.

The residual CNN (Fig. 6): Conv 7x7 (3 -> f), four Layers of two Basic-Block
(BB) units, the last Layer mapping f -> 3, then Conv 7x7 (3 -> 3); no conv has
a bias, stride 1 everywhere. A BB stacks six basic layers
``IN -> ReLU -> Conv7x7 -> IN -> ReLU -> Conv5x5`` (IN = instance norm with
affine parameters) around an identity shortcut; when the BB changes the
channel count (f -> 3) the shortcut is a 1x1 conv followed by IN. With this
reading Table 1's counts are reproduced exactly: f = 32 gives 466,348
parameters (F), f = 16 gives 120,188 (G), each with 50 basic layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from restore_core.configs import MAX_REPEATS, require_at_least, require_at_most


@dataclass(frozen=True)
class GolfNetConfig:
    """One residual CNN of Fig. 6. ``layers`` BB-pairs at width ``filters``; the
    last one maps to ``channels``."""

    filters: int = 32
    channels: int = 3
    layers: int = 4
    blocks_per_layer: int = 2
    global_residual: bool = True  # output = input + CNN(input)

    def __post_init__(self) -> None:
        require_at_least(self, 0, "layers", "blocks_per_layer")
        require_at_most(self, MAX_REPEATS, "layers", "blocks_per_layer")
        require_at_least(self, 1, "filters", "channels")


class BasicBlock(nn.Module):
    """BB unit: IN, ReLU, Conv 7x7, IN, ReLU, Conv 5x5 plus a shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.InstanceNorm2d(in_channels, affine=True),
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, out_channels, 7, padding=3, bias=False),
            nn.InstanceNorm2d(out_channels, affine=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 5, padding=2, bias=False),
        )
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.InstanceNorm2d(out_channels, affine=True)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.residual(x)


class GolfNet(nn.Module):
    """The residual CNN of Fig. 6 (used for both F and G)."""

    size_multiple = 1

    def __init__(self, config: GolfNetConfig = GolfNetConfig()) -> None:
        super().__init__()
        self.config = config
        f, c = config.filters, config.channels
        blocks: list[nn.Module] = [nn.Conv2d(c, f, 7, padding=3, bias=False)]
        for layer in range(config.layers):
            last_layer = layer == config.layers - 1
            for unit in range(config.blocks_per_layer):
                in_ch = f if not (last_layer and unit > 0) else c
                out_ch = c if last_layer else f
                blocks.append(BasicBlock(in_ch, out_ch))
        blocks.append(nn.Conv2d(c, c, 7, padding=3, bias=False))
        self.body = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.config.global_residual else out


class GolfOptimizer(nn.Module):
    """``x_0 = F(y)``, ``x_i = G(x_{i-1})`` (Eq. 4); ``forward`` returns ``x_N``.

    ``first`` (F) and ``step`` (G) are any image-to-image networks; the paper's
    are :class:`GolfNet` with f = 32 and f = 16. G must be residual,
    ``G(x) = x + r(x)``, so that it taps towards the optimum rather than
    re-predicting the image (GolfNet and the U-Net both are).
    """

    def __init__(self, first: nn.Module, step: nn.Module, iterations: int = 3) -> None:
        super().__init__()
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        self.iterations = iterations
        self.first = first
        self.step = step
        self.size_multiple = math.lcm(int(getattr(first, "size_multiple", 1)), int(getattr(step, "size_multiple", 1)))

    def set_iterations(self, iterations: int) -> None:
        """N taps of G at inference (``restore deblur --iterations``)."""
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        self.iterations = int(iterations)

    def setting_caution(self, name: str, value, recipe: dict) -> str | None:
        """More taps than G was trained to take (the recipe's ``train_iterations``): its
        steps then drift away from the optimum. Measured with the shipped golf-deblur,
        trained over 5 taps, on 4 McMaster_motion images: PSNR Y 22.92 dB at 1 tap,
        22.81 at 10, 21.87 at 30, 9.08 at 100 (the input: 21.45), NaN at 1000."""
        trained = recipe.get("train_iterations")
        if name == "iterations" and isinstance(trained, int) and value > trained:
            return (f"was trained with G taking {trained} taps; beyond them its steps drift away from the optimum "
                    "(100 taps of the shipped golf-deblur fall far below the input)")
        return None

    def iterates(self, y: torch.Tensor, iterations: int | None = None) -> list[torch.Tensor]:
        """``[x_0, x_1, ..., x_N]``: inspect the convergence the paper describes (2-4 iterations)."""
        n = self.iterations if iterations is None else iterations
        xs = [self.first(y)]
        for _ in range(n):
            xs.append(self.step(xs[-1]))
        return xs

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = self.first(y)
        for _ in range(self.iterations):
            x = self.step(x)
        return x
