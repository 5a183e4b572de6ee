"""Geometric self-ensemble: the 8 transforms, their inverses, and the engine option."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from restore_core.checkpoint import load_checkpoint
from restore_core.engine.ensemble import ALL, TRANSFORMS, TRANSFORMS_FOR_TASK, dihedral, inverse_dihedral, self_ensemble
from restore_core.engine.runner import Restorer
from test_cli import restore


def test_the_eight_transforms_are_distinct_and_invert_exactly():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    views = [dihedral(x, k) for k in range(TRANSFORMS)]
    for k, view in enumerate(views):
        assert view.shape[-2:] == ((4, 6) if k % 2 == 0 else (6, 4))
        assert torch.equal(inverse_dihedral(view, k), x)
    flat = {tuple(v.flatten().tolist()) for v in views}
    assert len(flat) == TRANSFORMS, "two of the 8 symmetries coincide"


def test_an_equivariant_model_is_unchanged_and_the_input_is_not_touched():
    x = torch.rand(1, 3, 8, 12)
    before = x.clone()
    assert torch.allclose(self_ensemble(lambda t: t, x), before)  # identity returns its input
    assert torch.equal(x, before)
    assert torch.allclose(self_ensemble(torch.sqrt, x), torch.sqrt(before), atol=1e-6)


def test_ensemble_is_the_mean_over_views_of_a_direction_sensitive_model():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 5, padding=2)  # a random kernel has no symmetry
    x = torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        by_hand = sum(inverse_dihedral(conv(dihedral(x, k)), k) for k in range(TRANSFORMS)) / TRANSFORMS
        ensembled = self_ensemble(conv, x)
        assert torch.allclose(ensembled, by_hand, atol=1e-6)
        assert (ensembled - conv(x)).abs().max() > 1e-3  # it did change something


def test_restorer_option_pads_and_tiles_around_the_ensemble(tiny_checkpoint):
    """Odd sizes (padding to the size multiple, then quarter turns) and tiling both work."""
    descriptor = load_checkpoint(tiny_checkpoint)
    image = np.random.default_rng(3).random((37, 53, 3), dtype=np.float32)
    whole = Restorer(descriptor, torch.device("cpu"), "fp32", ensemble=ALL).restore_array(image)
    tiled = Restorer(descriptor, torch.device("cpu"), "fp32", tile=32, tile_overlap=8, ensemble=ALL).restore_array(image)
    plain = Restorer(descriptor, torch.device("cpu"), "fp32").restore_array(image)
    assert whole.shape == image.shape and np.isfinite(whole).all()
    assert np.abs(whole - plain).max() > 1e-4  # a random U-Net is not symmetric
    mse = float(np.mean((whole - tiled) ** 2))
    assert 10 * np.log10(1 / max(mse, 1e-12)) > 35


@pytest.mark.parametrize("task, model", [("derain", "taylor-derain"), ("denoise", "infoflow-denoise")])
def test_benchmark_scores_the_ensemble_no_worse_than_the_plain_model(task, model):
    """Shipped models on their embedded sets: a wrong inverse transform, or views the
    model never learned (sideways rain), would score far below the plain model."""
    result = restore("benchmark", "--task", task, "--self-ensemble", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    rows = {row["label"]: row for row in payload["results"]}
    views = TRANSFORMS_FOR_TASK[task]
    assert payload["self_ensemble"] == list(views)
    assert rows[f"{model}-x{len(views)}"]["psnr_y"] > rows[model]["psnr_y"] + 0.05


def test_restore_command_self_ensemble_writes_the_ensembled_image(tmp_path):
    from conftest import SAMPLES

    from restore_core.io.images import read_image, write_image
    from restore_core.presets import load_for_task

    name = sorted((SAMPLES / "input").glob("*.png"))[0]
    result = restore("derain", str(name), str(tmp_path / "out"), "--self-ensemble")
    assert result.returncode == 0, result.stderr
    written = read_image(tmp_path / "out" / name.name).rgb
    restorer = Restorer(load_for_task(None, "derain", "cpu"), torch.device("cpu"), "fp32", ensemble=TRANSFORMS_FOR_TASK["derain"])
    loaded = read_image(name)
    write_image(tmp_path / "expected.png", restorer.restore_array(loaded.rgb), loaded)  # same layout as the CLI's
    expected = read_image(tmp_path / "expected.png").rgb
    plain = Restorer(restorer.descriptor, torch.device("cpu"), "fp32").restore_array(loaded.rgb)
    assert np.abs(written - expected).max() <= 1 / 255 + 1e-6
    assert np.abs(written - plain).max() > 2 / 255  # and it is not the plain output


def test_ensemble_views_picks_a_subset_of_the_tasks_views():
    """--ensemble-views N: the first N of the task's views in the preference order
    (identity, mirror, half turn, upside-down mirror, quarter turns); never a view the
    task's models are not given; out of range is an error."""
    from restore_core.engine.ensemble import views_for_task

    assert views_for_task("denoise") == ALL
    assert views_for_task("denoise", 4) == (0, 2, 4, 6) and views_for_task("denoise", 2) == (0, 4)
    assert views_for_task("derain", 2) == (0, 4) and views_for_task("derain", 3) == (0, 2, 4)
    assert views_for_task("denoise", 1) == (0,)
    for task, count in (("dehaze", 4), ("denoise", 9), ("denoise", 0)):
        with pytest.raises(ValueError, match="--ensemble-views"):
            views_for_task(task, count)


def test_restore_and_benchmark_take_ensemble_views(tmp_path, tiny_checkpoint):
    from conftest import SAMPLES

    name = sorted((SAMPLES / "input").glob("*.png"))[0]
    bad = restore("derain", str(name), str(tmp_path / "bad"), "--ensemble-views", "8", "-q")
    assert bad.returncode == 2 and "derain models take 1 to 4 views" in bad.stderr
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())
    four = restore("benchmark", "--task", "denoise", "-m", str(tiny_checkpoint), "--ensemble-views", "4", "--limit", "1", "--json")
    assert four.returncode == 0, four.stderr
    payload = json.loads(four.stdout)
    assert payload["self_ensemble"] == [0, 2, 4, 6] and payload["results"][-1]["label"] == f"{tiny_checkpoint.stem}-x4"
    written = restore("denoise", str(name), str(tmp_path / "out"), "-m", str(tiny_checkpoint), "--ensemble-views", "2", "-q")
    assert written.returncode == 0, written.stderr
    plain = restore("denoise", str(name), str(tmp_path / "plain"), "-m", str(tiny_checkpoint), "-q")
    assert plain.returncode == 0, plain.stderr
    from restore_core.io.images import read_image

    assert np.abs(read_image(tmp_path / "out" / name.name).rgb - read_image(tmp_path / "plain" / name.name).rgb).max() > 0
