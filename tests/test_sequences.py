"""Image sequences smoothed in time (``--temporal`` on folders of frames): the images of
each folder are one sequence in name order; a resumed or sharded run restores the frames
it does not write again as neighbours, so it comes out as one uninterrupted run's."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import router_with_scripted_classifier
from test_cli import restore

from restore_core.checkpoint import load_checkpoint
from restore_core.engine.inputs import Job, frame_order, plan_batch, select_shard, with_neighbour_frames
from restore_core.engine.runner import Restorer, RunOptions, restore_stream
from restore_core.engine.temporal import TemporalConfig
from restore_core.io.images import read_image
from restore_core.metrics import psnr


def panning_frames(rng: np.random.Generator, count: int = 8, sigma: float = 10.0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A textured picture panning 4 pixels a frame (uint8 RGB), and the same frames with
    Gaussian noise: clean, noisy."""
    blurred = cv2.GaussianBlur(rng.normal(0, 1, (96, 160 + 4 * count, 3)).astype(np.float32), (0, 0), 2.5)
    wide = np.clip(128 + 50 * blurred / blurred.std(), 0, 255).astype(np.uint8)
    clean = [np.ascontiguousarray(wide[:, 4 * i : 4 * i + 160]) for i in range(count)]
    return clean, [np.clip(frame + rng.normal(0, sigma, frame.shape) + 0.5, 0, 255).astype(np.uint8) for frame in clean]


def write_frames(folder: Path, frames: list[np.ndarray], name: str = "frame_{}.png") -> list[Path]:
    """Frames numbered from 1 without zero padding: frame_10 sorts before frame_2 as text."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name.format(i + 1) for i in range(len(frames))]
    for path, frame in zip(paths, frames):
        cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return paths


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def as_is(checkpoint: Path) -> Restorer:
    """The tiny model left out (strength 0: each image comes out as it went in), so what
    changes an output is the smoothing alone."""
    return Restorer(load_checkpoint(checkpoint), torch.device("cpu"), "fp32", strength=0.0)


def jobs_for(paths: list[Path], root: Path, out: Path) -> list[Job]:
    return [Job(p, p.relative_to(root), out / p.relative_to(root)) for p in paths]


def test_frames_are_ordered_by_folder_then_by_the_numbers_in_their_names():
    names = ["b/frame_10.png", "a/frame_2.png", "b/frame_9.png", "a/frame_10.png", "a/frame_1.png"]
    ordered = frame_order(Job(Path(n), Path(n)) for n in names)
    assert [str(job.source) for job in ordered] == ["a/frame_1.png", "a/frame_2.png", "a/frame_10.png", "b/frame_9.png", "b/frame_10.png"]


def test_frames_a_run_does_not_write_are_added_as_neighbours_of_those_it_does():
    every = [Job(Path(f"s/{i}.png"), Path(f"{i}.png")) for i in range(10)] + [Job(Path("t/0.png"), Path("0.png"))]
    runnable = [job for job in every if job.source.name in ("5.png", "6.png")] + [Job(Path("clip.mp4"), Path("clip.mp4"))]
    planned = with_neighbour_frames(runnable, every + [Job(Path("clip.mp4"), Path("clip.mp4"))], radius=2)
    assert [(str(job.source), job.context) for job in planned] == [
        ("s/3.png", True), ("s/4.png", True), ("s/5.png", False), ("s/6.png", False), ("s/7.png", True), ("s/8.png", True),
        ("clip.mp4", False),
    ]
    first = with_neighbour_frames([every[0]], every, radius=2)  # none before it; none from another folder
    assert [(str(job.source), job.context) for job in first] == [("s/0.png", False), ("s/1.png", True), ("s/2.png", True)]


def test_shards_of_frames_are_runs_of_consecutive_frames():
    jobs = [Job(Path(f"s/{i}.png"), Path(f"{i}.png")) for i in range(10)]
    shards = [select_shard(jobs, index, 3, frames=True) for index in range(3)]
    assert [[job.source.stem for job in shard] for shard in shards] == [["0", "1", "2"], ["3", "4", "5"], ["6", "7", "8", "9"]]
    assert [job.source.stem for job in select_shard(jobs, 0, 3)] == ["0", "3", "6", "9"]  # without frames: every third


def test_a_sequence_of_noisy_frames_is_smoothed_each_frame_in_its_place(tmp_path, rng, tiny_checkpoint):
    clean, noisy = panning_frames(rng, count=12)
    paths = write_frames(tmp_path / "in", noisy)
    jobs = frame_order(jobs_for(paths, tmp_path / "in", tmp_path / "out"))
    options = RunOptions(temporal=TemporalConfig(radius=2), batch_size=3)
    results = list(restore_stream(jobs, as_is(tiny_checkpoint), options))
    assert [r.input for r in results] == [job.source for job in jobs] and all(r.status == "ok" for r in results)
    gains = [psnr(read_rgb(tmp_path / "out" / p.name), c) - psnr(n, c) for p, n, c in zip(paths, noisy, clean)]
    assert min(gains) > 1.0, gains


def test_sixteen_bit_frames_are_smoothed_at_their_own_precision(tmp_path, rng, tiny_checkpoint):
    clean, noisy = panning_frames(rng, count=5)
    (tmp_path / "in").mkdir()
    paths = []
    for i, frame in enumerate(noisy):
        paths.append(tmp_path / "in" / f"{i}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(frame.astype(np.uint16) * 257, cv2.COLOR_RGB2BGR))
    jobs = jobs_for(paths, tmp_path / "in", tmp_path / "out")
    assert all(r.status == "ok" for r in restore_stream(jobs, as_is(tiny_checkpoint), RunOptions(temporal=TemporalConfig(radius=2))))
    out = cv2.imread(str(tmp_path / "out" / "2.png"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and np.mean(out % 257 != 0) > 0.5  # not rounded to 8-bit levels
    assert psnr(out / 257.0, clean[2][..., ::-1].astype(np.float64)) > psnr(noisy[2], clean[2]) + 1.0


def test_a_bad_frame_is_an_error_and_its_neighbours_are_smoothed_without_it(tmp_path, rng, tiny_checkpoint):
    clean, noisy = panning_frames(rng, count=6)
    paths = write_frames(tmp_path / "in", noisy)
    paths[2].write_bytes(b"not a png")
    jobs = jobs_for(paths, tmp_path / "in", tmp_path / "out")
    results = list(restore_stream(jobs, as_is(tiny_checkpoint), RunOptions(temporal=TemporalConfig(radius=2))))
    assert [r.status for r in results] == ["ok", "ok", "error", "ok", "ok", "ok"]
    assert str(paths[2]) in str(results[2].input) and not (tmp_path / "out" / paths[2].name).exists()
    for i in (1, 3):
        assert psnr(read_rgb(tmp_path / "out" / paths[i].name), clean[i]) > psnr(noisy[i], clean[i]) + 1.0


def test_folders_are_separate_sequences(tmp_path, rng, tiny_checkpoint):
    """Two takes of one scene in two folders (the second goes on where the first ends):
    the second's frames are not averaged into the first's, which come out as they do
    restored alone."""
    _, frames = panning_frames(rng, count=8)
    paths = write_frames(tmp_path / "in" / "a", frames[:4]) + write_frames(tmp_path / "in" / "b", frames[4:])
    jobs = frame_order(jobs_for(paths, tmp_path / "in", tmp_path / "out"))
    options = RunOptions(temporal=TemporalConfig(radius=2))
    assert all(r.status == "ok" for r in restore_stream(jobs, as_is(tiny_checkpoint), options))
    alone = jobs_for(paths[:4], tmp_path / "in", tmp_path / "alone")
    assert all(r.status == "ok" for r in restore_stream(alone, as_is(tiny_checkpoint), options))
    for path in paths[:4]:
        name = path.relative_to(tmp_path / "in")
        assert np.array_equal(read_rgb(tmp_path / "out" / name), read_rgb(tmp_path / "alone" / name))


def test_a_resumed_and_a_sharded_sequence_come_out_as_one_run(tmp_path, rng, tiny_checkpoint):
    """Frames whose outputs exist (an interrupted run, resumed with --skip-existing) and
    frames of other shards are restored again as neighbours only: every output equals an
    uninterrupted run's."""
    _, noisy = panning_frames(rng, count=10)
    paths = write_frames(tmp_path / "in", noisy)
    every = [Job(p, p.relative_to(tmp_path / "in")) for p in paths]
    options = RunOptions(temporal=TemporalConfig(radius=2))

    def run(out: Path, shard: tuple[int, int] | None = None) -> list:
        plan = plan_batch(every, out, skip_existing=True, shard=shard, frames=True)
        return list(restore_stream(with_neighbour_frames(plan.runnable, every, 2), as_is(tiny_checkpoint), options))

    assert len(run(tmp_path / "whole")) == 10
    interrupted = tmp_path / "resumed"
    interrupted.mkdir()
    for path in paths[:4]:  # an earlier run wrote frames 1-4 (its own outputs: a copy of the whole run's)
        (interrupted / path.name).write_bytes((tmp_path / "whole" / path.name).read_bytes())
    resumed = run(interrupted)
    assert [r.input.name for r in resumed] == [p.name for p in paths[4:]]  # context frames report nothing
    for index in range(3):
        assert len(run(tmp_path / "sharded", (index, 3))) in (3, 4)
    for path in paths:
        whole = read_rgb(tmp_path / "whole" / path.name)
        assert np.array_equal(read_rgb(interrupted / path.name), whole), path.name
        assert np.array_equal(read_rgb(tmp_path / "sharded" / path.name), whole), path.name


def test_cli_smooths_a_folder_of_frames_and_says_so(tmp_path, rng, tiny_checkpoint):
    clean, noisy = panning_frames(rng, count=6)
    paths = write_frames(tmp_path / "in", noisy)
    run = restore("denoise", str(tmp_path / "in"), str(tmp_path / "out"), "-m", str(tiny_checkpoint), "--strength", "0",
                  "--temporal", "2", "--json")
    assert run.returncode == 0, run.stderr
    assert "the images of each folder are smoothed as the frames of one sequence" in run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [Path(line["input"]).name for line in lines] == [p.name for p in paths]  # frame_1 ... frame_6, in order
    for path, n, c in zip(paths, noisy, clean):
        assert psnr(read_image(tmp_path / "out" / path.name).rgb * 255.0, c.astype(np.float64)) > psnr(n, c) + 1.0


class NaNOnThird(Restorer):
    """The tiny model left out, whose third image comes out with NaN in a corner (a broken checkpoint, an fp16 overflow)."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(load_checkpoint(checkpoint), torch.device("cpu"), "fp32", strength=0.0)
        self.calls = 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        restored = super().__call__(batch).clone()
        if self.calls == 3:
            restored[..., :16, :16] = float("nan")
        return restored


def test_a_frame_the_model_turns_to_nan_is_an_error_and_spoils_no_neighbour(tmp_path, rng, tiny_checkpoint):
    clean, noisy = panning_frames(rng, count=6)
    paths = write_frames(tmp_path / "in", noisy)
    jobs = jobs_for(paths, tmp_path / "in", tmp_path / "out")
    results = list(restore_stream(jobs, NaNOnThird(tiny_checkpoint), RunOptions(temporal=TemporalConfig(radius=2))))
    assert [r.status for r in results] == ["ok", "ok", "error", "ok", "ok", "ok"] and "NaN" in results[2].error
    for i in (0, 1, 3, 4, 5):
        assert psnr(read_rgb(tmp_path / "out" / paths[i].name), clean[i]) > psnr(noisy[i], clean[i]) + 1.0


def test_restore_auto_picks_one_model_per_sequence(tmp_path, rng, monkeypatch):
    """A classifier that would send frames to different models frame by frame: each
    folder's frames go to the model its first frames choose on average, all of them."""
    # folder a frame by frame: noise, rain, noise, rain (rain on average); folder b: haze, noise, haze, noise
    router = router_with_scripted_classifier(monkeypatch, [("noise", 0.6), ("rain", 0.9), ("noise", 0.6), ("rain", 0.9),
                                                           ("haze", 0.9), ("noise", 0.6), ("haze", 0.9), ("noise", 0.6)])
    _, frames = panning_frames(rng, count=8)
    paths = write_frames(tmp_path / "in" / "a", frames[:4]) + write_frames(tmp_path / "in" / "b", frames[4:])
    jobs = frame_order(jobs_for(paths, tmp_path / "in", tmp_path / "out"))
    results = list(restore_stream(jobs, router, RunOptions(temporal=TemporalConfig(radius=1), batch_size=3)))
    assert all(r.status == "ok" for r in results)
    assert [r.model for r in results] == ["taylor-derain"] * 4 + ["infoflow-dehaze"] * 4
    assert results[0].degradation["rain"] == pytest.approx(0.455, abs=1e-4)


def test_benchmark_scores_sequences_as_restored_and_smoothed_from_one_pass(tmp_path, rng):
    """GoPro's layout (a folder of frames per scene, numbered without padding here): the
    identity as the model, so its row is the input's, and the smoothed row is more than
    1 dB above it; each scene smoothed on its own; the model runs once per frame."""
    from restore_core.datasets import load_dataset
    from restore_core.evaluation import evaluate_samples, evaluate_sequences

    for scene, seed in (("GOPR0001", 1), ("GOPR0002", 2)):
        clean, noisy = panning_frames(np.random.default_rng(seed), count=10)
        write_frames(tmp_path / "test" / scene / "blur", noisy)
        write_frames(tmp_path / "test" / scene / "sharp", clean)
    samples = load_dataset("gopro", tmp_path).samples
    calls = []

    def identity(rgb: np.ndarray) -> np.ndarray:
        calls.append(1)
        return rgb

    plain, smoothed = evaluate_sequences(samples, identity, "id", TemporalConfig(radius=2))
    assert len(calls) == 20 and (plain.label, smoothed.label, plain.count, smoothed.count) == ("id", "id-t2", 20, 20)
    assert [p.name for p in plain.per_image][:3] == ["GOPR0001/frame_1.png", "GOPR0001/frame_2.png", "GOPR0001/frame_3.png"]
    assert plain.psnr_rgb == pytest.approx(evaluate_samples(samples, None, "input").psnr_rgb)
    by_name = {p.name: p for p in smoothed.per_image}
    assert all(by_name[p.name].psnr_rgb > p.psnr_rgb + 1.0 for p in plain.per_image)
    assert smoothed.ssim_rgb > plain.ssim_rgb


def test_cli_benchmark_temporal_adds_a_smoothed_row(tmp_path, rng, tiny_checkpoint):
    clean, noisy = panning_frames(rng, count=5)
    write_frames(tmp_path / "set" / "input", noisy)
    write_frames(tmp_path / "set" / "target", clean)
    run = restore("benchmark", "--root", str(tmp_path / "set"), "-m", str(tiny_checkpoint), "--temporal", "1", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert [r["label"] for r in report["results"]] == ["input", "tiny", "tiny-t1"]
    assert report["temporal"] == {"radius": 1, "strength": 4.0, "patch": 7}
    bad = restore("benchmark", "--root", str(tmp_path / "set"), "-m", str(tiny_checkpoint), "--temporal", "9")
    assert bad.returncode == 2 and "temporal radius must be between 0" in bad.stderr
