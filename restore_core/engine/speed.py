"""Throughput measurement: end-to-end folder restoration vs the bare forward pass.

Both are measured in the same process on the same images, one after the
other, so the ratio is robust to a noisy machine:

* ``bare``: the images already decoded into tensors; only ``Restorer.__call__``
  (padding, forward, clamp) is timed.
* ``end_to_end``: :func:`restore_stream` over a folder of PNG files: decode,
  restore, encode and atomic write, as ``restore derain IN OUT`` does.

``ratio = end_to_end images/s / bare images/s`` (1.0 = I/O completely hidden).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from restore_core.engine.inputs import collect_inputs, plan_outputs
from restore_core.engine.runner import Restorer, RunOptions, restore_stream
from restore_core.io.images import read_image


@dataclass
class SpeedResult:
    width: int
    height: int
    images: int
    bare_images_per_s: float
    end_to_end_images_per_s: float
    ms_per_megapixel: float

    @property
    def ratio(self) -> float:
        return self.end_to_end_images_per_s / self.bare_images_per_s


def synthetic_photos(folder: Path, count: int, width: int, height: int, seed: int = 0) -> list[Path]:
    """Smooth random colour images with detail (PNG-compressible like photos)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        base = cv2.resize(rng.random((max(2, height // 32), max(2, width // 32), 3)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
        image = np.clip(base + rng.normal(0, 0.03, base.shape), 0, 1)
        path = folder / f"{i:04d}.png"
        cv2.imwrite(str(path), np.round(image * 255).astype(np.uint8))
        paths.append(path)
    return paths


def measure_speed(
    restorer: Restorer, width: int, height: int, count: int = 8, options: RunOptions = RunOptions(), rounds: int = 2
) -> SpeedResult:
    """Time ``rounds`` interleaved rounds of bare and end-to-end runs; keep the fastest
    of each (the least disturbed by other processes)."""
    with tempfile.TemporaryDirectory(prefix="restore-speed-") as tmp:
        tmp_path = Path(tmp)
        paths = synthetic_photos(tmp_path / "in", count, width, height)
        tensors = [torch.from_numpy(read_image(p).rgb.transpose(2, 0, 1).copy()).unsqueeze(0) for p in paths]
        restorer(tensors[0])  # warm-up: oneDNN picks its kernels on the first call
        jobs = plan_outputs(collect_inputs(str(tmp_path / "in")), tmp_path / "out")
        bare_times, e2e_times = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            for t in tensors:
                restorer(t).cpu()
            bare_times.append(time.perf_counter() - start)

            start = time.perf_counter()
            results = list(restore_stream(jobs, restorer, options))
            e2e_times.append(time.perf_counter() - start)
            failed = [r for r in results if r.status != "ok"]
            if failed:
                raise RuntimeError(f"speed run failed on {failed[0].input}: {failed[0].error}")
            for job in jobs:
                job.output.unlink()
    bare, end_to_end = min(bare_times), min(e2e_times)
    return SpeedResult(width, height, count, count / bare, count / end_to_end, 1000 * bare / count / (width * height / 1e6))


@dataclass
class GrowthPoint:
    label: str  # "images" or "pixels"
    images: int
    width: int
    height: int
    seconds: float

    @property
    def seconds_per_megapixel(self) -> float:
        return self.seconds / (self.images * self.width * self.height / 1e6)


def measure_growth(
    restorer: Restorer,
    counts: tuple[int, ...] = (10, 100, 1000),
    small: tuple[int, int] = (64, 64),
    sizes: tuple[tuple[int, int], ...] = ((256, 256), (512, 512), (1024, 1024), (2048, 2048)),
    per_size: int = 2,
    options: RunOptions = RunOptions(),
) -> list[GrowthPoint]:
    """Wall time of :func:`restore_stream` (decode + restore + encode + write) against
    the number of images (``counts`` images of ``small`` size) and against pixels per
    image (``per_size`` images of each of ``sizes``). Both should grow linearly: the
    seconds per megapixel column should stay flat. Start-up (imports, model load) is
    outside these timings; see :func:`measure_startup`."""
    points = []
    with tempfile.TemporaryDirectory(prefix="restore-growth-") as tmp:
        tmp_path = Path(tmp)
        restorer(torch.rand(1, 3, small[1], small[0]))  # warm-up
        plans = [("images", n, small) for n in counts] + [("pixels", per_size, size) for size in sizes]
        for index, (label, n, (width, height)) in enumerate(plans):
            folder = tmp_path / f"in{index}"
            synthetic_photos(folder, n, width, height, seed=index)
            jobs = plan_outputs(collect_inputs(str(folder)), tmp_path / f"out{index}")
            start = time.perf_counter()
            results = list(restore_stream(jobs, restorer, options))
            elapsed = time.perf_counter() - start
            if any(r.status != "ok" for r in results):
                raise RuntimeError(f"growth run failed: {next(r for r in results if r.status != 'ok').error}")
            points.append(GrowthPoint(label, n, width, height, elapsed))
    return points


def measure_startup(model: str, task: str = "derain") -> float:
    """Seconds for a fresh ``restore`` process to import, load ``model`` and restore one
    64x64 image (the fixed cost a batch job pays once)."""
    import subprocess
    import sys

    with tempfile.TemporaryDirectory(prefix="restore-startup-") as tmp:
        tmp_path = Path(tmp)
        synthetic_photos(tmp_path / "in", 1, 64, 64)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cli.main", task, str(tmp_path / "in"), str(tmp_path / "out"), "--model", model, "-q"],
                       check=True, capture_output=True, cwd=Path(__file__).resolve().parents[2])
        return time.perf_counter() - start
