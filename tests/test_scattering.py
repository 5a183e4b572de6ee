"""Scattering-model recomposition (restore_core/models/scattering.py) and its use by the dehazer."""

import json

import numpy as np
import pytest
import torch

from restore_core.models.infoflow import InfoAccumConfig, InfoFlowConfig, InfoFlowGenerator
from restore_core.models.scattering import RecomposeConfig, box_mean, guided_filter, recompose, transmission

from conftest import shared_dataset


def test_box_mean_matches_a_brute_force_window_cut_at_the_border():
    x = torch.rand(2, 3, 9, 13, dtype=torch.float64)
    r = 2
    expected = torch.empty_like(x)
    for i in range(9):
        for j in range(13):
            window = x[:, :, max(0, i - r): i + r + 1, max(0, j - r): j + r + 1]
            expected[:, :, i, j] = window.mean(dim=(2, 3))
    assert torch.allclose(box_mean(x, r), expected, atol=1e-12)
    assert torch.allclose(box_mean(x, 50), x.mean(dim=(2, 3), keepdim=True).expand_as(x), atol=1e-12)  # window > image


def test_guided_filter_keeps_a_constant_and_the_guide_itself():
    guide = torch.rand(1, 1, 30, 40, dtype=torch.float64)
    constant = torch.full_like(guide, 0.37)
    assert torch.allclose(guided_filter(guide, constant, 5, 1e-3), constant, atol=1e-9)
    # Filtering the guide by itself with a tiny eps is edge-preserving: it comes back nearly unchanged.
    assert (guided_filter(guide, guide, 5, 1e-8) - guide).abs().max() < 1e-3
    # A large eps flattens a: the output tends to the box mean of the source.
    assert torch.allclose(guided_filter(guide, guide, 5, 1e6), box_mean(box_mean(guide, 5), 5), atol=1e-5)


def _hazy(scene: torch.Tensor, t: torch.Tensor, airlight: float) -> torch.Tensor:
    return scene * t + airlight * (1 - t)  # I = J t + A (1 - t)


def test_transmission_and_recompose_invert_the_scattering_model():
    torch.manual_seed(0)
    scene = torch.rand(1, 3, 48, 64, dtype=torch.float64) * 0.8
    t = torch.linspace(0.3, 0.9, 64, dtype=torch.float64).view(1, 1, 1, 64).expand(1, 1, 48, 64)  # depth grows left to right
    hazy = _hazy(scene, t, 0.9)
    assert torch.allclose(transmission(hazy, scene, airlight=0.9), t, atol=1e-9)
    exact = recompose(hazy, scene, RecomposeConfig(radius=0, airlight=0.9))
    assert torch.allclose(exact, scene, atol=1e-9)


def test_recompose_restores_the_detail_a_smoothed_estimate_lost():
    """The point of recomposition: the network's output is blurred, the input holds the
    detail; with a piecewise-smooth t the recomposed image is much closer to the scene."""
    rng = np.random.default_rng(1)
    scene = torch.from_numpy(rng.uniform(0.1, 0.7, (1, 3, 64, 64)))
    t = torch.full((1, 1, 64, 64), 0.6, dtype=torch.float64)
    t[..., 32:] = 0.4  # a depth step
    hazy = _hazy(scene, t, 1.0)
    blurred = box_mean(scene, 2)  # what an over-smoothing network returns
    restored = recompose(hazy, blurred, RecomposeConfig(radius=8, eps=1e-3))
    error_blurred = (blurred - scene).pow(2).mean()
    error_restored = (restored - scene).pow(2).mean()
    assert error_restored < error_blurred / 4


def test_recompose_runs_in_fp32_and_returns_the_input_precision():
    hazy = torch.rand(1, 3, 16, 16).to(torch.bfloat16)
    out = recompose(hazy, hazy.clone(), RecomposeConfig(radius=3))
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), hazy.float(), atol=1e-2)  # t = 1 where the output equals the input


def _generator(recompose_config=None) -> InfoFlowGenerator:
    torch.manual_seed(0)
    config = InfoFlowConfig(levels=2, base_filters=4, norm="none", residual=True,
                            info_accum=InfoAccumConfig(layers=1, growth=2), recompose=recompose_config)
    return InfoFlowGenerator(config).eval()


def test_generator_recomposes_its_output_when_configured_and_can_be_switched():
    plain, recomposing = _generator(), _generator(RecomposeConfig(radius=4))
    recomposing.load_state_dict(plain.state_dict())  # recomposition has no weights
    y = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        base = plain(y)
        assert torch.allclose(recomposing(y), recompose(y, base, RecomposeConfig(radius=4)), atol=1e-6)
        recomposing.set_recompose_radius(0)
        assert torch.equal(recomposing(y), base)
        plain.set_recompose_radius(7)
        assert torch.allclose(plain(y), recompose(y, base, RecomposeConfig(radius=7)), atol=1e-6)
    with pytest.raises(ValueError, match="radius"):
        plain.set_recompose_radius(-1)


def test_recompose_config_round_trips_through_a_checkpoint(tmp_path):
    from restore_core.checkpoint import load_checkpoint, save_checkpoint
    from restore_core.configs import config_to_dict

    model = _generator(RecomposeConfig(radius=12, eps=2e-3))
    config = config_to_dict(model.config)
    path = save_checkpoint(tmp_path / "dehaze.safetensors", model, "infoflow", config, "dehaze")
    loaded = load_checkpoint(path)
    assert loaded.model.recompose == RecomposeConfig(radius=12, eps=2e-3)
    assert json.loads(json.dumps(loaded.config))["recompose"]["radius"] == 12


@pytest.mark.slow
def test_shipped_dehazer_gains_ssim_on_sots_from_recomposition():
    """On real SOTS pairs (not used to choose radius or eps): recomposition lifts SSIM Y and RGB."""
    from restore_core.datasets import load_dataset
    from restore_core.engine.runner import Restorer
    from restore_core.evaluation import Protocol, evaluate_samples
    from restore_core.presets import load_for_task

    data = load_dataset("sots-indoor", shared_dataset("SOTS_indoor_mini4"))
    descriptor = load_for_task("infoflow-dehaze", "dehaze")
    assert descriptor.model.recompose is not None
    restorer = Restorer(descriptor, torch.device("cpu"), "fp32", 0, 32)
    recomposed = evaluate_samples(data.samples, restorer.restore_array, "recomposed", Protocol())
    descriptor.apply_setting("recompose_radius", 0)
    network = evaluate_samples(data.samples, restorer.restore_array, "network", Protocol())
    assert recomposed.ssim_y > network.ssim_y + 0.004
    assert recomposed.ssim_rgb > network.ssim_rgb + 0.01
    assert recomposed.psnr_y > network.psnr_y


def test_engine_recomposes_whole_images_after_tiling(tmp_path):
    """Tiles go through the network only; the recomposition's guided filter then sees
    the whole image, so its windows are never cut at tile edges."""
    from restore_core.checkpoint import load_checkpoint, save_checkpoint
    from restore_core.configs import config_to_dict
    from restore_core.engine.runner import Restorer

    model = _generator(RecomposeConfig(radius=6))
    path = save_checkpoint(tmp_path / "dehaze.safetensors", model, "infoflow", config_to_dict(model.config), "dehaze")
    x = torch.rand(1, 3, 72, 100)
    network_only = load_checkpoint(path)
    network_only.apply_setting("recompose_radius", 0)
    tiled_network = Restorer(network_only, torch.device("cpu"), "fp32", tile=32, tile_overlap=8)(x)
    tiled = Restorer(load_checkpoint(path), torch.device("cpu"), "fp32", tile=32, tile_overlap=8)(x)
    expected = recompose(x, tiled_network, RecomposeConfig(radius=6)).clamp(0, 1)
    assert torch.allclose(tiled, expected, atol=1e-5)
    whole = Restorer(load_checkpoint(path), torch.device("cpu"), "fp32")(x)
    with torch.no_grad():
        assert torch.allclose(whole, model(x).clamp(0, 1), atol=1e-5)  # untiled: the same as the model's own forward


def test_dehaze_recipe_trains_through_the_recomposition(tmp_path):
    """The loss is on the recomposed output: a few steps move the network's weights, and
    the saved checkpoint keeps the recompose section."""
    from dataclasses import replace

    import cv2

    from restore_core.checkpoint import load_checkpoint
    from restore_core.training.recipes import RECIPES, DataConfig
    from restore_core.training.sources import prepare_data
    from restore_core.training.trainer import Trainer

    clean = tmp_path / "clean"
    clean.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(clean / f"{i}.png"), rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    model = {"levels": 2, "base_filters": 4, "max_filters": 8, "info_accum": {"layers": 1, "growth": 2}, "norm": "none",
             "residual": True, "recompose": {"radius": 4}}
    recipe = replace(RECIPES["infoflow-dehaze"], model=model, steps=3, batch_size=2, patch_size=32, val_every=1000,
                     checkpoint_every=3, pretrain_steps=0, ema_decay=0.0, data=DataConfig(clean=(str(clean),)))
    torch.manual_seed(0)
    trainer = Trainer(recipe, tmp_path / "run", torch.device("cpu"), log=lambda s: None)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.model.recompose == RecomposeConfig(radius=4) and trainer.model.finish_in_forward
    trainer.train(prepare_data(recipe))
    changed = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("encoders.") for k in changed) and any(k.startswith("decoders.") for k in changed)
    saved = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert saved.model.recompose == RecomposeConfig(radius=4)
