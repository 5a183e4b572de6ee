"""FAIG (SPEC §2.3): the formula on a hand-checkable model, and the FAIG paper's
validation on a small model trained here (baseline on two degradations, target
fine-tuned on one)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from restore_core import attribution as A
from restore_core.checkpoint import save_checkpoint
from restore_core.degradations.blur import BlurConfig, add_motion_blur
from restore_core.degradations.noise import gaussian_noise
from restore_core.models import build_model

CONFIG = {"width": 8, "levels": 1, "blocks_per_level": [1], "bottleneck_blocks": 1}


def test_faig_matches_the_formula_on_a_one_conv_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False))
    base = {"0.weight": torch.tensor([[[[1.0]]], [[[2.0]]]])}
    target = {"0.weight": torch.tensor([[[[3.0]]], [[[2.5]]]])}
    x, y = torch.full((1, 1, 1, 1), 1.0), torch.zeros(1, 2, 1, 1)
    # L = sum((w x)^2) -> dL/dw_i = 2 w_i x^2; on the path w = b + a (t - b)
    steps = 4
    expected = []
    for i in range(2):
        b, t = base["0.weight"][i].item(), target["0.weight"][i].item()
        grads = sum(2 * (b + (k / steps) * (t - b)) for k in range(steps))
        expected.append(abs((t - b) * grads / steps))
    scores = A.faig(model, base, target, [(x, y)], [], steps)
    assert torch.allclose(scores["0.weight"], torch.tensor(expected))
    params = A.filter_params(model)
    assert params == [A.FilterParam("0.weight", 0, 2)]


def test_transposed_convolutions_index_filters_on_axis_one():
    model = nn.Sequential(nn.ConvTranspose2d(4, 6, 2, stride=2))
    assert A.filter_params(model) == [A.FilterParam("0.weight", 1, 6)]


def _patches(degrade, seed: int, count: int = 6, size: int = 32):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        clean = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), 1.0)
        clean = (clean - clean.min()) / (clean.max() - clean.min())
        degraded = degrade(clean, rng)
        images.append(tuple(torch.from_numpy(a.transpose(2, 0, 1).copy())[None] for a in (degraded, clean)))
    return images


def _noise(clean, rng):
    return gaussian_noise(clean, 30.0, rng)


def _blur(clean, rng):
    return add_motion_blur(clean, rng, BlurConfig(length=(5.0, 9.0), noise_sigma=(0.0, 0.0)))


def _fit(model: nn.Module, images, steps: int, seed: int) -> None:
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for step in range(steps):
        degraded, clean = images[step % len(images)]
        loss = nn.functional.l1_loss(model(degraded), clean)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    noise_train, blur_train = _patches(_noise, 1, 12), _patches(_blur, 2, 12)
    baseline = build_model("unet", CONFIG)
    mixed = [p for pair in zip(noise_train, blur_train) for p in pair]
    _fit(baseline, mixed, 160, 0)
    target = copy.deepcopy(baseline)
    _fit(target, noise_train, 160, 1)
    return baseline, target, _patches(_noise, 3), _patches(_blur, 4)


def test_reverting_faig_filters_hurts_the_target_degradation_most(trained):
    baseline, target, noise_eval, blur_eval = trained
    theta_b = {k: v.detach() for k, v in baseline.named_parameters()}
    theta_t = {k: v.detach() for k, v in target.named_parameters()}
    assert A.mean_psnr(target, theta_t, noise_eval) > A.mean_psnr(target, theta_b, noise_eval) + 0.3  # fine-tuning helped
    scores = A.faig(target, theta_b, theta_t, noise_eval, blur_eval, steps=8)
    rows = {r.method.split(" ")[0]: r for r in A.validate(target, theta_b, theta_t, noise_eval, blur_eval, scores, 0.05, steps=8)}
    faig, chance = rows["FAIG"], rows["random"]
    assert faig.filters == chance.filters > 0
    assert faig.target_drop > 2 * max(chance.target_drop, 0.01)  # far more than random filters
    assert faig.target_drop > faig.others_drop  # specific to the target degradation
    # reverting every filter gives back the baseline exactly
    everything = {k: torch.ones_like(m) for k, m in A.top_masks(target, A.rank(scores), 1.0).items()}
    reverted = A.revert_filters(target, theta_b, theta_t, everything)
    conv_names = [p.name for p in A.filter_params(target)]
    assert all(torch.equal(reverted[k], theta_b[k]) for k in conv_names)


def test_attribute_filters_cli_writes_masks_plot_and_json(trained, tmp_path):
    baseline, target, noise_eval, blur_eval = trained
    base_path = save_checkpoint(tmp_path / "base.safetensors", baseline, "unet", CONFIG, "any")
    target_path = save_checkpoint(tmp_path / "noise.safetensors", target, "unet", CONFIG, "denoise")
    for name, images in (("noise", noise_eval), ("blur", blur_eval)):
        for i, (degraded, clean) in enumerate(images):
            for folder, tensor in (("input", degraded), ("target", clean)):
                path = tmp_path / name / folder / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), np.round(tensor[0].numpy().transpose(1, 2, 0)[..., ::-1] * 255).astype(np.uint8))
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "attribute-filters", "--baseline", str(base_path), "--target", str(target_path),
         "--data", str(tmp_path / "noise"), "--others", str(tmp_path / "blur"), "--steps", "4", "--top", "5%", "--crop", "0",
         "--out", str(tmp_path / "masks.safetensors"), "--plot", str(tmp_path / "spread.png"), "--json", "--validate"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    masks = load_file(str(tmp_path / "masks.safetensors"))
    assert sum(int(m.sum()) for m in masks.values()) == report["selected"] == round(0.05 * report["filters"])
    assert report["ranking"][0]["score"] >= report["ranking"][-1]["score"]
    assert {r["method"].split(" ")[0] for r in report["validation"]} == {"FAIG", "|θ−θ̄|", "IG", "random"}
    assert cv2.imread(str(tmp_path / "spread.png")) is not None


@pytest.mark.parametrize("text", ["abc", "five%", "0%", "1.5", "-1"])
def test_a_bad_top_share_names_the_option(text):
    from cli.attribute_cmd import _parse_fraction

    with pytest.raises(ValueError, match=rf"^--top {text}: give a fraction in \(0, 1\] or a percentage like 1%$"):
        _parse_fraction(text)
    assert _parse_fraction("5%") == 0.05 and _parse_fraction("0.01") == 0.01


def test_crops_and_output_names_are_checked_before_faig_and_whole_images_fit_the_model(tmp_path):
    """`--crop 7` (under the model's size multiple) and whole images of odd sizes ended in
    a convolution's RuntimeError traceback; `--out x.png` or `--plot x.txt` wrote what was
    asked under the wrong name, and an --out in a missing folder failed after the whole run;
    the baseline given as its own target ranked filters that all scored 0."""
    from cli.attribute_cmd import _load_pairs

    small = {**CONFIG, "levels": 2, "blocks_per_level": [1, 1]}  # size multiple 4
    model = build_model("unet", small)
    base_path = save_checkpoint(tmp_path / "base.safetensors", model, "unet", small, "any")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    tuned_path = save_checkpoint(tmp_path / "tuned.safetensors", model, "unet", small, "any")
    for folder in ("input", "target"):
        (tmp_path / "set" / folder).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "set" / folder / "a.png"), np.full((29, 37, 3), 90, np.uint8))

    def run(*args, target=tuned_path):
        return subprocess.run([sys.executable, "-m", "cli.main", "attribute-filters", "--baseline", str(base_path),
                               "--target", str(target), "--data", str(tmp_path / "set"), "--steps", "2", *args],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
                              timeout=300)

    for args, message in [(["--crop", "7"], "--crop 7: give a multiple of 4 (the model's size multiple), e.g. 4 or 8"),
                          (["--crop", "2"], "--crop 2: give a multiple of 4 (the model's size multiple), e.g. 4"),
                          (["--out", str(tmp_path / "m.png")], f"--out {tmp_path / 'm.png'}: name a .safetensors file"),
                          (["--plot", str(tmp_path / "p.txt")], f"--plot {tmp_path / 'p.txt'}: name a .png file"),
                          (["--plot", str(tmp_path / "no" / "p.png")], f"--plot {tmp_path / 'no' / 'p.png'}: its folder {tmp_path / 'no'} does not exist"),
                          (["--out", str(base_path / "x.safetensors")],
                           f"--out {base_path / 'x.safetensors'}: {base_path} is a file, so no folder can be made there"),
                          # torch's RuntimeError traceback from model.to(device), as the other commands refuse it
                          (["--device", "gpu"], "unknown device 'gpu'; use auto, cpu, cuda, cuda:N or mps")]:
        result = run(*args)
        assert result.returncode == 2 and result.stderr.strip() == f"error: {message}", result.stderr
    assert run("--crop", "0", "--json").returncode == 0  # a 37 x 29 image, cut to 36 x 28
    # The baseline as its own target: every score was 0 and the table ranked filters arbitrarily.
    same = run("--crop", "0", target=base_path)
    assert same.returncode == 2 and same.stderr.strip() == (
        f"error: {base_path}: its weights are the baseline's ({base_path}), so every filter scores 0; "
        "give the model fine-tuned from it"), same.stderr
    degraded, clean = _load_pairs(tmp_path / "set", 1, 0, 4)[0]
    assert degraded.shape == clean.shape == (1, 3, 28, 36)
    assert _load_pairs(tmp_path / "set", 1, 16, 4)[0][0].shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="37x29 is smaller than the model's size multiple \\(64 pixels\\)"):
        _load_pairs(tmp_path / "set", 1, 0, 64)


def test_a_fine_tuned_denoiser_with_its_own_noise_calibration_is_the_baseline_s_network(tmp_path):
    """Every denoiser run of restore train ends by measuring a noise calibration into its
    config, so a model fine-tuned from a baseline never had the same config: FAIG refused
    every such pair ("not the same architecture and config"). The tensors decide now; a
    network with other tensors is refused naming the first that differs. Without --others
    the scores are plain integrated gradients: said, and the others' column reads '-'."""
    tiny = {"levels": 2, "base_filters": 4, "max_filters": 8, "info_accum": None, "norm": "none", "residual": True, "noise_level": True}
    torch.manual_seed(0)
    model = build_model("infoflow", tiny)
    base_path = save_checkpoint(tmp_path / "base.safetensors", model, "infoflow", {**tiny, "noise_calibration": [[0.5, 0.0], [1.0, 25.0]]}, "denoise")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    tuned_path = save_checkpoint(tmp_path / "tuned.safetensors", model, "infoflow", {**tiny, "noise_calibration": [[0.6, 0.0], [1.1, 25.0]]}, "denoise")
    wider = {**tiny, "base_filters": 8}
    other_path = save_checkpoint(tmp_path / "other.safetensors", build_model("infoflow", wider), "infoflow", wider, "denoise")
    for folder in ("input", "target"):
        (tmp_path / "set" / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "set" / "target" / "a.png"), clean)
    cv2.imwrite(str(tmp_path / "set" / "input" / "a.png"), np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8))

    def run(target: Path):
        return subprocess.run([sys.executable, "-m", "cli.main", "attribute-filters", "--baseline", str(base_path), "--target", str(target),
                               "--data", str(tmp_path / "set"), "--steps", "2", "--crop", "0", "--validate"],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
                              timeout=300)

    tuned = run(tuned_path)
    assert tuned.returncode == 0, tuned.stderr
    assert "no --others: the scores are the integrated gradients on the target degradation alone" in tuned.stderr
    assert "nan" not in tuned.stdout and "│ -" in tuned.stdout
    refused = run(other_path)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        f"error: {other_path}: not the baseline's network (tensor decoders.0.1.bias is (8,) there, (4,) in the baseline); "
        f"FAIG needs a model fine-tuned from {base_path}"), refused.stderr
