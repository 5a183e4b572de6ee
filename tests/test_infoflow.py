"""Information-flow generator and PatchGAN (shapes, dilations, channel counts, receptive field) and their training."""

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from restore_core.checkpoint import load_checkpoint
from restore_core.presets import PRESETS
from restore_core.training import trainer as trainer_module
from restore_core.training.losses import lsgan_discriminator_loss, lsgan_generator_loss
from restore_core.training.recipes import RECIPES, DataConfig
from restore_core.training.sources import prepare_data
from restore_core.training.trainer import Trainer
from restore_core.models.infoflow import (
    InfoAccum, InfoAccumConfig, InfoAccumLayer, InfoFlowConfig, InfoFlowGenerator, PatchDiscriminator, PatchGANConfig,
)


def test_infoaccum_dilations_paddings_and_channels():
    block = InfoAccum(3, InfoAccumConfig(layers=4, growth=2))
    assert block.out_channels == 3 + 3 * 4 * 2
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.dilation[0], c.padding[0], c.kernel_size[0]) for c in convs[:3]] == [(1, 1, 3), (3, 3, 3), (5, 5, 3)]
    x = torch.rand(1, 3, 21, 17)
    out = block(x)
    assert out.shape == (1, 27, 21, 17)
    assert torch.equal(out[:, :3], x)  # dense: the input is carried through


@pytest.mark.parametrize("norm", ["none", "instance"])
def test_infoaccum_layer_is_eq14_whether_or_not_its_paths_share_one_relu(norm):
    """Without a norm the layer computes ReLU(x) once for its three paths: the same
    numbers as each path's own norm -> ReLU -> dilated conv, which Eq. 14 writes."""
    torch.manual_seed(0)
    layer = InfoAccumLayer(5, 3, norm)
    assert layer.shares_activation == (norm == "none")
    x = torch.randn(2, 5, 19, 23)
    by_paths = torch.cat([x] + [path(x) for path in layer.paths], dim=1)
    assert torch.equal(layer(x), by_paths)
    before = x.clone()
    layer(x)
    assert torch.equal(x, before)


@pytest.mark.parametrize("channels_last", [True, False])
def test_inference_writes_features_into_one_tensor_with_the_numbers_of_the_concatenations(channels_last):
    """Without autograd, InfoAccum's layers and the refinement heads write into tensors
    made once; with it (training), each layer and head concatenates anew. Same output."""
    torch.manual_seed(0)
    config = InfoFlowConfig(levels=2, base_filters=8, max_filters=16, info_accum=InfoAccumConfig(layers=3, growth=2),
                            norm="none", residual=True, refine=6, refine_more=(5,), noise_level=True)
    generator = InfoFlowGenerator(config).eval()
    for parameter in generator.parameters():  # the heads start at zero: make them count
        parameter.data += 0.05 * torch.randn_like(parameter)
    generator.set_sigma(25.0)
    y = torch.rand(2, 3, 24, 20)
    if channels_last:
        generator = generator.to(memory_format=torch.channels_last)
        y = y.contiguous(memory_format=torch.channels_last)
    before = y.clone()
    with torch.no_grad():
        written = generator(y)
        accumulated = generator.info_accum(y * 2 - 1)
    concatenated = generator(y).detach()  # autograd on: the concatenating path
    assert torch.equal(written, concatenated)
    assert torch.equal(accumulated, generator.info_accum.layers(y * 2 - 1).detach())
    assert accumulated.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert torch.equal(y, before)


def test_generator_levels_subpixel_top_and_size():
    config = InfoFlowConfig(levels=3, base_filters=8, info_accum=InfoAccumConfig(layers=2, growth=2))
    gen = InfoFlowGenerator(config)
    assert gen.size_multiple == 8
    assert isinstance(gen.decoders[-1][-1], nn.PixelShuffle)
    y = torch.rand(2, 3, 32, 40)
    out = gen(y)
    assert out.shape == y.shape and out.min() >= 0 and out.max() <= 1
    plain = InfoFlowGenerator(InfoFlowConfig(levels=3, base_filters=8, subpixel_top=False, info_accum=None))
    assert isinstance(plain.decoders[-1][-1], nn.ConvTranspose2d)


def test_patchgan_has_five_convs_and_70px_receptive_field():
    disc = PatchDiscriminator(PatchGANConfig(base_filters=8, norm="none"))
    assert sum(isinstance(m, nn.Conv2d) for m in disc.modules()) == 5
    x = torch.rand(1, 3, 160, 160, requires_grad=True)
    y = torch.rand(1, 3, 160, 160)
    scores = disc(x, y)
    centre = scores[0, 0, scores.shape[2] // 2, scores.shape[3] // 2]
    centre.backward()
    rows = (x.grad[0].abs().sum(dim=(0, 2)) > 0).nonzero()
    assert int(rows.max() - rows.min() + 1) == 70


# --- training: LSGAN losses, adversarial resume, reconstruction pre-training ------

TINY = {"levels": 2, "base_filters": 4, "max_filters": 8, "info_accum": {"layers": 1, "growth": 2}, "norm": "none", "residual": True}


def test_lsgan_losses_by_hand():
    real, fake = torch.tensor([0.9, 0.4]), torch.tensor([0.2, -0.1])
    assert torch.isclose(lsgan_generator_loss(fake), ((fake - 1) ** 2).mean())
    assert torch.isclose(lsgan_discriminator_loss(real, fake), 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean())


def test_paper_preset_is_unet5_infoaccum15_subpixel():
    gen = InfoFlowGenerator(InfoFlowConfig(**{k: v for k, v in PRESETS["infoflow-paper"].config.items() if k != "info_accum"},
                                           info_accum=InfoAccumConfig(**PRESETS["infoflow-paper"].config["info_accum"])))
    assert gen.config.levels == 5 and len(gen.info_accum.layers) == 15 and isinstance(gen.decoders[-1][-1], nn.PixelShuffle)


def _recipe(tmp_path: Path, name: str, steps: int):
    clean = tmp_path / "clean"
    clean.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(clean / f"{i}.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    return replace(RECIPES[name], model=TINY, discriminator={"base_filters": 4}, steps=steps, batch_size=2, patch_size=32,
                   val_every=1000, checkpoint_every=2, pretrain_steps=1, data=DataConfig(clean=(str(clean),)))


def test_adversarial_training_resumes_exactly_with_the_discriminator(tmp_path):
    torch.set_num_threads(1)
    recipe = _recipe(tmp_path, "infoflow-denoise-gan", steps=4)
    data = prepare_data(recipe)
    assert data.summary["clean_colour_grey"] == [3, 0]
    full = Trainer(recipe, tmp_path / "full", torch.device("cpu"), log=lambda s: None)
    full.train(data)
    half = Trainer(recipe, tmp_path / "half", torch.device("cpu"), log=lambda s: None)
    half.train(data, until=2)
    resumed = Trainer(recipe, tmp_path / "half", torch.device("cpu"), log=lambda s: None)
    resumed.resume()
    resumed.train(data)
    for a, b in zip(full.discriminator.state_dict().values(), resumed.discriminator.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    saved = load_checkpoint(tmp_path / "full" / "model.safetensors")
    assert saved.architecture == "infoflow" and "LSGAN" in saved.recipe["objective"] and "pre-training" in saved.recipe["objective"]
    assert not any(k.startswith("disc") for k in saved.model.state_dict())  # inference checkpoint: generator only


def test_pretraining_steps_reconstruct_clean_images(tmp_path, monkeypatch):
    seen = []
    original = trainer_module.restoration_loss

    def spy(model, degraded, clean, *args):
        seen.append(torch.equal(degraded, clean))
        return original(model, degraded, clean, *args)

    monkeypatch.setattr(trainer_module, "restoration_loss", spy)
    recipe = replace(_recipe(tmp_path, "infoflow-denoise", steps=3), pretrain_steps=2)
    Trainer(recipe, tmp_path / "run", torch.device("cpu"), log=lambda s: None).train(prepare_data(recipe))
    assert seen == [True, True, False]


def test_refinement_head_starts_as_an_exact_no_op_and_learns():
    """Growing refine from a refine = 0 generator changes nothing until trained."""
    base_config = InfoFlowConfig(levels=2, base_filters=8, info_accum=InfoAccumConfig(layers=2, growth=2), norm="none", residual=True)
    base = InfoFlowGenerator(base_config)
    grown = InfoFlowGenerator(replace(base_config, refine=6))
    result = grown.load_state_dict(base.state_dict(), strict=False)
    assert not result.unexpected_keys and all(k.startswith("refine.") for k in result.missing_keys)
    y = torch.rand(2, 3, 24, 20)
    assert torch.equal(grown(y), base(y))
    # the zero-initialised last layer still gets a gradient, so the head can learn
    grown(y).sub(torch.rand_like(y)).abs().mean().backward()
    assert grown.refine[-1].weight.grad.abs().sum() > 0
    assert len([m for m in grown.refine if isinstance(m, nn.Conv2d)]) == 3


def test_further_refinement_heads_grow_exactly_and_correct_in_cascade():
    """refine_more adds heads after the first; each starts as an exact no-op, learns, and
    sees the output of the head before it."""
    base_config = InfoFlowConfig(levels=2, base_filters=8, info_accum=InfoAccumConfig(layers=2, growth=2), norm="none", residual=True, refine=4)
    base = InfoFlowGenerator(base_config)
    grown = InfoFlowGenerator(replace(base_config, refine_more=(6, 5)))
    result = grown.load_state_dict(base.state_dict(), strict=False)
    assert not result.unexpected_keys and all(k.startswith("refine_more.") for k in result.missing_keys)
    assert [head[0].out_channels for head in grown.refine_more] == [6, 5]
    y = torch.rand(2, 3, 24, 20)
    assert torch.equal(grown(y), base(y))
    grown(y).sub(torch.rand_like(y)).abs().mean().backward()
    assert all(head[-1].weight.grad.abs().sum() > 0 for head in grown.refine_more)

    # cascade: the second head's input carries the first head's corrected output
    with torch.no_grad():
        grown.refine_more[0][-1].bias.fill_(0.1)
    seen: list[torch.Tensor] = []
    hook = grown.refine_more[1].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        out = grown(y)
    hook.remove()
    assert torch.allclose(out, base(y) + 0.05, atol=1e-6)  # head 0's bias 0.1, halved as every head's correction
    assert torch.allclose(seen[0][:, -3:], out * 2 - 1, atol=1e-6)  # head 1 (still zero) saw that output

    with pytest.raises(ValueError, match="refine_more needs a first head"):
        InfoFlowGenerator(replace(base_config, refine=0, refine_more=(4,)))
    with pytest.raises(ValueError, match=r"refine_more must be >= 1, got \(0,\)"):
        InfoFlowGenerator(replace(base_config, refine_more=(0,)))


def test_init_grows_a_model_and_refuses_misfitting_checkpoints(tmp_path):
    from restore_core.configs import override
    from restore_core.training.trainer import TrainingError

    recipe = _recipe(tmp_path, "infoflow-denoise", steps=2)
    first = Trainer(recipe, tmp_path / "a", torch.device("cpu"), log=lambda s: None)
    first.train(prepare_data(recipe))
    source = tmp_path / "a" / "model.safetensors"
    logged: list[str] = []
    grown_recipe = override(override(recipe, "init", str(source)), "model.refine", "4")
    grown = Trainer(grown_recipe, tmp_path / "b", torch.device("cpu"), log=logged.append)
    y = torch.rand(1, 3, 32, 32)
    source_model = load_checkpoint(source).model.to(memory_format=torch.channels_last)  # the trainer's layout
    with torch.no_grad():
        assert torch.equal(grown.model(y), source_model(y))
    assert any("new, freshly initialised: refine" in line for line in logged)
    wider = override(override(recipe, "init", str(source)), "model.base_filters", str(recipe.model["base_filters"] * 2))
    with pytest.raises(TrainingError, match="do not fit"):
        Trainer(wider, tmp_path / "c", torch.device("cpu"), log=lambda s: None)


def test_noise_level_input_starts_as_an_exact_no_op_and_conditions_each_image():
    """Growing noise_level from a blind generator changes nothing until trained; once
    trained, the told level and 'unknown' (NaN) act per image in a batch."""
    from restore_core.models.infoflow import NoiseLevelEmbedding

    base_config = InfoFlowConfig(levels=2, base_filters=8, info_accum=InfoAccumConfig(layers=2, growth=2), norm="none", residual=True, refine=4)
    base = InfoFlowGenerator(base_config)
    grown = InfoFlowGenerator(replace(base_config, noise_level=True))
    result = grown.load_state_dict(base.state_dict(), strict=False)
    assert not result.unexpected_keys and all(k.startswith("noise_level_embedding.") for k in result.missing_keys)
    y = torch.rand(3, 3, 24, 20)
    assert torch.equal(grown(y), base(y))
    assert torch.equal(grown(y, noise_level=torch.tensor([5.0, float("nan"), 50.0])), base(y))
    grown(y, noise_level=torch.tensor([25.0, float("nan"), 5.0])).sub(torch.rand_like(y)).abs().mean().backward()
    assert grown.noise_level_embedding.mlp[-1].weight.grad.abs().sum() > 0  # it can learn

    with torch.no_grad():
        grown.noise_level_embedding.mlp[-1].weight.normal_(0, 0.5)
    levels = torch.tensor([25.0, float("nan"), 5.0])
    with torch.no_grad():
        batch = grown(y, noise_level=levels)
        for i, level in enumerate(levels.tolist()):  # each image sees only its own level
            grown.set_sigma(None if level != level else level)
            assert torch.allclose(batch[i : i + 1], grown(y[i : i + 1]), atol=1e-6)
        grown.set_sigma(None)
        blind, told = grown(y), grown(y, noise_level=torch.full((3,), 25.0))
    assert (blind - told).abs().max() > 1e-3
    assert isinstance(grown.noise_level_embedding, NoiseLevelEmbedding)


def test_auto_sigma_tells_every_tile_the_whole_image_estimate():
    """A model with a noise-level input estimates each image's level when not told one
    (the default, --sigma auto): condition() estimates it on the whole image and every
    later forward call (one per tile) is told that level; 'blind' tells nothing."""
    from restore_core.degradations.noise_level import estimate_noise_level

    torch.manual_seed(0)
    model = InfoFlowGenerator(InfoFlowConfig(levels=2, base_filters=4, info_accum=None, norm="none", residual=True, noise_level=True))
    with torch.no_grad():
        model.noise_level_embedding.mlp[-1].weight.normal_(0, 0.5)  # as if trained: the level shows
    assert model.estimates_sigma  # the default
    image = torch.rand(2, 3, 32, 32)
    image[1] = 0.5 + 0.01 * torch.randn(3, 32, 32)  # a second, much less noisy image
    whole = estimate_noise_level(image)
    assert whole[0] > 5 * whole[1]
    with torch.no_grad():
        model.condition(image)
        tile = image[..., :16, :16]
        assert torch.equal(model(tile), model(tile, noise_level=whole))  # the whole image's level, not the tile's
        assert not torch.equal(model(tile), model(tile, noise_level=estimate_noise_level(tile)))
        model.set_sigma("blind")
        model.condition(image)
        assert torch.equal(model(tile), model(tile, noise_level=torch.full((2,), float("nan"))))
        model.set_sigma(30)
        assert torch.equal(model(tile), model(tile, noise_level=torch.full((2,), 30.0)))
        model.set_sigma("auto")
        model.condition(image)
        assert torch.equal(model(tile), model(tile, noise_level=whole))
    with pytest.raises(ValueError, match="'quick' or 'blind'"):
        model.set_sigma("loud")


def test_blind_generator_refuses_a_noise_level():
    model = InfoFlowGenerator(InfoFlowConfig(levels=2, base_filters=4, info_accum=None, norm="none", residual=True))
    assert not model.estimates_sigma
    for level in (25, "auto"):
        with pytest.raises(ValueError, match="blind"):
            model.set_sigma(level)
    model.set_sigma(None)  # nothing told: fine
    model.set_sigma("blind")
    told = InfoFlowGenerator(InfoFlowConfig(levels=2, base_filters=4, info_accum=None, norm="none", residual=True, noise_level=True))
    with pytest.raises(ValueError, match="between 0 and 255"):
        told.set_sigma(-1)


def test_a_level_told_beyond_the_trained_range_is_cautioned(tmp_path):
    """--sigma 120 to a model trained on 0-50 ran without a word, and so did --sigma 0.1
    (the 0-1 scale's 25.5); inside the range, and for the estimated modes, nothing is said."""
    from restore_core.checkpoint import save_checkpoint

    config = InfoFlowConfig(levels=2, base_filters=4, info_accum=None, norm="none", residual=True, noise_level=True)
    from restore_core.configs import config_to_dict

    path = save_checkpoint(tmp_path / "told.safetensors", InfoFlowGenerator(config), "infoflow", config_to_dict(config), "denoise",
                           recipe={"degradation": "noise", "degradation_options": {"sigma": [0, 50]}})
    descriptor = load_checkpoint(path)
    assert descriptor.apply_setting("sigma", 120.0) == (
        "--sigma 120.0: told was trained on noise levels 0-50; told a level outside them, it restores images unlike any "
        "it learned from (not measured)")
    for inside in (0.0, 25.0, 50.0, "auto", "quick", "blind"):
        assert descriptor.apply_setting("sigma", inside) is None, inside
    # a level on the 0-1 scale of float images (0.1 meaning 25.5) is almost no noise on this one's
    assert descriptor.apply_setting("sigma", 0.1) == (
        "--sigma 0.1: told takes levels on the 0-255 scale of 8-bit samples, where 0.1 is a fraction of one step (next to "
        "no noise, so little is removed); a level of 0.1 on the 0-1 scale is 25.5 here")
    # no range recorded: the noise config's default range (5-50) is the one trained on
    bare = save_checkpoint(tmp_path / "bare.safetensors", InfoFlowGenerator(config), "infoflow", config_to_dict(config), "denoise",
                           recipe={"degradation": "noise"})
    assert "trained on noise levels 5-50" in load_checkpoint(bare).apply_setting("sigma", 2.0, "--model-sigma")
    # one level recorded (--set 'degradation_options={"sigma": 25}'): a range of one
    single = save_checkpoint(tmp_path / "single.safetensors", InfoFlowGenerator(config), "infoflow", config_to_dict(config), "denoise",
                             recipe={"degradation": "noise", "degradation_options": {"sigma": 25}})
    assert "trained on noise levels 25-25" in load_checkpoint(single).apply_setting("sigma", 30.0)
    assert load_checkpoint(single).apply_setting("sigma", 25.0) is None


def test_training_tells_part_of_each_batch_its_measured_noise_level(tmp_path):
    from restore_core.training.trainer import training_forward

    class Spy(nn.Module):
        takes_noise_level = True

        def forward(self, y, noise_level=None):
            self.seen = noise_level
            return y

    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(4, 3, 64, 64, generator=generator) * 0.6 + 0.2
    degraded = (clean + torch.randn(4, 3, 64, 64, generator=generator) * 25 / 255).clamp(0, 1)
    spy = Spy()
    recipe = replace(RECIPES["infoflow-denoise"], noise_level_known_fraction=0.5)
    assert torch.equal(training_forward(spy, degraded, clean, recipe), degraded)
    assert torch.allclose(spy.seen[:2], torch.full((2,), 25.0), rtol=0.03)
    assert torch.isnan(spy.seen[2:]).all()
    training_forward(spy, degraded, clean, replace(recipe, noise_level_known_fraction=0.0))
    assert torch.isnan(spy.seen).all()
    # and a whole (tiny) run trains such a model
    run = replace(_recipe(tmp_path, "infoflow-denoise", steps=2), model={**TINY, "noise_level": True})
    Trainer(run, tmp_path / "run", torch.device("cpu"), log=lambda s: None).train(prepare_data(run))
    saved = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert saved.model.takes_noise_level and saved.config["noise_level"] is True
    # measured at the end of the run: --sigma auto looks twice with the saved model
    table = saved.config["noise_calibration"]
    assert len(table) >= 2 and all(a[0] < b[0] and a[1] <= b[1] for a, b in zip(table, table[1:]))
    assert saved.model.needs_first_pass


def test_calibration_refuses_images_too_small_to_read_a_level_from():
    """Images under 16x16 (the first look's block) are left out; with none left, the
    checkpoint is not given a table read from nothing."""
    from restore_core.training.calibration import measure_noise_calibration

    from restore_core.models import build_model

    model = build_model("infoflow", {**TINY, "noise_level": True})
    with pytest.raises(ValueError, match="at least 16x16 pixels"):
        measure_noise_calibration(model, [np.full((8, 12, 3), 0.5, np.float32)] * 3)


def test_auto_sigma_looks_twice_only_when_calibrated():
    """A checkpoint with a noise calibration asks the engine for a first pass under
    --sigma auto (not under quick, blind or a told level, nor without a table); the
    second look's level, read off what the model removed, is what every later forward
    call is told."""
    from restore_core.degradations.noise_level import residual_noise_level

    table = ((1.0, 0.0), (20.0, 25.0), (40.0, 50.0))
    config = dict(levels=2, base_filters=4, info_accum=None, norm="none", residual=True, noise_level=True)
    torch.manual_seed(0)
    model = InfoFlowGenerator(InfoFlowConfig(**config, noise_calibration=table))
    uncalibrated = InfoFlowGenerator(InfoFlowConfig(**config))
    with torch.no_grad():
        model.noise_level_embedding.mlp[-1].weight.normal_(0, 0.5)
    assert model.needs_first_pass and not uncalibrated.needs_first_pass
    for setting, expected in (("quick", False), ("blind", False), (25, False), ("auto", True)):
        model.set_sigma(setting)
        assert model.needs_first_pass is expected
    image = (0.5 + 0.1 * torch.randn(1, 3, 32, 32)).clamp(0, 1)
    with torch.no_grad():
        first = model.condition(image)[0]["noise_sigma"]
        restored = model(image)
        report = model.condition_on_first_pass(image, restored)[0]
        second = residual_noise_level(image, restored, table)
        assert report["noise_sigma_first_look"] == pytest.approx(first, abs=0.01)
        assert report["noise_sigma"] == pytest.approx(second.item(), abs=0.01)
        assert torch.equal(model(image), model(image, noise_level=second))


def _calibrated_tiny_denoiser() -> InfoFlowGenerator:
    """A small noise-level-taking generator with a calibration table, whose level input
    is made to matter (its embedding's last layer drawn large), seeded."""
    torch.manual_seed(0)
    config = InfoFlowConfig(levels=2, base_filters=4, info_accum=None, norm="none", residual=True, noise_level=True,
                            noise_calibration=((1.0, 0.0), (20.0, 25.0), (40.0, 50.0)))
    model = InfoFlowGenerator(config)
    with torch.no_grad():
        model.noise_level_embedding.mlp[-1].weight.normal_(0, 0.5)
    return model


def test_engine_runs_the_first_look_on_a_central_crop_then_tells_every_tile():
    """Under --sigma auto with a calibrated checkpoint the engine restores the central
    256 x 256 crop first (one extra forward call, no tiling), and every tile of the real
    pass is told the second look's level: the result is the told-level result."""
    from restore_core.checkpoint import ModelDescriptor
    from restore_core.engine.runner import Restorer

    model = _calibrated_tiny_denoiser()
    shapes = []
    model.register_forward_hook(lambda module, args, output: shapes.append(tuple(args[0].shape[-2:])))
    restorer = Restorer(ModelDescriptor(model=model, architecture="infoflow", config={}, task="denoise", name="n", size_multiple=4),
                        torch.device("cpu"), "fp32", tile=128, tile_overlap=16)
    image = (0.5 + 0.1 * torch.randn(1, 3, 300, 400)).clamp(0, 1)
    out = restorer(image)
    assert shapes[0] == (256, 256) and all(max(shape) <= 128 for shape in shapes[1:]) and len(shapes) > 2
    second = model.estimated_levels.clone()
    assert restorer.last_degradation[0]["noise_sigma"] == pytest.approx(second.item(), abs=0.01)
    assert restorer.last_degradation[0]["noise_sigma"] != restorer.last_degradation[0]["noise_sigma_first_look"]
    model.set_sigma(second.item())
    assert torch.equal(out, restorer(image))


def test_a_level_measured_from_the_file_is_told_instead_of_either_look():
    """Levels given with the batch (camera raw files' sensor data) are told as they are,
    without the first-look crop pass when every image has one, and reported as
    ``noise_sigma_from_raw``; in a batch mixing such an image with another, the other
    gets its two looks. Under --sigma quick the engine asks for no measured levels."""
    from restore_core.checkpoint import ModelDescriptor
    from restore_core.engine.runner import Restorer

    model = _calibrated_tiny_denoiser()
    calls = []
    model.register_forward_hook(lambda module, args, output: calls.append(tuple(args[0].shape)))
    restorer = Restorer(ModelDescriptor(model=model, architecture="infoflow", config={}, task="denoise", name="n", size_multiple=4),
                        torch.device("cpu"), "fp32")
    assert restorer.takes_measured_noise
    images = (0.5 + 0.1 * torch.randn(2, 3, 64, 64)).clamp(0, 1)
    out = restorer(images, [17.5, 30.0])
    assert calls == [(2, 3, 64, 64)]  # no crop pass: both levels known
    assert restorer.last_degradation == [{"noise_sigma": 17.5, "noise_sigma_from_raw": 17.5},
                                         {"noise_sigma": 30.0, "noise_sigma_from_raw": 30.0}]
    assert torch.equal(out, model(images, noise_level=torch.tensor([17.5, 30.0])).clamp(0, 1))

    calls.clear()
    mixed = restorer(images, [17.5, None])
    assert len(calls) == 2  # the crop pass for the image without a measured level, then the batch
    measured, looked = restorer.last_degradation
    assert measured == {"noise_sigma": 17.5, "noise_sigma_from_raw": 17.5}
    assert "noise_sigma_first_look" in looked and "noise_sigma_from_raw" not in looked
    assert torch.equal(mixed[:1], out[:1])

    model.set_sigma("quick")
    assert not restorer.takes_measured_noise
    model.set_sigma("blind")
    assert not restorer.takes_measured_noise


@pytest.mark.slow
def test_shipped_grey_denoiser_reads_the_noise_of_textured_photos_better_in_two_looks():
    """On heavily textured photographs (grass, gravel) the wavelet first look takes
    texture for noise and reads high; the shipped grey model's second look, read off
    what it removed from the central crop, is far closer to the truth, and the photo
    restored with it (--sigma auto) is better than with the first look (--sigma quick)."""
    from skimage import data

    from restore_core.checkpoint import load_checkpoint
    from restore_core.degradations.noise_level import measured_noise_level
    from restore_core.engine.runner import Restorer
    from restore_core.metrics import psnr, to_uint8_range
    from restore_core.presets import PRESETS, find_weights
    from restore_core.training.calibration import _noisy_8bit

    descriptor = load_checkpoint(find_weights(PRESETS["infoflow-denoise-grey"].weights))
    assert descriptor.model.needs_first_pass  # the shipped checkpoint is calibrated
    restorer = Restorer(descriptor, torch.device("cpu"), "fp32")
    errors = {"first": [], "second": []}
    gains = []
    for photo in (data.grass(), data.gravel()):
        clean = np.repeat(photo.astype(np.float32)[..., None] / 255, 3, axis=2)
        for sigma in (10, 30):
            noisy = torch.from_numpy(_noisy_8bit(clean, sigma, np.random.default_rng(sigma))).permute(2, 0, 1)[None]
            truth = measured_noise_level(noisy, torch.from_numpy(clean).permute(2, 0, 1)[None]).item()
            descriptor.model.set_sigma("auto")
            two_looks = restorer(noisy)[0].permute(1, 2, 0).numpy()
            report = restorer.last_degradation[0]
            errors["first"].append(abs(report["noise_sigma_first_look"] - truth))
            errors["second"].append(abs(report["noise_sigma"] - truth))
            descriptor.model.set_sigma("quick")
            one_look = restorer(noisy)[0].permute(1, 2, 0).numpy()
            target = to_uint8_range(clean)
            gains.append(psnr(to_uint8_range(two_looks), target) - psnr(to_uint8_range(one_look), target))
    assert np.mean(errors["second"]) < 0.5 * np.mean(errors["first"])  # measured: 1.11 vs 3.08
    assert np.mean(gains) > 0.1  # measured: +0.94, +0.08, +0.06, -0.10 dB (grass 10, 30; gravel 10, 30)
