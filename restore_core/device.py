"""Device and precision choice, in one place."""

from __future__ import annotations

import torch


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` = CUDA when present, else CPU; anything else is passed to torch."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA device is available")
    return device


def pick_dtype(precision: str, device: torch.device, supports_half: bool = True) -> torch.dtype:
    """``auto`` = bf16 (or fp16) on CUDA, fp32 on CPU; or ``fp32``/``fp16``/``bf16``."""
    if precision == "auto":
        if device.type == "cuda" and supports_half:
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in table:
        raise ValueError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")
    return table[precision]
