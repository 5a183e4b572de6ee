"""A training run's log: ``log.csv`` always, TensorBoard's event files when asked.

``log.csv`` has one row per logged step (every 50 steps, each validation, the last
step): the mean loss since the row before, the learning rate, patches per second, the
seconds the run has trained, and the validation metrics as JSON where the row has them.
With ``--tensorboard`` the same numbers go to ``RUN/tensorboard`` (``train/loss``,
``train/lr``, ``train/patches_per_s`` and each metric under its own name, such as
``SemiIRR_val20/psnr_y``), with the first restored images of each validation set
(``SemiIRR_val20/0/restored``, beside its ``input`` and ``target`` once), for
``tensorboard --logdir runs/``.

A resumed run continues from its last checkpoint: what a killed run logged after it is
trained again, so it is dropped from both logs rather than standing twice.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from restore_core.io.files import atomic_write_bytes

if TYPE_CHECKING:
    import numpy as np

    from restore_core.training.sources import ValidationSet

LOG_COLUMNS = ("step", "loss", "lr", "patches_per_s", "elapsed_s", "metrics")
TENSORBOARD_FOLDER = "tensorboard"
TENSORBOARD_MISSING = "--tensorboard needs the tensorboard package: pip install 'restore[tensorboard]'"


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def drop_rows_after(log_path: Path, step: int) -> None:
    """Keep log.csv's header and its rows up to ``step``, the checkpoint a run resumes from."""
    with open(log_path, newline="") as file:
        rows = list(csv.reader(file))
    kept = rows[:1] + [row for row in rows[1:] if row and row[0].isdigit() and int(row[0]) <= step]
    if len(kept) < len(rows):
        text = io.StringIO(newline="")
        csv.writer(text).writerows(kept)
        atomic_write_bytes(log_path, text.getvalue().encode())


class RunLog:
    """The logs of one training process, from ``step`` on (0: a new run). ``writes``:
    False on the ranks of a distributed run other than the first, which log nothing."""

    def __init__(self, run_dir: Path, step: int, writes: bool = True, tensorboard: bool = False) -> None:
        path = Path(run_dir) / "log.csv"
        new = not path.exists() or step == 0
        if writes and not new:
            drop_rows_after(path, step)
        self._file = open(path if writes else os.devnull, "w" if new or not writes else "a", newline="")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(LOG_COLUMNS)
        self._board = None
        self._shown_once: set[str] = set()  # validation images whose input and target are logged
        if writes and tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # optional: restore[tensorboard]

            # purge_step: events a killed run wrote after the checkpoint it resumes from are dropped
            self._board = SummaryWriter(str(Path(run_dir) / TENSORBOARD_FOLDER), purge_step=step + 1 if step else None)

    def row(self, step: int, loss: float, lr: float, patches_per_s: float, elapsed_s: float, metrics: dict[str, Any]) -> None:
        """Log one step; ``metrics``: the validation metrics measured at it, or empty."""
        self._csv.writerow([step, f"{loss:.6f}", f"{lr:.3g}", f"{patches_per_s:.2f}", f"{elapsed_s:.1f}",
                            json.dumps(metrics) if metrics else ""])
        self._file.flush()
        if self._board is not None:
            for name, value in (("train/loss", loss), ("train/lr", lr), ("train/patches_per_s", patches_per_s)):
                self._board.add_scalar(name, value, step)
            for name, value in metrics.items():
                if name != "step" and isinstance(value, (int, float)):
                    self._board.add_scalar(name, value, step)
            self._board.flush()

    def images(self, step: int, restored: dict[str, np.ndarray], validation: Sequence[ValidationSet]) -> None:
        """Log restored validation images (``"<set>/<index>"`` -> 8-bit H x W x 3) at
        ``step``; each one's input and target go in once, the first time it is logged."""
        if self._board is None:
            return
        from restore_core.training.data import to_uint8, unit_float  # OpenCV's import: not for the CLI's --help

        pairs = {f"{vset.name}/{index}": pair for vset in validation for index, pair in enumerate(vset.pairs)}
        for name, image in restored.items():
            self._board.add_image(f"{name}/restored", image, step, dataformats="HWC")
            if name not in self._shown_once:
                self._shown_once.add(name)
                for half, pixels in zip(("input", "target"), pairs[name]):
                    self._board.add_image(f"{name}/{half}", to_uint8(unit_float(pixels)), step, dataformats="HWC")
        self._board.flush()

    def close(self) -> None:
        self._file.close()
        if self._board is not None:
            self._board.close()
