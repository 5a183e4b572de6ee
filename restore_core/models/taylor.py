"""Deep Taylor's Approximations Framework (SPEC §2.1; papers/taylor-approximations-restoration.md).

The framework wraps ANY mapping network ``F`` (the "existing method") with a
derivative network ``G`` whose weights are shared across orders:

* mapping part, Eq. 18:       ``f_out = F(y)``
* derivative part, Eq. 19:    ``g^{k+1} = G(concat[g^k, y])``, with ``g^0 = f_out``
  (Eq. 17 adds ``+ k * g^k``; enabled by ``eq17_term=True``)
* output of order n, Eq. 20:  ``O = f_out + sum_{k=1..n} g^k / k!``
* loss, Eq. 21:               ``L1(x, O) + lambda * L1(x, f_out)``

An option outside the paper, for degradations that only add light (rain streaks and
the veil of heavy rain): ``darken_only`` returns ``min(O, y)``, the projection of
``O`` onto the images no brighter than the input. Where the clean image obeys that
(``x <= y`` per pixel and channel) the projection can only bring ``O`` closer to it:
``|min(O, y) - x| <= |O - x|``. Training keeps Eq. 21 on the unprojected ``O``; the
projection is applied in :meth:`TaylorNet.forward`, which is what restores and validates.

Order 0 is the bare ``F``. The paper's ``G`` is two convolution layers; it runs
at full resolution, so it is kept narrow to make the wrapper cheap (the paper's
gains are 0.1-0.4 dB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F_

from restore_core.configs import require_at_least


@dataclass(frozen=True)
class DerivativeConfig:
    """Shape of the derivative network ``G`` (two 3x3 convolutions in the paper)."""

    image_channels: int = 3
    hidden_channels: int = 16

    def __post_init__(self) -> None:
        require_at_least(self, 1, "image_channels", "hidden_channels")


class DerivativeNet(nn.Module):
    """``G``: concat[g^k, y] (2C channels) -> conv3x3 -> ReLU -> conv3x3 -> C channels."""

    def __init__(self, config: DerivativeConfig = DerivativeConfig()) -> None:
        super().__init__()
        c = config.image_channels
        self.conv1 = nn.Conv2d(2 * c, config.hidden_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(config.hidden_channels, c, 3, padding=1)

    def forward(self, g_and_y: torch.Tensor) -> torch.Tensor:
        return self.conv2(F_.relu(self.conv1(g_and_y), inplace=True))


@dataclass
class TaylorOutput:
    """Everything one forward pass produces: ``restored`` is ``O`` (Eq. 20)."""

    restored: torch.Tensor
    mapping: torch.Tensor  # f_out, Eq. 18
    derivatives: list[torch.Tensor]  # g^1 .. g^n, Eq. 19


def taylor_sum(mapping: torch.Tensor, derivatives: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 20: ``O = f_out + sum_{k=1..n} g^k / k!`` (``derivatives[k-1]`` is ``g^k``)."""
    out = mapping
    for k, g in enumerate(derivatives, start=1):
        out = out + g / math.factorial(k)
    return out


def taylor_loss(output: TaylorOutput, target: torch.Tensor, mapping_weight: float = 1.0) -> torch.Tensor:
    """Eq. 21: ``L1(x - O) + lambda * L1(x - f_out)`` (lambda = 1 in the paper)."""
    loss = F_.l1_loss(output.restored, target)
    if mapping_weight:
        loss = loss + mapping_weight * F_.l1_loss(output.mapping, target)
    return loss


class TaylorNet(nn.Module):
    """Wraps a mapping network with the Taylor derivative part of order ``order``.

    ``forward`` returns ``O`` so the module is a drop-in restoration model;
    :meth:`expand` returns every intermediate for the loss and for inspection.
    """

    def __init__(
        self,
        mapping: nn.Module,
        derivative: nn.Module,
        order: int = 3,
        eq17_term: bool = False,
        darken_only: bool = False,
    ) -> None:
        super().__init__()
        if order < 0:
            raise ValueError(f"Taylor order must be >= 0, got {order}")
        self.mapping = mapping
        self.derivative = derivative
        self.order = order
        self.eq17_term = eq17_term
        self.darken_only = darken_only

    @property
    def size_multiple(self) -> int:
        return int(getattr(self.mapping, "size_multiple", 1))

    def expand(self, y: torch.Tensor, order: int | None = None) -> TaylorOutput:
        n = self.order if order is None else order
        f_out = self.mapping(y)
        g = f_out  # g^0
        derivatives: list[torch.Tensor] = []
        for k in range(n):
            g_next = self.derivative(torch.cat([g, y], dim=1))  # Eq. 19
            if self.eq17_term:
                g_next = g_next + k * g  # Eq. 17: + k * g^k (zero for k = 0)
            derivatives.append(g_next)
            g = g_next
        return TaylorOutput(taylor_sum(f_out, derivatives), f_out, derivatives)

    def set_darken_only(self, darken_only: bool) -> None:
        """Project the output onto ``min(O, y)`` (True) or return Eq. 20's ``O`` as is."""
        self.darken_only = bool(darken_only)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        restored = self.expand(y).restored
        return torch.minimum(restored, y) if self.darken_only else restored
