"""A compact residual U-Net: the project's fast mapping backbone for CPU use.

Why this design: on a 2-core CPU the cost of a restoration network is dominated
by full-resolution convolutions. This U-Net spends little width at full
resolution (``width`` channels, one residual block) and puts its capacity in the
downsampled levels, where a 3x3 convolution costs 4x less per level. Plain
conv-ReLU-conv residual blocks with no normalisation run on oneDNN's fastest
path, train stably from scratch with Adam, and behave identically in fp32,
fp16 and bf16.

Structure (``levels`` = number of downsamplings)::

    y -> conv3x3 -> [blocks, down]*levels -> bottleneck blocks
      -> [up (PixelShuffle), + skip, blocks]*levels -> conv3x3 -> + y

The network predicts a residual that is added to its input, so an untrained
network starts near the identity.

Optional ``refine`` (channels, 0 = off): a full-resolution head, three 3x3
convolutions on ``concat[last full-resolution features, output]`` whose result is
added to the output. Its last convolution starts at zero, so a trained model can be
grown with it (``restore train --init``) and starts out unchanged; it adds width
exactly where this design is thinnest, at full resolution, where fine detail
(rain streak edges, texture) is decided.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from restore_core.configs import MAX_REPEATS, require_at_least, require_at_most


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of :class:`UNet`.

    ``blocks_per_level`` has one entry per encoder level (full resolution first);
    the decoder mirrors it. Channel width doubles at each downsampling and is
    capped at ``max_width``.
    """

    in_channels: int = 3
    out_channels: int = 3
    width: int = 16
    levels: int = 4
    blocks_per_level: tuple[int, ...] = (1, 1, 1, 2)
    bottleneck_blocks: int = 2
    max_width: int = 256
    refine: int = 0  # channels of the zero-initialised full-resolution head (0 = none)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks_per_level", tuple(self.blocks_per_level))
        if len(self.blocks_per_level) != self.levels:
            raise ValueError(
                f"blocks_per_level has {len(self.blocks_per_level)} entries, expected levels={self.levels}"
            )
        require_at_least(self, 0, "levels", "blocks_per_level", "bottleneck_blocks", "refine")
        require_at_most(self, MAX_REPEATS, "levels", "blocks_per_level", "bottleneck_blocks", "refine")
        require_at_least(self, 1, "in_channels", "out_channels", "width", "max_width")

    def channels_at(self, level: int) -> int:
        return min(self.width * 2**level, self.max_width)


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(x)))`` with 3x3 convolutions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place on the fresh conv output (safe for autograd): no extra full-size tensor.
        return self.conv2(self.act(self.conv1(x))).add_(x)


def _blocks(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*[ResidualBlock(channels) for _ in range(count)])


class Upsample(nn.Module):
    """2x upsampling by a 1x1 convolution followed by PixelShuffle."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels * 4, 1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class UNet(nn.Module):
    """Residual U-Net mapping a degraded image to a restored one (same size).

    Input height and width must be multiples of ``2**levels``
    (:attr:`size_multiple`); the inference engine pads to it.
    """

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        self.config = config
        c0 = config.channels_at(0)
        self.head = nn.Conv2d(config.in_channels, c0, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        for level, count in enumerate(config.blocks_per_level):
            channels = config.channels_at(level)
            self.encoders.append(_blocks(channels, count))
            self.downs.append(nn.Conv2d(channels, config.channels_at(level + 1), 2, stride=2))
        self.bottleneck = _blocks(config.channels_at(config.levels), config.bottleneck_blocks)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(config.levels)):
            channels = config.channels_at(level)
            self.ups.append(Upsample(config.channels_at(level + 1), channels))
            self.decoders.append(_blocks(channels, config.blocks_per_level[level]))
        self.tail = nn.Conv2d(c0, config.out_channels, 3, padding=1)
        self.refine = refinement_head(c0 + config.out_channels, config.refine, config.out_channels) if config.refine else None

    @property
    def size_multiple(self) -> int:
        return 2**self.config.levels

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = self.head(y)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.bottleneck(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = decoder(up(x).add_(skip))
        out = self.tail(x)
        if self.config.in_channels == self.config.out_channels:
            out = out.add_(y)
        if self.refine is not None:
            out = out + self.refine(torch.cat([x, out], dim=1))
        return out


def refinement_head(in_channels: int, width: int, out_channels: int) -> nn.Sequential:
    """Three 3x3 convolutions at full resolution; the last starts at zero (an exact no-op).
    The activations work in place on the convolutions' fresh outputs: a full-resolution
    tensor fewer each (on a CPU, each new one costs its pages' first touch)."""
    head = nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(width, width, 3, padding=1),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(width, out_channels, 3, padding=1),
    )
    nn.init.zeros_(head[-1].weight)
    nn.init.zeros_(head[-1].bias)
    return head
