"""Safetensors checkpoints: bit-exact round trips and clear refusals."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from restore_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from restore_core.convert import convert
from restore_core.models import build_model

CONFIG = {"mapping": {"width": 4, "levels": 1, "blocks_per_level": [1]}, "order": 2}


def test_round_trip_is_bit_exact(tmp_path):
    model = build_model("taylor", CONFIG)
    path = save_checkpoint(tmp_path / "m.safetensors", model, "taylor", CONFIG, "derain", metrics={"psnr": 30.0})
    loaded = load_checkpoint(path)
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.model.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    assert loaded.task == "derain" and loaded.architecture == "taylor" and loaded.metrics == {"psnr": 30.0}
    y = torch.rand(1, 3, 16, 16)
    assert torch.equal(model.eval()(y), loaded.model(y))


def test_wrong_shape_is_refused(tmp_path):
    model = build_model("taylor", CONFIG)
    path = save_checkpoint(tmp_path / "m.safetensors", model, "taylor", CONFIG, "derain")
    # Claim a wider mapping network than the tensors hold.
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["config"] = json.dumps({**CONFIG, "mapping": {**CONFIG["mapping"], "width": 8}})
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=r"m\.safetensors: tensor .* has shape"):
        load_checkpoint(path)


def with_config(path: Path, config: dict) -> Path:
    """The checkpoint at ``path`` rewritten with ``config`` in its metadata, tensors unchanged."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(path), metadata={**meta, "config": json.dumps(config)})
    return path


@pytest.mark.parametrize("mapping, refusal", [
    ({"width": -4}, r"m\.safetensors: invalid config: .*width must be >= 1, got -4"),
    ({"blocks_per_level": [-1]}, r"m\.safetensors: invalid config: .*blocks_per_level must be >= 0, got \(-1,\)"),
    # 6 x 10^12 parameters asked for: refused by the first tensor's shape, nothing allocated
    ({"width": 10**6, "max_width": 10**6}, r"m\.safetensors: tensor .* has shape \(4, 3, 3, 3\), the architecture expects \(1000000, 3, 3, 3\)"),
    # a million blocks took minutes to build, even on the meta device, before the shapes refused them
    ({"bottleneck_blocks": 10**6}, r"m\.safetensors: invalid config: .*bottleneck_blocks must be <= 1024, got 1000000"),
    ({"levels": 2000, "blocks_per_level": [1] * 2000}, r"invalid config: .*levels must be <= 1024, got 2000"),
])
def test_a_config_that_cannot_match_its_tensors_is_one_line_naming_the_file(tmp_path, mapping, refusal):
    """Checkpoints come from users: a negative width was torch's traceback from inside a
    layer, and a config asking for terabytes of weights was allocated before its shapes
    were checked (the architecture is now built on the meta device first)."""
    path = save_checkpoint(tmp_path / "m.safetensors", build_model("taylor", CONFIG), "taylor", CONFIG, "derain")
    with_config(path, {**CONFIG, "mapping": {**CONFIG["mapping"], **mapping}})
    with pytest.raises(CheckpointError, match=refusal):
        load_checkpoint(path)


def test_a_taylor_order_out_of_range_is_refused_by_its_config(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", build_model("taylor", CONFIG), "taylor", CONFIG, "derain")
    for order, refusal in [(-1, "order must be >= 0, got -1"), (10**6, "order must be <= 1024, got 1000000")]:
        with_config(path, {**CONFIG, "order": order})
        with pytest.raises(CheckpointError, match=rf"m\.safetensors: invalid config: .*{refusal}"):
            load_checkpoint(path)


def test_a_config_number_that_is_not_finite_is_refused(tmp_path):
    """Python's JSON reads NaN: an ``infoflow`` noise calibration of NaN made ``--sigma
    auto`` find no noise at all, silently."""
    config = {"levels": 1, "base_filters": 4, "info_accum": None, "noise_calibration": [[1.0, 1.0], [2.0, float("nan")]]}
    clean = {**config, "noise_calibration": []}
    path = save_checkpoint(tmp_path / "m.safetensors", build_model("infoflow", clean), "infoflow", clean, "denoise")
    with_config(path, config)
    with pytest.raises(CheckpointError, match=r"invalid config: infoflow.noise_calibration\[1\]\[1\]: expected a finite number, got nan"):
        load_checkpoint(path)


def test_missing_metadata_is_refused(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="missing metadata"):
        load_checkpoint(path)


def test_unknown_architecture_is_refused(tmp_path):
    path = tmp_path / "evil.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "restore-checkpoint", "format_version": "1",
              "architecture": "os.system", "config": "{}", "task": "derain"})
    with pytest.raises(CheckpointError, match="unknown architecture"):
        load_checkpoint(path)


def test_pickle_files_are_refused_without_unpickling(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(CheckpointError, match="pickle") as refused:
        load_checkpoint(path)
    # and the way on: restore convert reads a state dict safely
    assert f"restore convert {path} {tmp_path / 'model.safetensors'} --preset NAME imports a state dict" in str(refused.value)


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="broken.safetensors: not a valid safetensors file"):
        load_checkpoint(path)


def test_update_metrics_keeps_tensors_bit_exact(tmp_path):
    from restore_core.checkpoint import update_metrics

    model = build_model("taylor", CONFIG)
    path = save_checkpoint(tmp_path / "m.safetensors", model, "taylor", CONFIG, "derain", metrics={"a": 1})
    update_metrics(path, {"b": 2.5})
    loaded = load_checkpoint(path)
    assert loaded.metrics == {"a": 1, "b": 2.5}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.model.state_dict().values()))


def test_update_config_refuses_a_config_the_architecture_rejects(tmp_path):
    """A settings-only config change is written atomically; one that no longer builds the
    architecture is refused with the file named, and the file is left byte for byte."""
    from restore_core.checkpoint import update_config

    model = build_model("taylor", CONFIG)
    path = save_checkpoint(tmp_path / "m.safetensors", model, "taylor", CONFIG, "derain")
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="m.safetensors: invalid config change"):
        update_config(path, {"order": "three"})
    assert path.read_bytes() == before and not list(tmp_path.glob("*.tmp*"))
    update_config(path, {"order": CONFIG["order"]}, out=tmp_path / "copy.safetensors")
    copy = load_checkpoint(tmp_path / "copy.safetensors")
    assert copy.config == json.loads(json.dumps(CONFIG))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), copy.model.state_dict().values()))


@pytest.mark.parametrize("name, task", [("taylor-derain", "derain"), ("golf-deblur", "deblur"), ("infoflow-denoise", "denoise"),
                                        ("infoflow-denoise-grey", "denoise"), ("infoflow-dehaze", "dehaze"), ("adms", "auto")])
def test_shipped_weights_match_the_sha256_of_the_preset_table(tmp_path, monkeypatch, name, task):
    from restore_core.presets import PRESETS, find_weights, resolve_model

    path = find_weights(PRESETS[name].weights)
    assert path is not None
    assert resolve_model(name, task).sha256 == PRESETS[name].sha256
    assert PRESETS[name].sha256 in (path.parent / f"{name}.md").read_text()  # the model card names it
    corrupted = tmp_path / path.name
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip bits in the last weight
    corrupted.write_bytes(bytes(data))
    monkeypatch.setenv("RESTORE_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        resolve_model(name, task)


def test_convert_imports_a_state_dict_safely(tmp_path):

    config = {"width": 4, "levels": 1, "blocks_per_level": [1], "bottleneck_blocks": 1}
    model = build_model("unet", config)
    # BasicSR-style wrapper and DataParallel prefix are both undone
    torch.save({"params_ema": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "net.pth")
    out = convert(tmp_path / "net.pth", tmp_path / "net.safetensors", "unet", config, "denoise")
    loaded = load_checkpoint(out)
    assert loaded.task == "denoise" and loaded.recipe["converted_from"] == "net.pth"
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key])
    # a shape mismatch is named
    with pytest.raises(CheckpointError, match="does not fit unet"):
        convert(tmp_path / "net.pth", tmp_path / "x.safetensors", "unet", {**config, "width": 8}, "denoise")

    # a pickle that would run code is refused, and the code does not run
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(CheckpointError, match="evil.pth: .*could run code") as refused:
        convert(tmp_path / "evil.pth", tmp_path / "e.safetensors", "unet", config, "denoise")
    assert not marker.exists() and not (tmp_path / "e.safetensors").exists()
    assert "\x1b" not in str(refused.value)  # torch's message carries terminal colour codes

    # what else people hand to convert: one line each, naming the cause
    torch.save(model, tmp_path / "whole.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "net.pth").read_bytes()[:3000])
    (tmp_path / "text.pth").write_text("not a checkpoint")
    for name, cause in [("whole", r"it holds a pickled object \(restore_core.models.unet.UNet\).*state_dict\(\)"), ("empty", "empty file"),
                        ("cut", "a damaged PyTorch file"), ("text", "not a PyTorch file")]:
        with pytest.raises(CheckpointError, match=f"{name}.pth: {cause}") as refused:
            convert(tmp_path / f"{name}.pth", tmp_path / "x.safetensors", "unet", config, "denoise")
        assert "\n" not in str(refused.value)
    # bare tensors in a .safetensors file: convert reads them; as a model, the refusal says how
    save_file(model.state_dict(), tmp_path / "bare.safetensors")
    with pytest.raises(CheckpointError, match="not a restore checkpoint .*restore convert"):
        load_checkpoint(tmp_path / "bare.safetensors")
    assert load_checkpoint(convert(tmp_path / "bare.safetensors", tmp_path / "b.safetensors", "unet", config, "denoise")).task == "denoise"

    # A training script's own name for the weights: its only state dict is taken, several
    # are the user's to choose (--key), and the entry taken is recorded
    weights, other = model.state_dict(), {"bias": torch.zeros(2)}
    torch.save({"gen": weights, "step": 90000}, tmp_path / "gan_only.pth")
    assert load_checkpoint(convert(tmp_path / "gan_only.pth", tmp_path / "g1.safetensors", "unet", config, "denoise")).recipe["source_entry"] == "gen"
    torch.save({"gen": weights, "disc": other, "step": 90000}, tmp_path / "gan.pth")
    with pytest.raises(CheckpointError, match=r"gan.pth: holds several state dicts \(gen, disc\): pick one with --key"):
        convert(tmp_path / "gan.pth", tmp_path / "g2.safetensors", "unet", config, "denoise")
    picked = load_checkpoint(convert(tmp_path / "gan.pth", tmp_path / "g2.safetensors", "unet", config, "denoise", key="gen"))
    assert picked.recipe["source_entry"] == "gen" and torch.equal(picked.model.state_dict()["head.weight"], weights["head.weight"])
    for key, cause in [("gene", r"has no entry 'gene' for --key \(its entries: gen, disc, step\)"), ("step", "its entry 'step' is not a state dict")]:
        with pytest.raises(CheckpointError, match=cause):
            convert(tmp_path / "gan.pth", tmp_path / "g3.safetensors", "unet", config, "denoise", key=key)
    torch.save({"step": 3, "optimizer": {"lr": 0.1}}, tmp_path / "no_weights.pth")
    with pytest.raises(CheckpointError, match=r"expected a state dict \(names -> tensors\); its entries: step, optimizer"):
        convert(tmp_path / "no_weights.pth", tmp_path / "g3.safetensors", "unet", config, "denoise")
    assert not (tmp_path / "g3.safetensors").exists()

    cli = subprocess.run([sys.executable, "-m", "cli.main", "convert", str(tmp_path / "net.pth"), str(tmp_path / "c.safetensors"),
                          "--architecture", "unet", "--config", json.dumps(config), "--task", "derain"],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert cli.returncode == 0, cli.stderr
    assert load_checkpoint(tmp_path / "c.safetensors").task == "derain"

    # A misspelt task was written into the checkpoint (then "trained for denoize, not denoise"
    # at every use); a misspelt preset got no suggestion.
    for args, message in [(["--architecture", "unet", "--config", json.dumps(config), "--task", "denoize"],
                           "error: --task 'denoize' (did you mean denoise?): a model's task is one of derain, deblur, denoise, dehaze, all, any"),
                          (["--preset", "unet-z"], "error: unknown preset 'unet-z' (did you mean unet-s?); known: "),
                          # --config beside --preset was ignored (the preset's config written); a bad one blamed the file
                          (["--preset", "unet-s", "--config", json.dumps(config)], "error: --config goes with --architecture; --preset brings"),
                          (["--architecture", "unte"], "error: --architecture/--config: unknown architecture 'unte' (did you mean unet?)"),
                          (["--architecture", "unet", "--config", '{"width": "wide"}'], "error: --architecture/--config: unet.width: expected int")]:
        refused = subprocess.run([sys.executable, "-m", "cli.main", "convert", str(tmp_path / "net.pth"), str(tmp_path / "d.safetensors"), *args],
                                 capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
        assert refused.returncode == 2 and refused.stderr.startswith(message), refused.stderr
        assert not (tmp_path / "d.safetensors").exists()
    with pytest.raises(ValueError, match=r"^task 'denoize' \(did you mean denoise\?\)"):
        save_checkpoint(tmp_path / "d.safetensors", model, "unet", config, "denoize")
    assert not (tmp_path / "d.safetensors").exists()


@pytest.mark.parametrize("name", ["taylor-derain", "golf-deblur", "infoflow-denoise", "infoflow-dehaze"])
def test_each_shipped_recipe_trains_the_shape_of_its_shipped_weights(name):
    """`restore train --recipe NAME --init weights/NAME.safetensors` must load the file as
    it is (no growing, no refusal): the recipe's model is the shipped file's config, up to
    settings that only steer inference (Golf's number of G taps) or are measured on the
    trained weights (a denoiser's noise calibration)."""
    from restore_core.presets import PRESETS, find_weights
    from restore_core.training.recipes import load_recipe

    shipped = load_checkpoint(find_weights(PRESETS[name].weights))
    recipe_model = json.loads(json.dumps(load_recipe(name).model))
    inference_only = {"iterations"} if shipped.architecture == "golf" else {"noise_calibration"}
    strip = lambda config: {k: v for k, v in config.items() if k not in inference_only}  # noqa: E731
    assert strip(recipe_model) == strip(shipped.config)
    assert strip(shipped.config) == json.loads(json.dumps(PRESETS[name].config)) or shipped.architecture == "golf"
