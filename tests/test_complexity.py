"""Multiply-accumulates of a forward pass (restore_core.models.complexity), as papers count them."""

import json
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from restore_core.models import build_model
from restore_core.models.complexity import architecture_macs, count_macs, macs_input_side
from restore_core.presets import PRESETS


def test_a_convolutions_macs_are_its_outputs_times_its_kernel():
    """Conv 3 -> 8, 3x3, on 256 x 256: 256 * 256 outputs x 8 channels x (3 * 3 * 3) taps;
    a 1 x 1 convolution after it adds 256 * 256 * 4 * 8; the ReLU between adds nothing."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
    assert count_macs(model) == 256 * 256 * 8 * 27 + 256 * 256 * 4 * 8
    assert count_macs(model, side=64) == 64 * 64 * (8 * 27 + 4 * 8)


def test_taylor_adds_its_derivative_network_once_per_order():
    """SPEC 2.1: G (6 -> 16 -> 3 channels, 3x3) runs once for each of the n orders, at full
    resolution, on top of the mapping network F."""
    taylor = PRESETS["taylor-derain"]
    mapping = architecture_macs(taylor.config["mapping_architecture"], taylor.config["mapping"])
    per_order = 256 * 256 * 9 * (6 * 16 + 16 * 3)
    assert architecture_macs(taylor.architecture, taylor.config) == mapping + taylor.config["order"] * per_order


def test_a_model_whose_forward_reads_its_input_is_counted_on_the_cpu():
    """A blind denoiser estimates the noise level from the pixels (a value the meta device
    does not have): counted with its initial weights instead, as the same model counts."""
    denoiser = PRESETS["infoflow-denoise"]
    torch.manual_seed(0)
    built = build_model(denoiser.architecture, denoiser.config).eval()
    assert architecture_macs(denoiser.architecture, denoiser.config) == count_macs(built, macs_input_side(built.size_multiple))


def test_the_input_side_is_rounded_up_to_the_models_size_multiple():
    assert macs_input_side(16) == 256 and macs_input_side(1) == 256 and macs_input_side(96) == 288


def test_models_presets_lists_macs_beside_parameters():
    listed = subprocess.run([sys.executable, "-m", "cli.main", "models", "--presets", "--json"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == set(PRESETS)
    unet = PRESETS["unet-s"]
    assert rows["unet-s"]["macs_256"] == architecture_macs(unet.architecture, unet.config) > 10**9
    assert rows["golf-paper"]["macs_256"] > rows["golf-fast"]["macs_256"]  # full-resolution convolutions throughout
