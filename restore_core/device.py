"""Device and precision choice, in one place.

torch is imported by the functions that use it, not by this module: the command line
checks ``--threads`` with :func:`check_cpu_threads` before anything imports torch
(1.5 s), so that a mistyped option is answered at once.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


SUPPORTED_DEVICE_TYPES = ("cpu", "cuda", "mps")


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` = CUDA when present, else CPU; or ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
    A device that is not there, or that torch does not know, is a ValueError naming it."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        device = None
    if device is None or device.type not in SUPPORTED_DEVICE_TYPES:
        raise ValueError(f"unknown device {requested!r}; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {requested} was asked for, but no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {requested} was asked for, but no MPS (Apple GPU) device is available")
    return device


def check_cpu_threads(threads: int) -> None:
    """A ValueError unless ``threads`` is 0 (torch's default, one per core) or at most
    this machine's CPUs: torch crashes on absurd counts (100,000 segfaults)."""
    available = os.cpu_count() or 1
    if not 0 <= threads <= available:
        raise ValueError(f"--threads must be between 0 (torch's default) and this machine's {available} CPUs, got {threads}")


def set_cpu_threads(threads: int) -> None:
    """Give torch ``threads`` CPU threads (0 = torch's default); checked as :func:`check_cpu_threads`."""
    import torch

    check_cpu_threads(threads)
    if threads:
        torch.set_num_threads(threads)


def pick_dtype(precision: str, device: torch.device, supports_half: bool = True) -> torch.dtype:
    """``auto`` = bf16 (or fp16) on CUDA, fp32 on CPU; or ``fp32``/``fp16``/``bf16``."""
    import torch

    if precision == "auto":
        if device.type == "cuda" and supports_half:
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in table:
        raise ValueError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")
    return table[precision]


TRAINING_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def training_autocast_dtype(precision: str, device: torch.device, recipe_amp: bool = True) -> torch.dtype | None:
    """The autocast dtype of a training step, or None for plain fp32.

    ``auto`` = the recipe's mixed precision on CUDA (bf16 where supported, else fp16
    with loss scaling), fp32 on the CPU; ``bf16`` = bf16 autocast on any device (on
    CPUs with AMX or AVX512-BF16 about 2x faster steps, measured on the shipped
    denoiser; slower on CPUs without them); ``fp16`` = fp16 autocast (CUDA);
    ``fp32`` = no autocast. Weights, optimiser state and EMA stay fp32 in every case.
    """
    import torch

    if precision not in TRAINING_PRECISIONS:
        raise ValueError(f"unknown training precision {precision!r}; use {', '.join(TRAINING_PRECISIONS)}")
    if precision == "auto":
        if recipe_amp and device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("training precision fp16 needs CUDA; on the CPU use bf16")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def bf16_units_in(cpuinfo: str) -> bool:
    """True when ``/proc/cpuinfo`` text lists AMX-BF16 or AVX512-BF16 among the CPU flags."""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return "amx_bf16" in flags or "avx512_bf16" in flags


@lru_cache(maxsize=1)
def cpu_has_bf16_units() -> bool:
    """True when this CPU has AMX-BF16 or AVX512-BF16 units (Linux ``/proc/cpuinfo``),
    where oneDNN runs bf16 convolutions natively: on this project's 2-core Xeon the
    shipped models restored 1.2-3.6x faster in bf16 than in fp32, within 0.015 dB.
    False when it cannot tell (other systems)."""
    try:
        return bf16_units_in(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        return False



def training_memory_format(model: torch.nn.Module, device: torch.device, autocast_dtype: torch.dtype | None) -> torch.memory_format:
    """The layout a training step runs in: channels_last (oneDNN's and cuDNN's fast
    layout: 1.4x faster bf16 steps of the derainer on this project's 2-core Xeon, same
    process), except for models with dilated convolutions under bf16 autocast on the CPU,
    which train in the contiguous layout.

    Why: oneDNN in torch 2.13 on a Xeon with AVX512-BF16 (no AMX) computes the weight
    gradients of dilated 3x3 convolutions in channels_last bf16 wrongly when the input
    channels are over 16 and not a multiple of 16 (20, 24, 28, 36: InfoAccum's growing
    inputs) on 64x64 inputs or more: NaN, or a segmentation fault, so the kernel reads
    memory it should not (measured; dilation 1, fp32 and the contiguous layout are
    right). It cannot be probed safely, so such models avoid it: the shipped denoiser's
    bf16 step in the contiguous layout took 0.97 s against 1.2 s for fp32 channels_last.
    """
    import torch

    if device.type == "cpu" and autocast_dtype == torch.bfloat16:
        dilated = any(isinstance(m, torch.nn.Conv2d) and max(m.dilation) > 1 for m in model.modules())
        if dilated:
            return torch.contiguous_format
    return torch.channels_last
