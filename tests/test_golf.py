"""Golf Optimizer: Table 1's parameter counts, the iteration and training of Eq. 4, the perceptual loss."""

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from restore_core.checkpoint import load_checkpoint
from restore_core.configs import ConfigError
from restore_core.models import build_model, count_parameters
from restore_core.models.golf import GolfNet, GolfNetConfig
from restore_core.presets import GOLF_PAPER, PRESETS
from restore_core.training.losses import VGGPerceptualLoss, golf_step_loss, vgg11_bn_features
from restore_core.training.recipes import RECIPES, DataConfig
from restore_core.training.sources import prepare_data
from restore_core.training.trainer import Trainer, TrainingError


def test_table1_parameter_counts_exactly():
    assert count_parameters(GolfNet(GolfNetConfig(filters=32))) == 466_348  # F
    assert count_parameters(GolfNet(GolfNetConfig(filters=16))) == 120_188  # G


def test_fifty_basic_layers():
    net = GolfNet(GolfNetConfig(filters=16))
    blocks = list(net.body)
    # first conv + 8 BB units of six basic layers + last conv
    assert len(blocks) == 10 and sum(len(b.residual) for b in blocks[1:-1]) == 48


def test_iterates_apply_the_shared_step():
    model = build_model("golf", {"iterations": 3}).eval()
    y = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        xs = model.iterates(y, iterations=4)
        assert len(xs) == 5
        assert torch.allclose(xs[2], model.step(xs[1]))
        assert torch.allclose(model(y), model.iterates(y)[-1])
    assert model(y).shape == y.shape


# --- training (two stages, Eq. 4) and the perceptual loss -------------------------

TINY_UNET = {"width": 4, "levels": 1, "blocks_per_level": [1], "bottleneck_blocks": 1}


def test_paper_preset_is_table1():
    model = build_model("golf", GOLF_PAPER)
    assert count_parameters(model.first) == 466_348 and count_parameters(model.step) == 120_188
    assert PRESETS["golf-paper"].parameters() == 466_348 + 120_188


def test_eq4_step_loss_is_the_mean_over_taps_by_hand():
    step = GolfNet(GolfNetConfig(filters=4))
    x0, target = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    x1 = step(x0)
    x2 = step(x1)
    x3 = step(x2)
    expected = sum(torch.nn.functional.mse_loss(x, target) for x in (x1, x2, x3)) / 3
    got = golf_step_loss(step, x0, target, 3, torch.nn.functional.mse_loss)
    assert torch.allclose(got, expected)


def _golf_recipe(tmp_path: Path, stages=(3, 2)):
    clean = tmp_path / "clean"
    clean.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(clean / f"{i}.png"), rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    model = {"first_architecture": "unet", "first": TINY_UNET, "step_architecture": "unet", "step": TINY_UNET, "iterations": 3}
    return replace(
        RECIPES["golf-deblur"], model=model, steps=sum(stages), stages=stages, batch_size=2, patch_size=32,
        val_every=1000, checkpoint_every=100, train_iterations=2,
        degradation_options={"length": [3.0, 7.0]}, data=DataConfig(clean=(str(clean),)),
    )


def test_stage_one_trains_f_only_then_stage_two_g_only(tmp_path):
    torch.set_num_threads(1)
    recipe = _golf_recipe(tmp_path)
    data = prepare_data(recipe)
    trainer = Trainer(recipe, tmp_path / "run", torch.device("cpu"), log=lambda s: None)
    g0 = copy_state(trainer.model.step)
    trainer.train(data, until=3)
    assert trainer.step == 3
    assert all(torch.equal(a, b) for a, b in zip(g0.values(), trainer.model.step.state_dict().values())), "stage 1 moved G"
    stage1 = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert stage1.config["iterations"] == 0  # F alone until G is trained
    trainer.train(data)
    # Stage 2 starts from F's EMA weights and never moves them again.
    f_ema = {k[len("first."):]: v for k, v in trainer.ema.shadow.items() if k.startswith("first.")}
    assert all(torch.equal(a, f_ema[k]) for k, a in trainer.model.first.state_dict().items())
    assert any(not torch.equal(a, b) for a, b in zip(g0.values(), trainer.model.step.state_dict().values())), "stage 2 left G untouched"
    final = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert final.config["iterations"] == 3
    assert "perceptual term off" in final.recipe["objective"] and "N = 2" in final.recipe["objective"]


def copy_state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_stages_must_sum_to_steps_and_scale_with_steps():
    with pytest.raises(ConfigError, match="stages"):
        replace(RECIPES["golf-deblur"], stages=(10, 10))
    scaled = RECIPES["golf-deblur"].with_steps(900)
    assert scaled.steps == 900 and sum(scaled.stages) == 900 and scaled.stages[0] == 700


def test_lr_schedule_restarts_in_stage_two():
    recipe = replace(RECIPES["golf-deblur"], steps=200, stages=(100, 100), lr=1.0, milestones=(0.5,), gamma=0.1)
    assert recipe.lr_at(0) == 1.0 and recipe.lr_at(60) == pytest.approx(0.1)
    assert recipe.lr_at(100) == 1.0 and recipe.lr_at(160) == pytest.approx(0.1)


def test_perceptual_loss_reads_vgg11_bn_files_safely(tmp_path):
    torch.manual_seed(0)
    features = vgg11_bn_features()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # ignored
    path = tmp_path / "vgg11_bn.safetensors"
    save_file(state, str(path))
    loss = VGGPerceptualLoss(path)
    x = torch.rand(1, 3, 64, 64)
    assert loss(x, x).item() == 0.0
    assert loss(x, x.flip(-1)).item() > 0
    assert not any(p.requires_grad for p in loss.parameters())
    # torchvision's .pth layout, read with weights_only=True
    pth = tmp_path / "vgg11_bn.pth"
    torch.save(state, pth)
    assert torch.equal(VGGPerceptualLoss(pth).features[0].weight, loss.features[0].weight)
    # the wrong network is refused with the file named
    save_file({"features.0.weight": torch.zeros(8, 3, 3, 3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="other.safetensors: not VGG-11-BN"):
        VGGPerceptualLoss(tmp_path / "other.safetensors")
    # a file that is not PyTorch's said "KeyError: 174812789"; now the cause in words
    (tmp_path / "junk.pth").write_text("junk\n")
    with pytest.raises(ValueError, match=r"junk.pth: not a PyTorch file \(neither torch.save's zip archive nor its older pickle format\) "
                                         r"\(--perceptual-weights takes VGG-11-BN weights\)$"):
        VGGPerceptualLoss(tmp_path / "junk.pth")


def test_recipe_with_perceptual_weights_records_them(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "vgg.safetensors"
    save_file({k: v for k, v in vgg11_bn_features().state_dict().items()}, str(path))
    recipe = replace(_golf_recipe(tmp_path, stages=(1, 1)), perceptual_weights=str(path))
    trainer = Trainer(recipe, tmp_path / "run", torch.device("cpu"), log=lambda s: None)
    trainer.train(prepare_data(recipe))
    assert "VGG-11-BN perceptual (vgg.safetensors)" in load_checkpoint(tmp_path / "run" / "model.safetensors").recipe["objective"]
    with pytest.raises(TrainingError, match="missing.safetensors"):
        Trainer(replace(recipe, perceptual_weights=str(tmp_path / "missing.safetensors")), tmp_path / "r2", torch.device("cpu"))


def test_paper_preset_trains_and_loads(tmp_path):
    torch.set_num_threads(1)
    recipe = replace(_golf_recipe(tmp_path, stages=(1, 1)), model=GOLF_PAPER, batch_size=1)
    trainer = Trainer(recipe, tmp_path / "run", torch.device("cpu"), log=lambda s: None)
    trainer.train(prepare_data(recipe))
    loaded = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert loaded.architecture == "golf" and loaded.parameters == 466_348 + 120_188
    assert loaded.model.iterations == 3
