"""restore auto by routing (engine.routing): each image goes to the single-task model of
the degradation the all-in-one model's classifier finds, and comes out exactly as that
model restores it."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from conftest import SAMPLES
from test_cli import restore

from restore_core.checkpoint import load_checkpoint, save_checkpoint
from restore_core.engine.routing import DEGRADATION_TASK, UNCHANGED, RoutedRestorer
from restore_core.models import build_model
from restore_core.engine.runner import Restorer
from restore_core.presets import PRESETS, find_weights, load_for_task

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def adms():
    if find_weights(PRESETS["adms"].weights) is None:
        pytest.fail("shipped adms weights are missing from weights/")
    return load_for_task(None, "auto", "cpu")


@pytest.fixture(scope="module")
def adms_finding_clean(tmp_path_factory):
    """The shipped adms with a clean class added to its classifier (the rest of its
    weights as shipped), the classifier's head set to find every image clean."""
    shipped = load_checkpoint(find_weights(PRESETS["adms"].weights))
    config = {**shipped.config, "classifier": {**shipped.config["classifier"], "clean_class": True}}
    model = build_model("adms", config)
    state = {k: v for k, v in shipped.model.state_dict().items() if not k.startswith("classifier.head")}
    model.load_state_dict(state, strict=False)
    with torch.no_grad():
        model.classifier.head.weight.zero_()
        model.classifier.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 5.0]))
    return save_checkpoint(tmp_path_factory.mktemp("clean") / "adms-clean.safetensors", model, "adms", config, "all")


def _save_variant(folder, clean_classifier: bool):
    """The shipped adms without a clean-aware classifier, or with one whose head finds
    every image clean (its paper's classifier as shipped either way)."""
    shipped = load_checkpoint(find_weights(PRESETS["adms"].weights))
    clean_config = {**shipped.config["classifier"], "clean_class": True} if clean_classifier else None
    config = {**shipped.config, "clean_classifier": clean_config}
    model = build_model("adms", config)
    state = {k: v for k, v in shipped.model.state_dict().items() if not k.startswith("clean_classifier.")}
    if clean_classifier:
        state.update({k.replace("classifier.", "clean_classifier.", 1): v for k, v in state.items()
                      if k.startswith("classifier.") and not k.startswith("classifier.head")})
    model.load_state_dict(state, strict=False)
    if clean_classifier:
        with torch.no_grad():
            model.clean_classifier.head.weight.zero_()
            model.clean_classifier.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 5.0]))
    name = "adms-leave-clean.safetensors" if clean_classifier else "adms-four.safetensors"
    return save_checkpoint(folder / name, model, "adms", config, "all")


@pytest.fixture(scope="module")
def adms_variants(tmp_path_factory):
    folder = tmp_path_factory.mktemp("variants")
    return _save_variant(folder, True), _save_variant(folder, False)


def _batch(rng: np.random.Generator, count: int, size: int = 48) -> torch.Tensor:
    return torch.from_numpy(rng.random((count, 3, size, size), dtype=np.float32))


def test_each_image_goes_to_the_specialist_of_its_most_probable_degradation(adms, monkeypatch, rng):
    """A classifier made to answer rain, noise, rain, haze: the batch is split by model,
    and each image equals its specialist's own output for it alone."""
    router = RoutedRestorer(adms, CPU, "fp32")
    order = ["rain", "noise", "rain", "haze"]
    answers = torch.tensor([[0.9 if d == wanted else 0.1 / 3 for d in router.degradations] for wanted in order])
    monkeypatch.setattr(router.classifier, "probabilities", lambda x: answers[: x.shape[0]])
    batch = _batch(rng, 4)
    restored = router(batch)
    expected_models = [load_for_task(None, DEGRADATION_TASK[d], "cpu").name for d in order]
    assert router.last_models == expected_models == ["taylor-derain", "infoflow-denoise", "taylor-derain", "infoflow-dehaze"]
    assert router.last_degradation[1]["noise"] == pytest.approx(0.9)
    for i, degradation in enumerate(order):
        alone = Restorer(load_for_task(None, DEGRADATION_TASK[degradation], "cpu"), CPU, "fp32")(batch[i : i + 1])
        assert torch.allclose(restored[i], alone[0], atol=1e-5), degradation  # batched kernels may round differently


def test_a_rainy_sample_is_routed_to_the_derainer_and_restored_exactly_as_by_it(adms):
    rainy = cv2.cvtColor(cv2.imread(str(SAMPLES / "input" / "motorcycle.png")), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    router = RoutedRestorer(adms, CPU, "fp32")
    routed = router.restore_array(rainy)
    assert router.last_models == ["taylor-derain"]
    assert np.array_equal(routed, Restorer(load_for_task(None, "derain", "cpu"), CPU, "fp32").restore_array(rainy))


def test_a_model_without_a_classifier_cannot_route(tiny_checkpoint):
    with pytest.raises(ValueError, match="no degradation classifier"):
        RoutedRestorer(load_for_task(str(tiny_checkpoint), "derain", "cpu"), CPU)


def test_options_reach_every_specialist(adms):
    router = RoutedRestorer(adms, CPU, "bf16", tile=256, tile_overlap=32, ensemble_views=2, strength=0.5)
    assert set(router.specialists) == {"derain", "deblur", "denoise", "dehaze"}
    for task, restorer in router.specialists.items():
        assert (restorer.tile, restorer.tile_overlap, restorer.strength, restorer.dtype) == (256, 32, 0.5, torch.bfloat16)
        assert len(restorer.ensemble) == 2, task


def test_restore_auto_names_the_model_of_each_image_and_no_route_uses_adms(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "rain.png"), cv2.imread(str(SAMPLES / "input" / "motorcycle.png")))
    clean = cv2.imread(str(SAMPLES / "target" / "motorcycle.png")).astype(np.float64)
    noisy = np.clip(clean + np.random.default_rng(5).normal(0, 25, clean.shape), 0, 255).round().astype(np.uint8)
    cv2.imwrite(str(inputs / "noise.png"), noisy)

    routed = restore("auto", str(inputs), str(tmp_path / "routed"), "--json")
    assert routed.returncode == 0, routed.stderr
    lines = {json.loads(line)["input"].rsplit("/", 1)[-1]: json.loads(line) for line in routed.stdout.splitlines()}
    assert lines["rain.png"]["model"] == "taylor-derain" and lines["noise.png"]["model"] == "infoflow-denoise"
    assert "routed by adms's classifier to" in routed.stderr
    derained = restore("derain", str(inputs / "rain.png"), str(tmp_path / "derain"), "-q")
    assert derained.returncode == 0, derained.stderr
    assert np.array_equal(cv2.imread(str(tmp_path / "routed" / "rain.png")), cv2.imread(str(tmp_path / "derain" / "rain.png")))

    plain = restore("auto", str(inputs), str(tmp_path / "adms"), "--json", "--no-route")
    assert plain.returncode == 0, plain.stderr
    assert all("model" not in json.loads(line) for line in plain.stdout.splitlines())
    assert not np.array_equal(cv2.imread(str(tmp_path / "adms" / "rain.png")), cv2.imread(str(tmp_path / "routed" / "rain.png")))


def test_benchmark_route_adds_a_routed_row_beside_the_model(tmp_path):
    result = restore("benchmark", "--root", str(SAMPLES), "--task", "auto", "-m", "adms", "--route", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["label"]: row for row in json.loads(result.stdout)["results"]}
    assert set(rows) == {"input", "adms", "adms-routed"}
    assert rows["adms-routed"]["psnr_rgb"] != rows["adms"]["psnr_rgb"]  # scored through other models
    assert rows["adms-routed"]["count"] == rows["adms"]["count"] == 3
    # Without -m, --route scores the shipped all-in-one model: the task's single-task model
    # (derain's, here) has no classifier, and --route alone was that error.
    alone = restore("benchmark", "--root", str(SAMPLES), "--route", "--limit", "1", "--json")
    assert alone.returncode == 0, alone.stderr
    assert [row["label"] for row in json.loads(alone.stdout)["results"]] == ["input", "adms", "adms-routed"]


def test_python_load_routes_for_task_auto_only(rng):
    import restore_core

    image = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    auto = restore_core.load(task="auto")
    auto(image)
    assert auto.routed_to in {"taylor-derain", "golf-deblur", "infoflow-denoise", "infoflow-dehaze"}
    adms = restore_core.load("adms")
    adms(image)
    assert adms.routed_to is None and adms.degradation is not None


def test_an_image_found_clean_is_left_as_it_is_and_the_others_routed(adms_finding_clean, monkeypatch, rng):
    router = RoutedRestorer(load_for_task(str(adms_finding_clean), "auto", "cpu"), CPU, "fp32")
    assert router.classes == ("rain", "motion-blur", "noise", "haze", "clean")
    answers = torch.tensor([[0.05, 0.05, 0.05, 0.05, 0.8], [0.8, 0.05, 0.05, 0.05, 0.05]])
    monkeypatch.setattr(router.classifier, "probabilities", lambda x: answers[: x.shape[0]])
    batch = _batch(rng, 2)
    restored = router(batch)
    assert router.last_models == [UNCHANGED, "taylor-derain"]
    assert router.last_degradation[0]["clean"] == pytest.approx(0.8)
    assert torch.equal(restored[0], batch[0])
    derained = Restorer(load_for_task(None, "derain", "cpu"), CPU, "fp32")(batch[1:])
    assert torch.allclose(restored[1], derained[0], atol=1e-5) and not torch.equal(restored[1], batch[1])


def test_restore_auto_writes_images_found_clean_unchanged_and_says_so(adms_finding_clean, tmp_path):
    rainy = SAMPLES / "input" / "motorcycle.png"
    result = restore("auto", str(rainy), str(tmp_path / "out"), "--json", "-m", str(adms_finding_clean))
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout)
    assert line["model"] == UNCHANGED and max(line["degradation"], key=line["degradation"].get) == "clean"
    assert np.array_equal(cv2.imread(str(tmp_path / "out" / "motorcycle.png")), cv2.imread(str(rainy)))
    assert "found every one clean: written unchanged" in result.stderr


def test_leave_clean_asks_the_clean_aware_classifier_and_only_then(adms_variants, rng):
    """A model with a clean-aware classifier beside its own: routing asks its own (the
    paper's) unless told ``leave_clean``; a model without one refuses ``leave_clean``."""
    with_clean, without = adms_variants
    descriptor = load_for_task(str(with_clean), "auto", "cpu")
    batch = _batch(rng, 1, 64)
    default = RoutedRestorer(descriptor, CPU, "fp32")
    assert default.classes == ("rain", "motion-blur", "noise", "haze") and not default.asks_clean_classifier
    assert not torch.equal(default(batch), batch) and default.last_models != [UNCHANGED]
    leaving = RoutedRestorer(descriptor, CPU, "fp32", leave_clean=True)
    assert leaving.classes[-1] == "clean" and leaving.asks_clean_classifier
    assert torch.equal(leaving(batch), batch) and leaving.last_models == [UNCHANGED]
    with pytest.raises(ValueError, match="no classifier that knows clean photographs"):
        RoutedRestorer(load_for_task(str(without), "auto", "cpu"), CPU, leave_clean=True)


def test_restore_auto_leave_clean_on_the_command_line(adms_variants, tmp_path):
    with_clean, without = adms_variants
    rainy = SAMPLES / "input" / "motorcycle.png"
    result = restore("auto", str(rainy), str(tmp_path / "out"), "--json", "-m", str(with_clean), "--leave-clean")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == UNCHANGED
    assert np.array_equal(cv2.imread(str(tmp_path / "out" / "motorcycle.png")), cv2.imread(str(rainy)))
    refused = restore("auto", str(rainy), str(tmp_path / "no"), "-m", str(without), "--leave-clean")
    assert refused.returncode == 2 and "no classifier that knows clean photographs" in refused.stderr
    assert not (tmp_path / "no").exists()
    unrouted = restore("auto", str(rainy), str(tmp_path / "no"), "-m", str(with_clean), "--leave-clean", "--no-route")
    assert unrouted.returncode == 2 and "--no-route restores every image" in unrouted.stderr
    scored = restore("benchmark", "--root", str(SAMPLES), "--task", "auto", "-m", str(with_clean), "--route", "--leave-clean", "--limit", "1", "--json")
    assert scored.returncode == 0, scored.stderr
    rows = {row["label"]: row for row in json.loads(scored.stdout)["results"]}
    assert rows["adms-leave-clean-leave-clean"]["psnr_rgb"] == rows["input"]["psnr_rgb"]  # every image found clean: scored as it is
    assert rows["adms-leave-clean-routed"]["psnr_rgb"] != rows["input"]["psnr_rgb"]


def test_the_shipped_clean_aware_classifier_leaves_clean_photographs_and_derains_rain(tmp_path):
    """The shipped adms with ``--leave-clean``: the bundled samples' clean photographs are
    written bit for bit as they were, their rainy versions go to the derainer and come
    out closer to the clean photographs than they went in."""
    from restore_core.metrics import psnr

    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("camera.png", "motorcycle.png"):
        cv2.imwrite(str(inputs / f"clean-{name}"), cv2.imread(str(SAMPLES / "target" / name)))
        cv2.imwrite(str(inputs / f"rain-{name}"), cv2.imread(str(SAMPLES / "input" / name)))
    result = restore("auto", str(inputs), str(tmp_path / "out"), "--json", "--leave-clean")
    assert result.returncode == 0, result.stderr
    lines = {json.loads(line)["input"].rsplit("/", 1)[-1]: json.loads(line) for line in result.stdout.splitlines()}
    assert "2 found clean, written unchanged" in result.stderr
    for name in ("camera.png", "motorcycle.png"):
        assert lines[f"clean-{name}"]["model"] == UNCHANGED
        assert np.array_equal(cv2.imread(str(tmp_path / "out" / f"clean-{name}")), cv2.imread(str(inputs / f"clean-{name}")))
        assert lines[f"rain-{name}"]["model"] == "taylor-derain"
        target = cv2.imread(str(SAMPLES / "target" / name))
        before, after = (psnr(cv2.imread(str(path)), target) for path in (inputs / f"rain-{name}", tmp_path / "out" / f"rain-{name}"))
        assert after > before + 3, (name, before, after)


def test_python_load_takes_leave_clean(adms_variants, rng):
    import restore_core

    with_clean, _ = adms_variants
    image = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    auto = restore_core.load(str(with_clean), task="auto", leave_clean=True)
    assert np.array_equal(auto(image), image) and auto.routed_to == UNCHANGED
    with pytest.raises(ValueError, match="--no-route"):
        restore_core.load(str(with_clean), task="auto", route=False, leave_clean=True)
