"""The Python interface (restore_core.load): arrays in every layout and type, files,
folders, and the same pixels as the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import SAMPLES

import restore_core
from restore_core.checkpoint import CheckpointError
from restore_core.io.images import ImageError, from_array, read_image, to_array
from restore_core.metrics import psnr


@pytest.fixture
def tiny(tiny_checkpoint: Path) -> restore_core.ImageRestorer:
    return restore_core.load(tiny_checkpoint)


def test_shipped_derainer_from_python_improves_the_samples_and_equals_the_cli(tmp_path):
    derain = restore_core.load(task="derain")
    assert derain.name == "taylor-derain" and derain.task == "derain"
    name = "motorcycle.png"
    rainy = cv2.cvtColor(cv2.imread(str(SAMPLES / "input" / name)), cv2.COLOR_BGR2RGB)
    clean = cv2.cvtColor(cv2.imread(str(SAMPLES / "target" / name)), cv2.COLOR_BGR2RGB)
    restored = derain(rainy)
    assert restored.shape == rainy.shape and restored.dtype == np.uint8
    assert psnr(restored.astype(np.float64), clean.astype(np.float64)) > psnr(rainy.astype(np.float64), clean.astype(np.float64)) + 3.0

    cli = subprocess.run([sys.executable, "-m", "cli.main", "derain", str(SAMPLES / "input" / name), str(tmp_path / name), "-q"],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert cli.returncode == 0, cli.stderr
    assert np.array_equal(restored, cv2.cvtColor(cv2.imread(str(tmp_path / name)), cv2.COLOR_BGR2RGB))


@pytest.mark.parametrize("shape, dtype", [
    ((20, 28), np.uint8),          # grey
    ((20, 28, 1), np.uint16),      # grey, explicit channel
    ((20, 28, 2), np.uint8),       # grey + alpha
    ((20, 28, 3), np.uint16),      # RGB, 16-bit
    ((20, 28, 4), np.uint8),       # RGBA
    ((20, 28, 3), np.float32),
    ((20, 28, 4), np.float64),
    ((20, 28, 3), np.float16),     # was refused, though half tensors were taken
])
def test_arrays_come_back_in_their_shape_and_type_with_alpha_untouched(tiny, shape, dtype, rng):
    if np.dtype(dtype).kind == "f":
        image = rng.random(shape).astype(dtype)
    else:
        image = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    restored = tiny(image)
    assert restored.shape == image.shape and restored.dtype == image.dtype
    if shape[-1] in (2, 4) and len(shape) == 3:
        assert np.array_equal(restored[..., -1], image[..., -1])
    assert not np.array_equal(restored, image)  # the (untrained) model changed the pixels


def test_an_array_restores_as_its_file_does(tiny, tmp_path, rng):
    """16-bit RGBA: the array path gives the pixels the file path writes."""
    image = rng.integers(0, 65536, (24, 32, 4), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "in.png"), cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA))
    tiny.restore_file(tmp_path / "in.png", tmp_path / "out.png")
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
    assert np.array_equal(tiny(image), written)


def test_grey_layout_round_trip_is_exact_without_a_model(rng):
    """from_array -> to_array with the pixels unchanged gives the input back, for each type."""
    for image in (rng.integers(0, 256, (9, 7), dtype=np.uint8), rng.integers(0, 65536, (9, 7, 2), dtype=np.uint16),
                  rng.random((9, 7, 3)).astype(np.float32)):
        loaded = from_array(image)
        assert np.array_equal(to_array(loaded.rgb, loaded, image.shape, image.dtype), image)


def test_tensors_batch_and_single(tiny):
    batch = torch.rand(2, 3, 16, 24)
    restored = tiny(batch)
    assert restored.shape == batch.shape and restored.dtype == torch.float32
    assert torch.allclose(tiny(batch[1]), restored[1], atol=1e-5)  # batched kernels may round differently
    with pytest.raises(ValueError, match="3 x H x W"):
        tiny(torch.rand(1, 4, 16, 16))
    # a tensor comes back in its own type, as arrays do (a half tensor came back float32)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        again = tiny(batch.to(dtype))
        assert again.dtype == dtype and torch.allclose(again.float(), restored, atol=0.01), dtype


def test_floats_well_outside_0_1_are_clipped_with_a_warning_naming_the_range(tiny, rng):
    """A 0-255 float image (cv2's uint8 array .astype(float32)) or a normalised tensor
    was clipped to white or black without a word; it now warns. Values at the edges of
    [0, 1], or a rounding step beyond them, do not."""
    image = rng.random((16, 24, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny(image)
        tiny(np.clip(image * 1.005 - 0.002, -0.002, 1.004))
        tiny(torch.from_numpy(image).permute(2, 0, 1))
    with pytest.warns(RuntimeWarning, match=r"span \[0\.\d+, 2\d\d\] and are clipped to \[0, 1\].*divide by 255") as caught:
        tiny(image * 255)
    assert caught[0].filename == __file__  # points at the caller's line
    with pytest.warns(RuntimeWarning, match=r"span \[-1, 1\].*undo the normalisation") as caught:
        tiny(torch.linspace(-1, 1, 3 * 16 * 16).reshape(3, 16, 16))
    assert caught[0].filename == __file__


def test_an_empty_tensor_is_refused_and_a_tensor_needing_gradients_is_taken_without_torchs_warning(tiny):
    """An empty tensor ended in torch's RuntimeError from min(); a tensor with
    requires_grad drew torch's 'Converting a tensor with requires_grad=True to a
    scalar' UserWarning from the range check."""
    with pytest.raises(ValueError, match=r"empty image \(shape \(3, 0, 5\)\)"):
        tiny(torch.rand(3, 0, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored = tiny(torch.rand(3, 16, 16, requires_grad=True))
    assert not restored.requires_grad


@pytest.mark.parametrize("bad, message", [
    (np.zeros((8, 8, 5), np.uint8), "C in 1-4"),
    (np.zeros((8,), np.uint8), "H x W"),
    (np.zeros((0, 8, 3), np.uint8), "empty"),
    (np.zeros((8, 8, 3), np.int32), "sample type int32"),
    (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
])
def test_bad_arrays_are_refused_with_the_cause(tiny, bad, message):
    with pytest.raises(ValueError, match=message):
        tiny(bad)


def test_an_empty_list_of_paths_is_refused_as_such(tiny, tmp_path):
    """It was refused as "no paths on stdin", the CLI's words."""
    with pytest.raises(ValueError, match="^an empty list of paths$"):
        tiny.restore_files([], tmp_path / "out")
    with pytest.raises(ValueError, match=r"^no paths in the list given \(2 empty\)$"):
        tiny.restore_files(["", " "], tmp_path / "out")


def test_restore_files_streams_a_folder_and_reports_a_corrupt_file(tiny, tmp_path, rng):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        cv2.imwrite(str(src / name), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    results = {r.input.name: r for r in tiny.restore_files(src, tmp_path / "out", recursive=True, suffix="_x", ext="tif")}
    assert results["a.png"].status == "ok" and (tmp_path / "out" / "a_x.tif").is_file()
    assert results["b.png"].status == "ok" and (tmp_path / "out" / "sub" / "b_x.tif").is_file()
    assert results["broken.png"].status == "error" and "decode" in results["broken.png"].error
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["a_x.tif", "b_x.tif", "sub"]  # nothing for the broken one

    with pytest.raises(FileExistsError, match="already exist"):
        tiny.restore_files(src, tmp_path / "out", recursive=True, suffix="_x", ext="tif")  # refused at the call, before any work
    again = list(tiny.restore_files(src, tmp_path / "out", recursive=True, suffix="_x", ext="tif", skip_existing=True))
    assert sorted(r.status for r in again) == ["error", "skipped", "skipped"]


def test_leaving_restore_files_early_stops_the_engine_and_leaves_only_whole_files(tiny, tmp_path, rng):
    import gc
    import threading

    src = tmp_path / "in"
    src.mkdir()
    for i in range(12):
        cv2.imwrite(str(src / f"{i:02d}.png"), rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    threads_before = set(threading.enumerate())
    results = tiny.restore_files(src, tmp_path / "out")
    seen = [next(results).output, next(results).output]
    del results
    gc.collect()
    on_disk = sorted((tmp_path / "out").iterdir())
    assert set(seen) <= set(on_disk) and len(on_disk) < 12  # stopped, perhaps a write or two past the last result
    assert all(path.suffix == ".png" and read_image(path).rgb.shape == (64, 96, 3) for path in on_disk)  # no .part, none partial
    assert set(threading.enumerate()) <= threads_before  # the engine's threads ended


def test_restore_files_takes_a_list_of_paths(tiny, tmp_path, rng):
    paths = []
    for name in ("x.png", "y.jpg"):
        path = tmp_path / name
        cv2.imwrite(str(path), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        paths.append(path)
    results = list(tiny.restore_files(paths + [tmp_path / "missing.png"], tmp_path / "out"))
    assert [r.status for r in results] == ["ok", "ok", "error"]
    assert (tmp_path / "out" / "y.jpg").is_file()


def test_restore_file_raises_for_a_bad_input_and_leaves_nothing(tiny, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageError, match="bad.jpg"):
        tiny.restore_file(tmp_path / "bad.jpg", tmp_path / "out" / "bad.png")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_restore_file_keeps_an_existing_output_unless_told(tiny, tmp_path, rng):
    cv2.imwrite(str(tmp_path / "in.png"), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    (tmp_path / "out.png").write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        tiny.restore_file(tmp_path / "in.png", tmp_path / "out.png")
    assert (tmp_path / "out.png").read_bytes() == b"keep me"
    tiny.restore_file(tmp_path / "in.png", tmp_path / "out.png", overwrite=True)
    assert read_image(tmp_path / "out.png").size == (16, 16)
    # a folder as the output said "unsupported output format"
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match=r"folder: a folder; restore_file writes the file it names \(e.g. .*folder/in.png\), restore_files fills"):
        tiny.restore_file(tmp_path / "in.png", tmp_path / "folder")
    # the input itself, even with overwrite=True, is refused as restore_files and the commands refuse it (it was replaced)
    before = (tmp_path / "in.png").read_bytes()
    with pytest.raises(ValueError, match="the output would overwrite the input"):
        tiny.restore_file(tmp_path / "in.png", tmp_path / "folder" / ".." / "in.png", overwrite=True)
    assert (tmp_path / "in.png").read_bytes() == before
    # restore_files into the inputs' own folder: refused before anything is restored
    with pytest.raises(ValueError, match=r"1 output\(s\): .*in.png would replace inputs; choose another out_dir"):
        list(tiny.restore_files(tmp_path / "in.png", tmp_path, overwrite=True))
    assert (tmp_path / "in.png").read_bytes() == before


def test_restore_files_keeps_outputs_in_the_output_folder(tiny, tmp_path, rng):
    """A suffix with a path separator is refused before anything is written, as the
    command's --suffix is: suffix="/../../x" wrote x.png two folders above out_dir."""
    (tmp_path / "deep" / "in").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "deep" / "in" / "a.png"), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    for suffix in ("/../../x", "_x/y", "\\x"):
        with pytest.raises(ValueError, match="cannot hold a path separator"):
            tiny.restore_files(tmp_path / "deep" / "in", tmp_path / "deep" / "out", suffix=suffix)
    assert sorted(path.name for path in (tmp_path / "deep").rglob("*")) == ["a.png", "in"] and not (tmp_path / "x.png").exists()


def test_load_errors_name_the_cause(tiny_checkpoint):
    with pytest.raises(CheckpointError, match="unknown model"):
        restore_core.load("no-such-model")
    with pytest.raises(CheckpointError, match=r"unknown model \(did you mean infoflow-denoise-grey\?\); presets: taylor-derain"):
        restore_core.load("infoflow-denoise-gray")
    with pytest.raises(CheckpointError, match="name a model"):
        restore_core.load()
    with pytest.raises(ValueError, match=r"unknown task 'Derain'; one of derain, deblur, denoise, dehaze, auto"):
        restore_core.load(task="Derain")  # was "no default model for task 'Derain'; pass --model"
    # A folder is said to be one (it was "no such checkpoint file"), with a file in it to give.
    with pytest.raises(CheckpointError, match=rf"a folder, not a checkpoint file: give a \.safetensors file, e\.g\. {tiny_checkpoint}"):
        restore_core.load(tiny_checkpoint.parent)
    # A training run's folder: its models, each by what it is.
    run = tiny_checkpoint.parent / "run"
    run.mkdir()
    (run / "recipe.json").write_text("{}")
    for name in ("last.safetensors", "model.safetensors"):
        (run / name).write_bytes(tiny_checkpoint.read_bytes())
    with pytest.raises(CheckpointError, match=rf"a training run's folder, not a checkpoint file: give one of its models: "
                                              rf"{run / 'model.safetensors'} \(the final model\), {run / 'last.safetensors'} \(the latest checkpoint\)$"):
        restore_core.load(run)
    # The shipped file's name where no such file is: the preset it belongs to is named.
    with pytest.raises(CheckpointError, match=r"the shipped weights of that name are the preset: --model taylor-derain"):
        restore_core.load("taylor-derain.safetensors")
    with pytest.raises(CheckpointError, match="sigma does not apply to this model"):
        restore_core.load(tiny_checkpoint, sigma=25)
    # A keyword no model takes is Python's TypeError, with the name meant (it was
    # "--tiles does not apply to this model": as if another model would take it).
    for keyword, meant in (("tiles", "tile"), ("sigm", "sigma"), ("self_ensembl", "self_ensemble"), ("darken_onl", "darken_only")):
        with pytest.raises(TypeError, match=rf"unexpected keyword argument '{keyword}' \(did you mean {meant}\?\)"):
            restore_core.load(tiny_checkpoint, **{keyword: 1})
    with pytest.raises(ValueError, match="tile_overlap"):
        restore_core.load(tiny_checkpoint, tile=64, tile_overlap=64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restore_core.load(tiny_checkpoint, task="denoise")  # a derain checkpoint
    assert any("trained for derain, not denoise" in str(w.message) for w in caught)


def test_options_reach_the_engine(tiny_checkpoint, rng):
    """strength=0 gives the input back; tiling and self-ensemble are the engine's own."""
    image = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    assert np.array_equal(restore_core.load(tiny_checkpoint, strength=0.0)(image), image)
    tiled = restore_core.load(tiny_checkpoint, tile=32, tile_overlap=8)
    assert tiled.restorer.tile == 32
    ensembled = restore_core.load(tiny_checkpoint, ensemble_views=2)
    assert len(ensembled.restorer.ensemble) == 2
    assert restore_core.load(tiny_checkpoint, max_memory=2**30).restorer.memory_limit == 2**30
    with pytest.raises(ValueError, match="give one of them"):
        restore_core.load(tiny_checkpoint, tile=32, max_memory=2**30)


def test_denoiser_reports_its_estimated_level():
    denoise = restore_core.load("infoflow-denoise", sigma="quick")
    rng = np.random.default_rng(3)
    clean = np.full((96, 96, 3), 0.5)
    noisy = np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1).astype(np.float32)
    denoise(noisy)
    assert 18 < denoise.degradation["noise_sigma"] < 32


def test_importing_restore_core_does_not_import_torch():
    probe = "import sys, restore_core; assert callable(restore_core.load.__call__); print('torch' in sys.modules)"
    quiet = "import sys, restore_core, restore_core.presets; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", quiet], capture_output=True, text=True, check=True).stdout.strip() == "False"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "True"


def test_every_setting_a_model_takes_is_a_keyword_of_load():
    """``load(**settings)`` takes what the models' ``set_<name>`` methods set (the list
    that tells a misspelt keyword from a setting one model lacks), and nothing else."""
    import importlib
    import inspect
    import pkgutil

    import restore_core.models
    from restore_core.api import MODEL_SETTINGS

    modules = [importlib.import_module(f"restore_core.models.{info.name}") for info in pkgutil.iter_modules(restore_core.models.__path__)]
    classes = [cls for module in modules for _, cls in inspect.getmembers(module, inspect.isclass) if issubclass(cls, torch.nn.Module)]
    setters = {name.removeprefix("set_") for cls in classes for name, _ in inspect.getmembers(cls, inspect.isfunction)
               if name.startswith("set_") and not hasattr(torch.nn.Module, name)}
    assert setters - {"degradation"} == set(MODEL_SETTINGS)  # set_degradation: the task, given as load(task=...)


def test_outputs_that_cannot_be_written_are_refused_before_any_image(tiny, tmp_path, rng):
    """An output folder that is a file, or lies under one, and max_pixels=0: refused
    before anything runs, as the commands refuse them (each image was restored, then
    failed on its own: "cannot write: File exists", "over the limit of 0")."""
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ValueError, match="the output folder exists and is not a folder"):
        tiny.restore_files(tmp_path / "in", tmp_path / "a-file")
    with pytest.raises(ValueError, match=rf"out: {tmp_path / 'a-file'} is a file, so no folder can be made there"):
        tiny.restore_files(tmp_path / "in", tmp_path / "a-file" / "out")
    with pytest.raises(ValueError, match=rf"x.png: {tmp_path / 'a-file'} is a file, so no folder can be made there"):
        tiny.restore_file(tmp_path / "in" / "a.png", tmp_path / "a-file" / "x.png")
    with pytest.raises(ValueError, match="max_pixels must be >= 1, got 0"):
        tiny.restore_files(tmp_path / "in", tmp_path / "out", max_pixels=0)
    assert (tmp_path / "a-file").read_text() == "" and not (tmp_path / "out").exists()
