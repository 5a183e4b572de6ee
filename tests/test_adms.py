"""ADMS (SPEC §2.3): the adaptive kernel, the classifier's role, checkpoints, and
the `adms` recipe through `restore train` / `restore auto` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SAMPLES

from restore_core.attribution import filter_params
from restore_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from restore_core.configs import ConfigError
from restore_core.engine.runner import Restorer
from restore_core.metrics import psnr
from restore_core.models import build_model
from restore_core.training.adms import assemble
from restore_core.training.errors import TrainingError
from restore_core.training.recipes import ADMSRecipe
from restore_core.training.trainer import Trainer
from restore_core.degradations.table import MixedConfig, add_one_of

BASE = {"width": 4, "levels": 2, "blocks_per_level": [1, 1], "bottleneck_blocks": 1}
DEGRADATIONS = ["rain", "motion-blur", "noise", "haze"]


def _config(filters: dict) -> dict:
    return {"base_architecture": "unet", "base": BASE, "filters": filters, "classifier": {"width": 4, "stages": 2, "patch": 32}}


def _all_filters(base) -> dict[str, list[int]]:
    return {p.name: list(range(p.filters)) for p in filter_params(base)}


def test_adaptive_kernel_matches_the_formula_by_hand():
    """θ_ads = θ_um + Σ_d ĉ_d Δθ_d ⊙ M_d, computed here with plain tensor indexing."""
    torch.manual_seed(0)
    filters = {"rain": {"head.weight": [0, 2]}, "noise": {"head.weight": [2, 3], "tail.weight": [1]}}
    model = build_model("adms", _config(filters))
    for p in model.deltas.values():
        torch.nn.init.normal_(p)
    c = torch.tensor([0.5, 0.1, 0.3, 0.1])
    merged = model.merged_parameters(c)

    head = model.base.head.weight.detach().clone()
    head[[0, 2]] += 0.5 * model.deltas["rain__head__weight"].detach()
    head[[2, 3]] += 0.3 * model.deltas["noise__head__weight"].detach()
    tail = model.base.tail.weight.detach().clone()
    tail[[1]] += 0.3 * model.deltas["noise__tail__weight"].detach()
    assert set(merged) == {"head.weight", "tail.weight"}
    assert torch.allclose(merged["head.weight"], head)
    assert torch.allclose(merged["tail.weight"], tail)
    assert model.merged_parameters(torch.tensor([0.0, 1.0, 0.0, 0.0])) == {}  # motion-blur keeps no filters: θ_um


def test_sharpened_weights_are_the_softmax_at_a_temperature():
    """ĉ ∝ p^(1/T) (models.adms.sharpen): for one crop softmax(logits / T); T = 1 as the
    paper; a low T is the argmax; rows still sum to 1."""
    from restore_core.models.adms import sharpen

    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.1, 0.2, 0.3, 0.4]])
    p = logits.softmax(dim=1)
    assert sharpen(p, 1.0) is p
    assert torch.allclose(sharpen(p, 0.25), (logits / 0.25).softmax(dim=1), atol=1e-6)
    assert torch.allclose(sharpen(p, 0.25).sum(dim=1), torch.ones(2))
    assert torch.equal(sharpen(p, 1e-3).argmax(dim=1), p.argmax(dim=1)) and bool((sharpen(p, 1e-3).max(dim=1).values > 0.999).all())
    assert torch.allclose(sharpen(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), 0.5), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))  # a zero stays zero
    with pytest.raises(ConfigError, match="blend_temperature"):
        build_model("adms", {**_config({}), "blend_temperature": 0})


def test_blend_temperature_reweights_the_filters_of_a_classified_image():
    """The network's ĉ follows its temperature, set in the config or at run time
    (``--blend-temperature``); forced degradations are one-hot whatever it is."""
    torch.manual_seed(0)
    model = build_model("adms", _config({"rain": {"head.weight": [0]}, "haze": {"head.weight": [1]}})).eval()
    for p in model.deltas.values():
        torch.nn.init.normal_(p)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        p = model.classifier.probabilities(x)[0]
        paper = model.condition(x)[0]
        model.set_blend_temperature(0.1)
        sharp = model.condition(x)[0]
        out_sharp = model(x)
        model.set_blend_temperature(1e-4)
        model.condition(x)
        out_argmax = model(x)
        model.set_degradation(model.degradations[int(p.argmax())])
        out_forced = model(x)
    assert [paper[d] for d in model.degradations] == pytest.approx(p.tolist(), abs=1e-4)
    top = model.degradations[int(p.argmax())]
    assert sharp[top] > paper[top] and sum(sharp.values()) == pytest.approx(1, abs=1e-3)
    assert torch.allclose(out_argmax, out_forced, atol=1e-5) and not torch.allclose(out_sharp, out_forced, atol=1e-5)
    with pytest.raises(ValueError, match="above 0"):
        model.set_blend_temperature(-1)


def test_forced_degradation_with_every_filter_kept_is_the_finetuned_model():
    """With M_d = all filters and only conv weights fine-tuned, forcing d gives θ_d's output."""
    torch.manual_seed(1)
    unified = build_model("unet", BASE).eval()
    state = unified.state_dict()
    finetuned_model = build_model("unet", BASE).eval()
    finetuned_model.load_state_dict(state)
    conv_names = {p.name for p in filter_params(unified)}
    with torch.no_grad():
        for name, p in finetuned_model.named_parameters():
            if name in conv_names:
                p.add_(0.05 * torch.randn_like(p))
    finetuned = {d: dict(unified.named_parameters()) for d in DEGRADATIONS}
    finetuned["haze"] = {k: v.detach() for k, v in finetuned_model.named_parameters()}
    filters = {d: _all_filters(unified) for d in DEGRADATIONS}
    classifier = build_model("adms", _config({})).classifier.state_dict()
    from restore_core.models import ADMSConfig, ClassifierConfig

    config = ADMSConfig("unet", BASE, tuple(DEGRADATIONS), filters, ClassifierConfig(4, 2, 32))
    model = assemble(config, state, finetuned, classifier)
    x = torch.rand(2, 3, 32, 32)
    model.set_degradation("haze")
    with torch.no_grad():
        assert torch.allclose(model(x), finetuned_model(x), atol=1e-5)
        model.set_degradation("rain")
        assert torch.allclose(model(x), unified(x), atol=1e-5)
    with pytest.raises(ValueError, match="unknown degradation"):
        model.set_degradation("snow")


def test_each_image_is_classified_whole_before_tiling_and_reports_its_probabilities():
    torch.manual_seed(2)
    model = build_model("adms", _config({"rain": {"head.weight": [1]}, "haze": {"tail.weight": [0, 2]}}))
    for p in model.deltas.values():
        torch.nn.init.normal_(p, std=0.3)
    from restore_core.checkpoint import ModelDescriptor

    assert model.size_multiple == 4  # the base U-Net's: the engine pads to it
    descriptor = ModelDescriptor(model, "adms", {}, "all", "adms-test", size_multiple=model.size_multiple)
    image = np.random.default_rng(0).random((90, 77, 3), dtype=np.float32)
    untiled = Restorer(descriptor, torch.device("cpu"))
    whole = untiled.restore_array(image)
    expected = model.classifier.probabilities(torch.from_numpy(image).permute(2, 0, 1)[None])[0]
    reported = untiled.last_degradation[0]
    assert list(reported) == DEGRADATIONS
    assert np.allclose([reported[d] for d in DEGRADATIONS], expected.detach().numpy(), atol=1e-4)
    assert abs(sum(reported.values()) - 1) < 1e-3
    tiled = Restorer(descriptor, torch.device("cpu"), tile=48, tile_overlap=16).restore_array(image)
    assert psnr(whole * 255, tiled * 255) > 40  # the tiles ran with the whole image's kernel


def test_an_image_too_small_for_the_classifiers_deviation_is_classified_not_nan():
    """Under 16 pixels the classifier's last features are 1 x 1, whose sample standard
    deviation is NaN: such images were routed at random and, blended, came out as NaN."""
    import warnings

    torch.manual_seed(4)
    model = build_model("adms", _config({"rain": {"head.weight": [1]}}))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("error")  # torch's "degrees of freedom is <= 0" reached the user's terminal
        for side in (1, 3, 15):
            probabilities = model.classifier.probabilities(torch.rand(1, 3, side, side))
            assert torch.isfinite(probabilities).all() and abs(float(probabilities.sum()) - 1) < 1e-5
        assert torch.isfinite(model(torch.rand(1, 3, 4, 4))).all()


def test_checkpoint_round_trip_and_invalid_filter_indices(tmp_path: Path):
    torch.manual_seed(3)
    config = _config({"noise": {"head.weight": [0, 3]}})
    model = build_model("adms", config)
    for p in model.deltas.values():
        torch.nn.init.normal_(p)
    path = save_checkpoint(tmp_path / "adms.safetensors", model, "adms", config, "all")
    loaded = load_checkpoint(path).model
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    x = torch.rand(1, 3, 32, 32)
    model.set_degradation("noise")
    loaded.set_degradation("noise")
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    with pytest.raises(Exception, match="distinct indices below 4"):
        build_model("adms", _config({"noise": {"head.weight": [0, 9]}}))
    with pytest.raises(Exception, match="not a convolution weight"):
        build_model("adms", _config({"noise": {"nope.weight": [0]}}))


def test_mixed_degradation_draws_each_kind():
    clean = np.full((32, 32, 3), 0.4, np.float32)
    clean[8:24, 8:24] = 0.8
    outputs = {add_one_of(clean, np.random.default_rng(seed), MixedConfig()).tobytes() for seed in range(40)}
    assert len(outputs) == 40  # random and seeded
    only_noise = add_one_of(clean, np.random.default_rng(0), MixedConfig(degradations=("noise",)))
    assert np.abs(only_noise - clean).std() > 0.005


def test_the_fine_tuned_copies_draw_patches_as_the_unified_model_does():
    """Stage 2's samplers follow the recipe's data settings: with ``colour_fraction=1``
    a pool of grey and colour photographs gives stage 2 colour patches only."""
    from restore_core.training import data as D
    from restore_core.training.adms import degradation_samplers
    from restore_core.training.recipes import RECIPES, DataConfig

    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 256, (64, 64, 1), dtype=np.uint8), 3, axis=2)
    colour = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pool = D.PatchSampler([], [D.PairedImage(None, grey)] * 9 + [D.PairedImage(None, colour)], 32, lambda image, rng: image)

    def colour_patches(recipe) -> int:
        samplers = degradation_samplers(recipe, pool)
        assert list(samplers) == DEGRADATIONS
        _, clean = samplers["noise"].batch(1, 0, 40)
        return sum(not D.is_grey(patch.transpose(1, 2, 0)) for patch in clean)

    recipe = replace(RECIPES["adms"], patch_size=32)
    assert colour_patches(replace(recipe, data=DataConfig(colour_fraction=1.0))) == 40
    assert colour_patches(recipe) < 20  # by image count: about 1 in 10


def test_retraining_the_faig_filters_moves_only_them_and_lowers_the_loss():
    """Stage 3b (FAIG's "re-train the discovered filters"): only the filters named move,
    from the fine-tuned copy's values; every other weight stays θ_um's, bit for bit."""
    from restore_core.attribution import mean_psnr
    from restore_core.training import data as D
    from restore_core.training.adms import retrain_filters
    from restore_core.degradations.table import make_degradation

    torch.manual_seed(0)
    base = build_model("unet", BASE)
    unified = {k: v.detach().clone() for k, v in base.named_parameters()}
    finetuned = {k: v + 0.01 * torch.randn_like(v) for k, v in unified.items()}
    layer = filter_params(base)[1]
    chosen, others = torch.tensor([0, 2]), torch.tensor([i for i in range(layer.filters) if i not in (0, 2)])
    ramp = np.linspace(0, 255, 64, dtype=np.float32)
    clean = np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, 255 - ramp) / 2, np.tile(ramp, (64, 1))], axis=-1)
    sampler = D.PatchSampler([], [D.PairedImage(None, clean.astype(np.uint8))], 32, make_degradation("noise", {"sigma": 25}))

    trained = retrain_filters(base, unified, finetuned, {layer.name: [0, 2]}, sampler, steps=40, lr=1e-2, batch_size=4, seed=0,
                              device=torch.device("cpu"))
    assert list(trained) == [layer.name]
    assert all(torch.equal(v, unified[k]) for k, v in base.named_parameters())  # the model given is not changed
    weight = trained[layer.name]
    assert torch.equal(weight.index_select(layer.axis, others), unified[layer.name].index_select(layer.axis, others))
    started = unified[layer.name].clone()
    started.index_copy_(layer.axis, chosen, finetuned[layer.name].index_select(layer.axis, chosen))
    assert not torch.equal(weight, started)
    degraded, target = sampler.batch(99, 0, 4)
    held_out = [(torch.from_numpy(degraded[i : i + 1]), torch.from_numpy(target[i : i + 1])) for i in range(4)]
    assert mean_psnr(base, {**unified, **trained}, held_out) > mean_psnr(base, {**unified, layer.name: started}, held_out) + 0.1


def _restore(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})


def test_blend_temperature_on_the_command_line(tmp_path: Path):
    """``restore auto --no-route --blend-temperature T`` runs the shipped network at T
    (its JSON weights move toward the top degradation as T falls); with routing, where
    no filters are blended, the option is refused; a model without ADMS filters refuses it."""
    image = sorted((SAMPLES / "input").iterdir())[0]

    def weights(temperature: str) -> dict[str, float]:
        result = _restore("auto", str(image), str(tmp_path / f"t{temperature}"), "--no-route", "--blend-temperature", temperature,
                          "--json", "--threads", "2", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["degradation"]

    paper, sharp = weights("1"), weights("0.1")
    top = max(paper, key=paper.get)
    assert max(sharp, key=sharp.get) == top and sharp[top] > paper[top] and sum(sharp.values()) == pytest.approx(1, abs=1e-3)
    routed = _restore("auto", str(image), str(tmp_path / "routed"), "--blend-temperature", "0.5", cwd=tmp_path)
    assert routed.returncode == 2 and "--no-route" in routed.stderr and not (tmp_path / "routed").exists()
    other = _restore("benchmark", "-m", "taylor-derain", "--limit", "1", "--blend-temperature", "0.5", cwd=tmp_path)
    assert other.returncode == 2 and "--blend-temperature does not apply" in other.stderr


def test_the_unified_model_can_start_from_an_earlier_one(tmp_path: Path):
    """``unified_init``: stage 1 starts from a checkpoint's weights (a second cycle of
    the schedule), not from fresh ones; it cannot go with ``init``, which trains no stage 1."""
    earlier = build_model("unet", BASE)
    with torch.no_grad():
        for param in earlier.parameters():
            param.uniform_(-0.1, 0.1)
    path = save_checkpoint(tmp_path / "unified.safetensors", earlier, "unet", BASE, "all")
    recipe = ADMSRecipe(base=BASE, unified_init=str(path))
    started = Trainer(recipe.unified_recipe(), tmp_path / "run", torch.device("cpu"), log=lambda s: None).model.state_dict()
    assert all(torch.equal(started[k], v) for k, v in earlier.state_dict().items())
    fresh = Trainer(replace(recipe, unified_init=None).unified_recipe(), tmp_path / "fresh", torch.device("cpu"), log=lambda s: None)
    assert not any(torch.equal(fresh.model.state_dict()[k], v) for k, v in earlier.state_dict().items() if v.ndim > 1)
    with pytest.raises(ConfigError, match="unified_init"):
        replace(recipe, init=str(tmp_path / "adms.safetensors"))


def test_the_unified_model_can_start_from_an_adms_checkpoint(tmp_path: Path):
    """An ADMS file as ``unified_init`` (or ``--init``) gives its unified network θ_um,
    not θ_um plus a degradation's deltas: a further cycle straight from shipped weights."""
    torch.manual_seed(4)
    config = _config({"noise": {"head.weight": [0, 3]}})
    adms = build_model("adms", config)
    with torch.no_grad():
        for p in [*adms.base.parameters(), *adms.deltas.values()]:
            p.uniform_(-0.1, 0.1)
    path = save_checkpoint(tmp_path / "adms.safetensors", adms, "adms", config, "all")
    started = Trainer(ADMSRecipe(base=BASE, unified_init=str(path)).unified_recipe(), tmp_path / "run", torch.device("cpu"),
                      log=lambda s: None).model.state_dict()
    assert started.keys() == adms.base.state_dict().keys()
    assert all(torch.equal(started[k], v) for k, v in adms.base.state_dict().items())
    other_base = ADMSRecipe(base={**BASE, "width": 8}, unified_init=str(path)).unified_recipe()
    with pytest.raises(TrainingError, match="do not fit"):
        Trainer(other_base, tmp_path / "wide", torch.device("cpu"), log=lambda s: None)


def test_a_mistyped_classifier_setting_is_refused_before_training(tmp_path: Path):
    """The recipe keeps the classifier's settings as a plain dict (so recipes load
    without torch); they are still checked before the first of the four stages."""
    run = tmp_path / "run"
    result = _restore("train", "--recipe", "adms", "--no-builtin-photographs", "--clean", str(SAMPLES / "target"), "--steps", "6",
                      "--set", "classifier.widht=8", "--threads", "1", "-q", "--out", str(run), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "widht" in result.stderr and "Traceback" not in result.stderr
    assert not run.exists()


def test_the_degradations_are_checked_and_a_run_without_images_leaves_nothing_to_resume(tmp_path: Path):
    """``degradations=[]`` was refused as "paired_degradation must be one of , got 'rain'";
    an unknown one passed the recipe and wrote recipe.json before failing. A run that found
    no images left recipe.json too, so the corrected command was refused ("already holds a
    run") and --resume replayed the recorded, image-less data settings."""
    for degradations, message in [([], r"got \[\]"), (["rain", "fog"], r"got \['rain', 'fog'\]"),
                                    (["rain", "rain"], r"got \['rain', 'rain'\]")]:
        with pytest.raises(ConfigError, match=f"degradations must be one or more of rain, noise, motion-blur, haze, each once, {message}"):
            ADMSRecipe(degradations=tuple(degradations))
    empty, run = tmp_path / "empty", tmp_path / "run"
    empty.mkdir()
    command = ("train", "--recipe", "adms", "--steps", "6", "--threads", "1", "-q", "--out", str(run),
               "--no-builtin-photographs", "--clean", str(empty))
    for attempt in range(2):  # the second is not refused as a run to --resume: it fails for its own cause again
        failed = _restore(*command, cwd=tmp_path)
        assert failed.returncode == 1 and failed.stderr.strip().startswith(f"error: {empty}: no images in it ("), failed.stderr
        assert not (run / "recipe.json").exists()


def test_adms_recipe_trains_every_stage_and_restore_auto_uses_it(tmp_path: Path):
    """A tiny `restore train --recipe adms`, then `restore auto --json` and the forced commands."""
    run = tmp_path / "run"
    common = ["train", "--recipe", "adms", "--no-builtin-photographs", "--clean", str(SAMPLES / "target"), "--steps", "6",
              "--set", "base.width=4", "--set", "faig_steps=3", "--set", "faig_images=2", "--set", "patch_size=48",
              "--set", "classifier.patch=48", "--set", "masked_finetune_steps=2", "--batch-size", "2", "--threads", "1", "-q",
              "--out", str(run)]
    result = _restore(*common, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for stage in ["unified", *(f"finetune-{d}" for d in DEGRADATIONS)]:
        assert (run / stage / "model.safetensors").is_file()
    assert all((run / f"masked-{d}.safetensors").is_file() for d in DEGRADATIONS)  # stage 3b
    descriptor = load_checkpoint(run / "model.safetensors")
    metrics = descriptor.metrics
    assert descriptor.architecture == "adms" and descriptor.task == "all"
    assert set(metrics["filters_kept"]) == set(DEGRADATIONS)
    kept = sum(metrics["filters_kept"].values())
    assert 0 < kept <= 4 * round(0.05 * metrics["filters_total"]) + 4
    assert metrics["parameters_extra"] == descriptor.model.extra_parameters()
    again = _restore(*common, cwd=tmp_path)
    assert again.returncode == 2 and "--resume" in again.stderr
    # --workers reaches every stage and changes nothing but speed: the same weights, bit for bit.
    with_workers = _restore(*[str(tmp_path / "run-workers") if a == str(run) else a for a in common if a != "-q"], "--workers", "2", cwd=tmp_path)
    assert with_workers.returncode == 0, with_workers.stderr
    assert with_workers.stderr.count("batches drawn ahead by 2 worker processes") == 1 + len(DEGRADATIONS)
    # The run ends with its measurements in words, not a printed dict.
    assert "classifier accuracy on fresh synthetic patches: " in with_workers.stderr
    assert "unified / ADMS / fine-tuned: " in with_workers.stderr and "{" not in with_workers.stderr
    for stage in ["unified", *(f"finetune-{d}" for d in DEGRADATIONS)]:
        plain, workers = (load_checkpoint(r / stage / "model.safetensors").model.state_dict() for r in (run, tmp_path / "run-workers"))
        assert all(torch.equal(plain[k], workers[k]) for k in plain), stage
    resumed = _restore(*[a for a in common if a != "-q"], "--resume", cwd=tmp_path)
    assert resumed.returncode == 0 and resumed.stderr.count("done earlier") == 9  # no stage trained twice

    auto = _restore("auto", str(SAMPLES / "input"), str(tmp_path / "auto"), "-m", str(run / "model.safetensors"), "--json", "-q", cwd=tmp_path)
    assert auto.returncode == 0, auto.stderr
    rows = [json.loads(line) for line in auto.stdout.splitlines()]
    assert rows and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert list(r["degradation"]) == DEGRADATIONS and abs(sum(r["degradation"].values()) - 1) < 1e-3
    forced = _restore("dehaze", str(SAMPLES / "input"), str(tmp_path / "haze"), "-m", str(run / "model.safetensors"), "--json", "-q", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert all(json.loads(line)["degradation"]["haze"] == 1.0 for line in forced.stdout.splitlines())
    refused = _restore("auto", str(SAMPLES / "input"), str(tmp_path / "x"), "-m", "taylor-derain", cwd=tmp_path)
    assert refused.returncode == 2 and "all-in-one" in refused.stderr and not (tmp_path / "x").exists()


def test_a_classifier_retrained_with_init_keeps_the_models_stages(tmp_path: Path):
    """`restore train --recipe adms --init OLD --data PAIRS`: stages 1-3 of OLD bit for bit,
    a new classifier (here of another size) trained with real rain residuals, OLD's
    classifier-free metrics carried and its source recorded."""
    torch.manual_seed(4)
    config = _config({"rain": {"head.weight": [0, 1]}, "haze": {"tail.weight": [2]}})
    model = build_model("adms", config)
    for p in model.deltas.values():
        torch.nn.init.normal_(p)
    metrics = {"synthetic/rain": {"adms_psnr": 20.0}, "Rain100H_dev50/auto/psnr_y": 19.3, "Rain100H_dev50/forced/psnr_y": 19.5,
               "classifier_accuracy": {"Rain100H_dev50": 0.74}}
    old = save_checkpoint(tmp_path / "old.safetensors", model, "adms", config, "all", metrics=metrics)
    run = tmp_path / "run"
    common = ["train", "--recipe", "adms", "--init", str(old), "--no-builtin-photographs", "--clean", str(SAMPLES / "target"),
              "--set", "classifier_steps=3", "--set", "patch_size=48", "--set", "classifier.patch=40", "--set", "classifier.width=8",
              "--set", "classifier_colour_fraction=0.5", "--set", "classifier_channel_shuffle=true", "--threads", "1", "-q"]
    photos = ["--set", f"classifier_photos={json.dumps([str(SAMPLES / 'input')])}", "--set", "classifier_photo_fraction=0.3"]
    result = _restore(*common, "--data", str(SAMPLES), "--set", "classifier_transplant_fraction=0.5", *photos, "--out", str(run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    new = load_checkpoint(run / "model.safetensors")
    assert not (run / "unified").exists()  # no stage but the classifier ran
    before, after = model.state_dict(), new.model.state_dict()
    kept = [k for k in before if not k.startswith("classifier.")]
    assert kept and all(torch.equal(before[k], after[k]) for k in kept)
    assert new.config["classifier"] == {"width": 8, "stages": 4, "patch": 40, "clean_class": False}  # the recipe's, not the old model's
    assert new.model.classifier.config.width == 8
    assert new.metrics["synthetic/rain"] == {"adms_psnr": 20.0} and new.metrics["Rain100H_dev50/forced/psnr_y"] == 19.5
    assert "Rain100H_dev50/auto/psnr_y" not in new.metrics and "classifier_accuracy" not in new.metrics  # measured with the old classifier
    assert new.metrics["classifier_retrained_from"]["sha256"] == load_checkpoint(old).sha256
    assert set(new.metrics["classifier_accuracy_synthetic"]) == set(DEGRADATIONS)
    assert new.recipe["init"] == str(old) and new.recipe["classifier_transplant_fraction"] == 0.5
    assert new.recipe["classifier_photos"] == [str(SAMPLES / "input")]

    no_init = _restore("train", "--recipe", "adms", "--clean", str(SAMPLES / "target"), "--data", str(SAMPLES), "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert no_init.returncode == 2 and "--init ADMS_MODEL" in no_init.stderr and not (tmp_path / "x").exists()
    unused = _restore(*common, "--data", str(SAMPLES), "--out", str(tmp_path / "y"), cwd=tmp_path)
    assert unused.returncode != 0 and "classifier_transplant_fraction" in unused.stderr and "Traceback" not in unused.stderr
    unet = save_checkpoint(tmp_path / "unet.safetensors", build_model("unet", BASE), "unet", BASE, "derain")
    not_adms = _restore(*[str(unet) if a == str(old) else a for a in common], "--out", str(tmp_path / "z"), cwd=tmp_path)
    assert not_adms.returncode != 0 and "must be an ADMS checkpoint" in not_adms.stderr and "Traceback" not in not_adms.stderr


def test_classifier_photos_give_their_share_of_the_degradations_patches(tmp_path: Path):
    """classifier_photos: real photographs with no clean version, cut as they are into
    classifier_photo_fraction of the paired degradation's patches (the rest synthetic);
    the other degradations are untouched; one setting without the other is refused."""
    import cv2

    from restore_core.training import data as D
    from restore_core.training.adms import classifier_samplers
    from restore_core.training.errors import TrainingError
    from restore_core.training.recipes import RECIPES

    (tmp_path / "rainy").mkdir()
    cv2.imwrite(str(tmp_path / "rainy" / "a.png"), np.full((80, 90, 3), 200, np.uint8))
    pool = D.PatchSampler([], [D.PairedImage(None, np.zeros((80, 90, 3), np.uint8))], 48, lambda x, rng: x)
    recipe = replace(RECIPES["adms"], patch_size=48, classifier_photos=(str(tmp_path / "rainy"),), classifier_photo_fraction=0.3)
    samplers = classifier_samplers(recipe, pool)
    rng = np.random.default_rng(0)
    from_photo = [bool((samplers["rain"].sample(rng)[0] == np.float32(200 / 255)).all()) for _ in range(400)]
    assert 0.24 < np.mean(from_photo) < 0.36
    assert not any((samplers["haze"].sample(rng)[0] == np.float32(200 / 255)).all() for _ in range(50))
    for half in ({"classifier_photo_fraction": 0.0}, {"classifier_photos": ()}):
        with pytest.raises(TrainingError, match="go together"):
            classifier_samplers(replace(recipe, **half), pool)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match="no images"):
        classifier_samplers(replace(recipe, classifier_photos=(str(tmp_path / "empty"),)), pool)


def test_classifier_degradation_options_change_the_classifiers_synthetic_patches_alone():
    """``classifier_degradation_options``: a degradation's config overridden for the
    classifier's patches (here noise at sigma 50 exactly), stage 1's samplers keeping the
    config's own range; an unknown degradation or field is refused before training."""
    from restore_core.configs import ConfigError
    from restore_core.training import data as D
    from restore_core.training.adms import classifier_samplers, degradation_samplers
    from restore_core.training.recipes import RECIPES, check_recipe

    pool = D.PatchSampler([], [D.PairedImage(None, np.full((80, 90, 3), 128, np.uint8))], 48, lambda x, rng: x)
    recipe = replace(RECIPES["adms"], patch_size=48, classifier_degradation_options={"noise": {"sigma": [50, 50]}})

    def noise_level(sampler) -> float:
        degraded, clean = sampler.sample(np.random.default_rng(3))
        return float((degraded - clean).std() * 255)

    assert 45 < noise_level(classifier_samplers(recipe, pool)["noise"]) < 55
    assert noise_level(classifier_samplers(replace(recipe, classifier_degradation_options={}), pool)["noise"]) < 45
    assert noise_level(degradation_samplers(recipe, pool)["noise"]) < 45  # stage 1's draws: the config's own range
    with pytest.raises(ConfigError, match="classifier_degradation_options must be"):
        replace(recipe, classifier_degradation_options={"snow": {}})
    with pytest.raises(ConfigError, match="did you mean sheet_probability"):
        check_recipe(replace(recipe, classifier_degradation_options={"rain": {"sheet_prob": 0.3}}))


def test_a_clean_class_is_a_last_output_that_the_filter_blend_leaves_out(tmp_path: Path):
    """``clean_class``: the classifier has K + 1 outputs, ``classes`` names the last
    ``clean``, ĉ is the degradations' probabilities renormalised (no filters stand for
    clean), and the shape is checked on load like any other."""
    torch.manual_seed(6)
    config = _config({"rain": {"head.weight": [1]}, "haze": {"tail.weight": [0]}})
    config["classifier"]["clean_class"] = True
    model = build_model("adms", config).eval()
    assert model.classes == (*DEGRADATIONS, "clean")
    assert model.classifier.head.out_features == 5
    x = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        p = model.classifier.probabilities(x)
        assert p.shape == (2, 5) and torch.allclose(p.sum(dim=1), torch.ones(2))
        assert torch.allclose(model.blend_weights(x), p[:, :4] / p[:, :4].sum(dim=1, keepdim=True), atol=1e-6)
        reported = model.condition(x)
    assert list(reported[0]) == DEGRADATIONS  # the filters' weights: degradations only
    path = save_checkpoint(tmp_path / "clean.safetensors", model, "adms", config, "all")
    loaded = load_checkpoint(path).model
    assert loaded.classes == model.classes
    four = _config({"rain": {"head.weight": [1]}, "haze": {"tail.weight": [0]}})  # metadata without the clean class
    mislabelled = save_checkpoint(tmp_path / "four.safetensors", model, "adms", four, "all")
    with pytest.raises(CheckpointError, match="classifier.head"):
        load_checkpoint(mislabelled)


def test_the_clean_class_trains_on_clean_patches_as_stored_and_is_measured():
    """With ``classifier.clean_class`` the classifier's samplers gain ``clean``: each patch
    the clean patch itself or (about half) a JPEG of it at a camera's quality, nothing
    else; the classifier trains five classes, and its accuracy is measured on all five."""
    from restore_core.training import data as D
    from restore_core.training.adms import accuracy_samplers, classifier_accuracy, classifier_samplers, degradation_samplers, train_classifier
    from restore_core.training.recipes import RECIPES, classifier_config

    import cv2

    photo = cv2.GaussianBlur((np.random.default_rng(1).random((80, 90, 3)) * 255).astype(np.uint8), (0, 0), 3)
    pool = D.PatchSampler([], [D.PairedImage(None, photo)], 48, lambda x, rng: x)
    recipe = replace(RECIPES["adms"], patch_size=48, classifier={"width": 4, "stages": 2, "patch": 48, "clean_class": True},
                     classifier_steps=3, classifier_batch_size=5)
    samplers = classifier_samplers(recipe, pool)
    assert list(samplers) == [*DEGRADATIONS, "clean"]
    rng = np.random.default_rng(0)
    untouched = 0
    for _ in range(60):
        rng_state = np.random.default_rng(int(rng.integers(1 << 30)))
        patch, clean = samplers["clean"].sample(rng_state)
        untouched += bool(np.array_equal(patch, clean))
        assert psnr(patch * 255, clean * 255) > 35  # a JPEG at quality 75-95, or the patch itself
    assert 15 < untouched < 45
    assert "clean" not in classifier_samplers(replace(recipe, classifier={"width": 4, "stages": 2, "patch": 48}), pool)
    config = classifier_config(recipe)
    classifier = train_classifier(recipe, config, samplers, torch.device("cpu"), log=lambda s: None)
    assert classifier.head.out_features == 5
    accuracy = classifier_accuracy(classifier, accuracy_samplers(degradation_samplers(recipe, pool), samplers, config), 9, 2)
    assert list(accuracy) == [*DEGRADATIONS, "clean"]


def test_a_clean_aware_classifier_is_trained_beside_the_models_own_with_keep_classifier(tmp_path: Path):
    """`--set classifier.clean_class=true --set keep_classifier=true` with --init: every
    tensor of OLD (its classifier too) and its metrics and recipe kept bit for bit; the new
    classifier, with its clean class, stored as ``clean_classifier``; the filter blend
    and default routing unchanged. Without --init, or without a clean class: refused."""
    torch.manual_seed(5)
    config = _config({"rain": {"head.weight": [0, 1]}})
    model = build_model("adms", config)
    old = save_checkpoint(tmp_path / "old.safetensors", model, "adms", config, "all", recipe={"name": "adms", "unified_steps": 7},
                          metrics={"Rain100H_dev50/auto/psnr_y": 19.3, "train_seconds": 5.0})
    common = ["train", "--recipe", "adms", "--no-builtin-photographs", "--clean", str(SAMPLES / "target"),
              "--set", "classifier_steps=3", "--set", "patch_size=48", "--set", "classifier.patch=40", "--set", "classifier.width=8",
              "--set", "classifier.clean_class=true", "--threads", "1", "-q"]
    result = _restore(*common, "--init", str(old), "--set", "keep_classifier=true", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    new = load_checkpoint(tmp_path / "run" / "model.safetensors")
    before, after = model.state_dict(), new.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert sorted(set(after) - set(before)) and all(k.startswith("clean_classifier.") for k in set(after) - set(before))
    assert new.config["classifier"] == config["classifier"] | {"clean_class": False}
    assert new.config["clean_classifier"] == {"width": 8, "stages": 4, "patch": 40, "clean_class": True}
    assert new.model.clean_classifier.head.out_features == 5
    assert new.metrics["Rain100H_dev50/auto/psnr_y"] == 19.3 and new.metrics["train_seconds"] == 5.0  # the model's own, kept
    assert set(new.metrics["clean_classifier_accuracy_synthetic"]) == {*DEGRADATIONS, "clean"}
    assert new.recipe["unified_steps"] == 7 and new.recipe["clean_classifier"]["keep_classifier"] is True
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(new.model(x), model.eval()(x))  # the filters are blended by the paper's classifier still

    no_init = _restore(*common, "--set", "keep_classifier=true", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert no_init.returncode != 0 and "give --init ADMS_MODEL" in no_init.stderr and "Traceback" not in no_init.stderr
    at = common.index("classifier.clean_class=true")
    four = common[: at - 1] + common[at + 1 :]  # without that --set
    no_clean = _restore(*four, "--init", str(old), "--set", "keep_classifier=true", "--out", str(tmp_path / "y"), cwd=tmp_path)
    assert no_clean.returncode == 2 and "keep_classifier" in no_clean.stderr and not (tmp_path / "y").exists()
    with pytest.raises(ConfigError, match="clean_class"):
        build_model("adms", {**config, "clean_classifier": {"width": 4, "stages": 2, "patch": 32}})


def _tiny_recipe(**changes) -> ADMSRecipe:
    from restore_core.training.recipes import DataConfig

    settings = dict(base=BASE, degradations=("rain", "noise"), unified_steps=4, finetune_steps=3, batch_size=2, patch_size=32,
                    faig_steps=2, faig_images=2, masked_finetune_steps=3, classifier={"width": 4, "stages": 2, "patch": 32},
                    classifier_steps=4, classifier_batch_size=2,
                    data=DataConfig(clean=(str(SAMPLES / "target"),), builtin_photographs=False))
    return ADMSRecipe(**{**settings, **changes})


def test_an_adms_run_stopped_in_every_stage_resumes_to_the_same_model(tmp_path: Path):
    """A signal (Ctrl-C, a scheduler's SIGTERM) was polled by the network stages alone:
    during FAIG, the filters' training and the classifier's it said "stopping after this
    step" and went on to the end. Now every stage stops between two steps, keeps what
    it did, and a resumed run ends with the model an uninterrupted one makes, bit for bit."""
    from restore_core.training.adms import StageStopped, Stops, train_adms

    quiet = lambda s: None  # noqa: E731
    straight, _ = train_adms(_tiny_recipe(), tmp_path / "straight", torch.device("cpu"), quiet)
    stopped_in, calls = [], 0
    while calls < 80:
        calls += 1
        polls = iter(range(1, 1000))
        try:  # a signal at every third poll of the stop flag: each run moves on a step or two, then stops
            path, metrics = train_adms(_tiny_recipe(), tmp_path / "stopped", torch.device("cpu"), quiet,
                                       Stops(lambda: next(polls) % 3 == 0))
            break
        except StageStopped as exc:
            assert exc.by_signal
            stopped_in.append(exc.stage)
    assert {"unified", "finetune-rain", "finetune-noise", "FAIG", "masked-rain", "masked-noise", "classifier"} <= set(stopped_in)
    assert not list((tmp_path / "stopped").glob("*.state.safetensors")) and not (tmp_path / "stopped" / "filters.partial.json").exists()
    expected, got = load_checkpoint(straight), load_checkpoint(path)
    assert all(torch.equal(v, got.model.state_dict()[k]) for k, v in expected.model.state_dict().items())
    assert {k: v for k, v in expected.metrics.items() if k != "train_seconds"} == {k: v for k, v in metrics.items() if k != "train_seconds"}


def test_the_classifier_pauses_inside_a_time_limit_and_goes_on_as_it_would_have(tmp_path: Path):
    from restore_core.training import data as D
    from restore_core.training.adms import StageStopped, Stops, classifier_samplers, train_classifier
    from restore_core.models.adms import ClassifierConfig

    recipe = _tiny_recipe(classifier_steps=5)
    clean = np.asarray(Image.open(SAMPLES / "target" / "camera.png").convert("RGB"))
    samplers = classifier_samplers(recipe, D.PatchSampler([], [D.PairedImage(None, clean)], 32, lambda image, rng: image))
    config = ClassifierConfig(width=4, stages=2, patch=32)
    straight = train_classifier(recipe, config, samplers, torch.device("cpu"), lambda s: None)
    state = tmp_path / "classifier.state.safetensors"
    with pytest.raises(StageStopped) as paused:  # the deadline has passed: the first step, then a pause
        train_classifier(recipe, config, samplers, torch.device("cpu"), lambda s: None, Stops(deadline=time.monotonic()), state)
    assert (paused.value.stage, paused.value.step, paused.value.by_signal) == ("classifier", 1, False) and state.is_file()
    resumed = train_classifier(recipe, config, samplers, torch.device("cpu"), lambda s: None, Stops(), state)
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in straight.state_dict().items())
    late = Stops(deadline=time.monotonic() - 1)
    late.before_stage("unified")  # the first stage a run enters takes a step, however late
    late.finished_a_stage = True
    with pytest.raises(StageStopped, match="paused in stage FAIG after step 1"):
        late.before_stage("FAIG", 1)


def test_an_adms_run_pauses_inside_its_time_limit_on_the_command_line(tmp_path: Path):
    """`--time-limit` was refused for the adms recipe ("cannot pause between stages yet")."""
    run = tmp_path / "run"
    common = ["train", "--recipe", "adms", "--no-builtin-photographs", "--clean", str(SAMPLES / "target"), "--steps", "6",
              "--set", "base.width=4", "--set", "faig_steps=2", "--set", "faig_images=2", "--set", "patch_size=32",
              "--set", "classifier.patch=32", "--set", "classifier_steps=4", "--set", "degradations=[\"rain\", \"noise\"]",
              "--batch-size", "2", "--threads", "1", "--out", str(run)]
    paused = _restore(*common, "--time-limit", "1s", cwd=tmp_path)
    assert paused.returncode == 0, paused.stderr
    assert "paused in stage unified after step 1, inside --time-limit; continue with: " in paused.stderr
    assert not (run / "model.safetensors").exists() and (run / "unified" / "state.safetensors").is_file()
    finished = _restore("train", "--out", str(run), "--resume", "--threads", "1", "-q", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert load_checkpoint(run / "model.safetensors").architecture == "adms"
