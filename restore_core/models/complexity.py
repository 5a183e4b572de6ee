"""How much arithmetic a model costs: multiply-accumulates (MACs) of one forward pass.

Papers compare restoration models by parameters and by MACs on a 256 x 256 image
(NAFNet, Restormer, MPRNet tables): :func:`count_macs` counts them with PyTorch's own
FLOP counter (``torch.utils.flop_counter``: convolutions, transposed convolutions and
matrix products, two FLOPs a MAC; element-wise work, as in those tables, is not
counted). :func:`architecture_macs` counts an architecture without weights: on the meta
device (shapes only, no memory, a few milliseconds), or, where the forward reads values
(a blind denoiser's noise estimate, an all-in-one model's classifier), with its
initial weights on the CPU.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from restore_core.models import build_model, build_skeleton

MACS_SIDE = 256  # papers' image for MACs: 256 x 256


def macs_input_side(size_multiple: int, side: int = MACS_SIDE) -> int:
    """``side``, or the next multiple of a model's size multiple above it (the engine pads
    inputs to that multiple, so that is the size the model runs at)."""
    multiple = max(1, size_multiple)
    return math.ceil(side / multiple) * multiple


def count_macs(model: nn.Module, side: int = MACS_SIDE, channels: int = 3) -> int:
    """Multiply-accumulates of ``model`` (in eval mode) on one ``channels`` x ``side`` x
    ``side`` image of zeros, on the device and in the precision of its parameters."""
    first = next(model.parameters())
    image = torch.zeros(1, channels, side, side, device=first.device, dtype=first.dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image)
    return counter.get_total_flops() // 2


def architecture_macs(architecture: str, config: dict[str, Any], side: int = MACS_SIDE) -> int:
    """:func:`count_macs` of ``architecture`` built from ``config`` at ``side`` (rounded up
    to its size multiple): on the meta device, else on the CPU with seeded initial weights."""
    model = build_skeleton(architecture, config).eval()
    side = macs_input_side(int(getattr(model, "size_multiple", 1)), side)
    try:
        return count_macs(model, side)
    except (RuntimeError, NotImplementedError):  # .item() or a copy of a value: the forward reads data
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = build_model(architecture, config).eval()
        return count_macs(model, side)
