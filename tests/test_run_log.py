"""A training run's log: log.csv, and TensorBoard's event files with --tensorboard."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from restore_core.training.run_log import TENSORBOARD_FOLDER, RunLog

ROOT = Path(__file__).resolve().parent.parent


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows for a run: tag -> [(step, value)], as its reader
    gives them (events a resumed run purged left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(run_dir / TENSORBOARD_FOLDER))
    board.Reload()
    return {tag: [(event.step, event.value) for event in board.Scalars(tag)] for tag in board.Tags()["scalars"]}


def test_a_resumed_run_logs_each_step_once_in_both_logs(tmp_path):
    """A killed run logged steps 40 and 50 after its checkpoint at 30; resumed from 30,
    it logs them again: log.csv and TensorBoard both hold each step once, the second time's."""
    pytest.importorskip("tensorboard")
    first = RunLog(tmp_path, 0, tensorboard=True)
    for step in (10, 20, 30, 40, 50):
        first.row(step, 1.0 / step, 2e-4, 8.0, step / 10, {"val/psnr_y": 20.0 + step / 10, "step": step} if step % 20 == 0 else {})
    first.close()
    resumed = RunLog(tmp_path, 30, tensorboard=True)
    for step in (40, 50, 60):
        resumed.row(step, 0.5 / step, 1e-4, 9.0, step / 10, {"val/psnr_y": 30.0 + step / 10, "step": step} if step % 20 == 0 else {})
    resumed.close()
    with open(tmp_path / "log.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["step"]) for row in rows] == [10, 20, 30, 40, 50, 60]
    assert float(rows[3]["loss"]) == pytest.approx(0.5 / 40, abs=1e-6) and json.loads(rows[3]["metrics"])["val/psnr_y"] == 34.0
    scalars = _scalars(tmp_path)
    assert [step for step, _ in scalars["train/loss"]] == [10, 20, 30, 40, 50, 60]
    assert scalars["train/loss"][3][1] == pytest.approx(0.5 / 40)
    assert scalars["val/psnr_y"] == [(20, pytest.approx(22.0)), (40, pytest.approx(34.0)), (60, pytest.approx(36.0))]
    assert "step" not in scalars


def test_restore_train_tensorboard_logs_what_log_csv_holds(tmp_path):
    pytest.importorskip("tensorboard")
    from conftest import write_random_pngs

    write_random_pngs(tmp_path / "clean", 2, 48, 48, seed=1)
    for half, seed in (("input", 2), ("target", 3)):
        write_random_pngs(tmp_path / "val" / half, 1, 32, 32, seed=seed)
    run = tmp_path / "run"
    trained = subprocess.run([sys.executable, "-m", "cli.main", "train", "-r", "taylor-derain", "--clean", str(tmp_path / "clean"),
                              "--no-builtin-photographs", "--val", str(tmp_path / "val"), "--steps", "4", "--batch-size", "1",
                              "--patch-size", "32", "--set", "val_every=2", "--set", "model.mapping.width=4",
                              "--out", str(run), "--quiet", "--precision", "fp32", "--tensorboard"],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert trained.returncode == 0, trained.stderr
    with open(run / "log.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    scalars = _scalars(run)
    assert [step for step, _ in scalars["train/loss"]] == [int(row["step"]) for row in rows] == [2, 4]
    for row in rows:
        for name, value in json.loads(row["metrics"]).items():
            if name != "step":
                assert (int(row["step"]), pytest.approx(value)) in scalars[name]
    # the restored validation image at each validation; its input and target once
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(run / TENSORBOARD_FOLDER), size_guidance={"images": 0})
    board.Reload()
    assert [event.step for event in board.Images("val/0/restored")] == [2, 4]
    assert [event.step for event in board.Images("val/0/input")] == [event.step for event in board.Images("val/0/target")] == [2]
    assert (board.Images("val/0/target")[0].width, board.Images("val/0/target")[0].height) == (32, 32)


def test_tensorboard_missing_is_a_usage_error_before_any_work(tmp_path):
    """Without the package, --tensorboard is refused at once, saying how to install it."""
    refused = subprocess.run([sys.executable, "-c", "import sys; sys.modules['tensorboard'] = None; from cli.main import app; app()",
                              "train", "-r", "taylor-derain", "--clean", str(tmp_path), "--out", str(tmp_path / "run"), "--tensorboard"],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert refused.returncode == 2
    assert "--tensorboard needs the tensorboard package: pip install 'restore[tensorboard]'" in refused.stderr
    assert not (tmp_path / "run").exists()
