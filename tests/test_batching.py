"""Batched restoration (--batch-size) gives each image its own result, in input order.

A batch of same-size images goes through the model as one tensor, tile by tile, and
every image is conditioned on its own whole-image estimate (here: a denoiser told
--sigma auto). A mix-up of images or of their noise levels inside a batch would show
as a difference from restoring the images one at a time.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from restore_core.checkpoint import ModelDescriptor
from restore_core.engine.inputs import Job
from restore_core.engine.runner import Restorer, RunOptions, restore_stream
from restore_core.models.infoflow import InfoAccumConfig, InfoFlowConfig, InfoFlowGenerator

SIGMAS = (5.0, 50.0, 25.0)


def _level_sensitive_denoiser() -> ModelDescriptor:
    """A small untrained generator whose output depends strongly on the level it is told."""
    config = InfoFlowConfig(levels=2, base_filters=8, info_accum=InfoAccumConfig(layers=2, growth=2), norm="none",
                            residual=True, refine=4, noise_level=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = InfoFlowGenerator(config)
        for head in (model.noise_level_embedding.mlp[-1], model.refine[-1]):
            torch.nn.init.normal_(head.weight, std=0.5)
    return ModelDescriptor(model, "infoflow", {}, "denoise", "level-sensitive", size_multiple=model.size_multiple)


@pytest.fixture
def noisy_folder(tmp_path: Path) -> list[Job]:
    rng = np.random.default_rng(1)
    clean = cv2.GaussianBlur(rng.integers(0, 256, (72, 88, 3)).astype(np.float32), (0, 0), 4)
    jobs = []
    for i, sigma in enumerate(SIGMAS):
        source = tmp_path / "in" / f"{i}.png"
        source.parent.mkdir(exist_ok=True)
        noisy = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(source), noisy)
        jobs.append(Job(source, Path(source.name)))
    return jobs


def _restore(jobs: list[Job], out: Path, batch_size: int, tile: int) -> tuple[list[np.ndarray], list[float]]:
    jobs = [replace(job, output=out / job.relative) for job in jobs]
    restorer = Restorer(_level_sensitive_denoiser(), torch.device("cpu"), "fp32", tile=tile, tile_overlap=16)
    results = list(restore_stream(jobs, restorer, RunOptions(batch_size=batch_size)))
    assert [r.status for r in results] == ["ok"] * len(jobs)
    assert [r.input for r in results] == [job.source for job in jobs]  # input order kept
    return [cv2.imread(str(job.output)).astype(int) for job in jobs], [r.degradation["noise_sigma"] for r in results]


@pytest.mark.parametrize("tile", [0, 48])
def test_a_batch_restores_each_image_as_if_alone(noisy_folder, tmp_path, tile):
    alone, alone_levels = _restore(noisy_folder, tmp_path / f"one-{tile}", batch_size=1, tile=tile)
    batched, batched_levels = _restore(noisy_folder, tmp_path / f"three-{tile}", batch_size=3, tile=tile)
    assert batched_levels == alone_levels
    assert alone_levels[0] < 10 < alone_levels[2] < 35 < alone_levels[1]  # each image's own level was estimated
    for a, b in zip(alone, batched):
        assert np.abs(a - b).max() <= 1  # float rounding of a batched convolution at most
    # the level matters to this model, so a swapped level would have shown above
    model = _level_sensitive_denoiser().model.eval()
    x = torch.from_numpy(cv2.imread(str(noisy_folder[0].source)).astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        told = [model(x, noise_level=torch.tensor([sigma])) for sigma in SIGMAS[:2]]
    assert (told[0] - told[1]).abs().mean() * 255 > 5


def test_slow_writing_holds_the_model_back_instead_of_piling_up_images(tmp_path, monkeypatch):
    """When encoding and writing are slower than the model (a fast GPU), restore_stream
    waits for the oldest writes: no more than 2 x io_threads + batch_size restored images
    wait to be written at any time (before the bound, every image of the folder could)."""
    import threading
    import time

    import restore_core.engine.runner as runner

    waiting, most, lock = [0], [0], threading.Lock()
    real_encode = runner._encode

    def slow_encode(*args, **kwargs):
        with lock:
            most[0] = max(most[0], waiting[0])
        time.sleep(0.02)
        try:
            return real_encode(*args, **kwargs)
        finally:
            with lock:
                waiting[0] -= 1

    real_submit = runner.ThreadPoolExecutor.submit

    def counting_submit(self, fn, *args, **kwargs):
        if fn is slow_encode:
            with lock:
                waiting[0] += 1
                most[0] = max(most[0], waiting[0])
        return real_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(runner, "_encode", slow_encode)
    monkeypatch.setattr(runner.ThreadPoolExecutor, "submit", counting_submit)
    rng = np.random.default_rng(0)
    jobs = []
    for i in range(40):
        source = tmp_path / "in" / f"{i:02d}.png"
        source.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(source), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        jobs.append(Job(source, Path(source.name), tmp_path / "out" / source.name))
    identity = torch.nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    restorer = Restorer(ModelDescriptor(identity, "identity", {}, "derain", "identity"), torch.device("cpu"), "fp32")
    results = list(restore_stream(jobs, restorer, RunOptions(io_threads=2, batch_size=1)))
    assert [r.status for r in results] == ["ok"] * 40 and [r.input for r in results] == [job.source for job in jobs]
    assert most[0] <= 2 * 2 + 1 + 1, most[0]  # the bound, plus the one submitted before the wait


def test_an_output_with_nan_is_an_error_and_no_file(tmp_path):
    """A model that returns NaN (a broken checkpoint, fp16 overflow) used to write a black
    image with status ok; the image is now an error and nothing is written, the others
    in the batch are written."""

    class NanOnBright(torch.nn.Module):
        def forward(self, x):
            return torch.where(x.mean(dim=(1, 2, 3), keepdim=True) > 0.5, torch.full_like(x, float("nan")), x)

    jobs = []
    for i, level in enumerate((30, 220, 60)):
        source = tmp_path / "in" / f"{i}.png"
        source.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(source), np.full((16, 16, 3), level, np.uint8))
        jobs.append(Job(source, Path(source.name), tmp_path / "out" / source.name))
    restorer = Restorer(ModelDescriptor(NanOnBright(), "nan", {}, "derain", "nan"), torch.device("cpu"), "fp32")
    results = list(restore_stream(jobs, restorer, RunOptions(batch_size=3)))
    assert [r.status for r in results] == ["ok", "error", "ok"]
    assert "NaN or infinite" in results[1].error and not (tmp_path / "out" / "1.png").exists()
    assert (tmp_path / "out" / "0.png").is_file() and (tmp_path / "out" / "2.png").is_file()
