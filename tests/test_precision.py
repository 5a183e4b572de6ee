"""Half precision (SPEC: precision auto = bf16/fp16 on CUDA): every shipped model's
fp16 and bf16 outputs stay within 0.1 dB PSNR of fp32 and are never black or NaN.

Run here on the CPU (torch computes fp16/bf16 convolutions there too), so the check
holds on every machine; on a CUDA machine the same test also runs on the GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restore_core.datasets import embedded_dataset
from restore_core.engine.runner import Restorer
from restore_core.metrics import psnr
from restore_core.presets import PRESETS, find_weights, load_for_task

SHIPPED = [name for name, p in PRESETS.items() if p.weights and find_weights(p.weights) and p.task != "all"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", SHIPPED)
def test_half_precision_matches_fp32_within_a_tenth_of_a_db(name: str, device: str):
    task = PRESETS[name].task
    sample = embedded_dataset(task).samples[0]
    degraded, target = sample.load_degraded().rgb[:192, :192], sample.load_target()[:192, :192]
    scores = {}
    for precision in ("fp32", "fp16", "bf16"):
        descriptor = load_for_task(name, task, device)  # fresh: Restorer casts the model in place
        restored = Restorer(descriptor, torch.device(device), precision).restore_array(np.ascontiguousarray(degraded))
        assert np.isfinite(restored).all(), f"{name} {precision}: NaN or inf"
        assert restored.mean() > 0.05, f"{name} {precision}: black output"
        scores[precision] = psnr(restored * 255, target * 255)
    assert abs(scores["fp16"] - scores["fp32"]) < 0.1, scores
    assert abs(scores["bf16"] - scores["fp32"]) < 0.1, scores


def test_fp16_on_the_cpu_is_said_to_be_slow_and_the_others_are_not(tiny_checkpoint):
    """--precision fp16 on a CPU ran about ten times slower than fp32 (3 sample images:
    2.2 s against 0.2 s), without a word."""
    from restore_core.checkpoint import load_checkpoint

    said = {precision: Restorer(load_checkpoint(tiny_checkpoint), torch.device("cpu"), precision).notices
            for precision in ("fp16", "bf16", "fp32", "auto")}
    assert len(said["fp16"]) == 1 and said["fp16"][0].startswith("--precision fp16 on the CPU: CPUs have no fp16 arithmetic")
    assert said["bf16"] == said["fp32"] == said["auto"] == []


def test_bf16_units_are_read_from_the_cpu_flags():
    """The --precision bf16 hint of the restore commands rests on this reading of /proc/cpuinfo."""
    from restore_core.device import bf16_units_in

    assert bf16_units_in("processor : 0\nflags\t\t: fpu sse2 avx2 amx_bf16 amx_tile\n")
    assert bf16_units_in("flags : fpu avx512f avx512_bf16\n")
    assert not bf16_units_in("flags : fpu sse2 avx2 avx512f\nbugs : amx_bf16\n")
    assert not bf16_units_in("")


@pytest.mark.parametrize("requested", ["tpu", "meta", "cuda:x", ""])
def test_an_unknown_device_is_a_one_line_usage_error(requested):
    from restore_core.device import pick_device

    with pytest.raises(ValueError, match="unknown device"):
        pick_device(requested)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_by_name():
    from restore_core.device import pick_device

    for requested in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match=f"--device {requested} was asked for"):
            pick_device(requested)
