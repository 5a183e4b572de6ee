"""restore export: a model as an ONNX graph that restores an image as `restore` does."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")


def restore(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def run_graph(path: Path, **inputs: np.ndarray) -> np.ndarray:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, inputs)[0]


def test_the_exported_derainer_restores_an_image_as_restore_derain_does(tmp_path, rng):
    """An odd-sized photo (padded to the model's multiple of 16 inside the graph) through
    the ONNX file and through `restore derain`: the same 8-bit image, give or take a
    rounding."""
    exported = restore("export", "taylor-derain", str(tmp_path / "derain.onnx"))
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.strip() == str(tmp_path / "derain.onnx")
    assert "onnxruntime agrees with PyTorch to " in exported.stderr and "images of at least 9 pixels a side" in exported.stderr
    photo = cv2.imread(str(ROOT / "samples" / "rain" / "input" / "camera.png"))[:101, :67]  # BGR, 101 x 67
    cv2.imwrite(str(tmp_path / "in.png"), photo)
    derained = restore("derain", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--precision", "fp32", "--device", "cpu")
    assert derained.returncode == 0, derained.stderr
    by_restore = cv2.imread(str(tmp_path / "out.png")).astype(int)
    image = (photo[..., ::-1].transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
    by_graph = run_graph(tmp_path / "derain.onnx", image=image)[0].transpose(1, 2, 0)[..., ::-1]
    by_graph = np.round(np.clip(by_graph, 0, 1) * 255).astype(int)
    assert by_graph.shape == by_restore.shape == (101, 67, 3)
    assert np.abs(by_graph - by_restore).max() <= 1
    import onnx

    metadata = {entry.key: entry.value for entry in onnx.load(str(tmp_path / "derain.onnx")).metadata_props}
    assert metadata["restore_model"] == "taylor-derain" and metadata["task"] == "derain" and len(metadata["source_sha256"]) == 64


def test_a_denoisers_noise_level_is_an_input_nan_for_its_blind_path(tmp_path):
    """`--sigma auto` estimates per image while it runs; the graph takes the level as an
    input instead: told 25 it matches the PyTorch model told 25, NaN its blind path."""
    import torch

    from restore_core.export import export_onnx
    from restore_core.presets import resolve_model

    report = export_onnx(resolve_model("infoflow-denoise", None, "cpu"), tmp_path / "denoise.onnx")
    assert report.inputs == ["image", "noise_level"] and report.max_difference < 1e-4
    model = resolve_model("infoflow-denoise", None, "cpu").model.eval()
    image = torch.rand(1, 3, 48, 56, generator=torch.Generator().manual_seed(3))
    for told in (25.0, float("nan")):
        with torch.no_grad():
            model.set_sigma("blind" if told != told else told)
            reference = model(image).numpy()
        got = run_graph(tmp_path / "denoise.onnx", image=image.numpy(), noise_level=np.array([told], np.float32))
        assert np.abs(got - reference).max() < 1e-4, told


def test_an_all_in_one_model_and_a_wrong_output_are_refused_writing_nothing(tmp_path, tiny_checkpoint):
    refused = restore("export", "adms", str(tmp_path / "adms.onnx"))
    assert refused.returncode == 1 and "error: adms: an all-in-one ADMS model picks its filters per image" in refused.stderr
    assert not (tmp_path / "adms.onnx").exists()
    named = restore("export", str(tiny_checkpoint), str(tmp_path / "tiny.pt"))
    assert named.returncode == 2 and "the output must be an .onnx file" in named.stderr and not (tmp_path / "tiny.pt").exists()
    (tmp_path / "tiny.onnx").write_bytes(b"kept")
    kept = restore("export", str(tiny_checkpoint), str(tmp_path / "tiny.onnx"))
    assert kept.returncode == 2 and "already exists; pass --overwrite" in kept.stderr and (tmp_path / "tiny.onnx").read_bytes() == b"kept"
    assert restore("export", str(tiny_checkpoint), str(tmp_path / "tiny.onnx"), "--overwrite").returncode == 0


def test_without_onnx_export_says_how_to_install_it(tmp_path, tiny_checkpoint):
    refused = subprocess.run([sys.executable, "-c", "import sys; sys.modules['onnx'] = None; from cli.main import app; app()",
                              "export", str(tiny_checkpoint), str(tmp_path / "tiny.onnx")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert refused.returncode == 2 and "exporting to ONNX needs the onnx package: pip install 'restore[onnx]'" in refused.stderr


def test_the_python_api_exports_its_models_settings_and_keeps_running_as_before(tmp_path, rng):
    """`ImageRestorer.export_onnx`: the graph takes the restorer's settings (two Golf taps
    here, in the file's metadata), and the restorer itself is left as it was (the export
    works on a copy: it had turned a dehazer's recomposition off in place)."""
    import onnx

    import restore_core

    photo = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    deblur = restore_core.load("golf-deblur", device="cpu", precision="fp32", iterations=2)
    before = deblur(photo)
    report = deblur.export_onnx(tmp_path / "deblur.onnx")
    assert report.max_difference < 1e-4 and report.inputs == ["image"]
    metadata = {entry.key: entry.value for entry in onnx.load(str(tmp_path / "deblur.onnx")).metadata_props}
    assert metadata["settings"] == '{"iterations": 2}'
    image = (photo.transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
    by_graph = np.round(np.clip(run_graph(tmp_path / "deblur.onnx", image=image)[0].transpose(1, 2, 0), 0, 1) * 255)
    assert np.abs(by_graph - before.astype(float)).max() <= 1
    dehaze = restore_core.load("infoflow-dehaze", device="cpu", precision="fp32")
    hazy = dehaze(photo)
    dehaze.export_onnx(tmp_path / "dehaze.onnx")
    assert np.array_equal(dehaze(photo), hazy) and np.array_equal(deblur(photo), before)
