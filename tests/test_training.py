"""Training: the loop runs, checkpoints carry metadata, and resume is exact."""

import itertools
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors import safe_open

from conftest import write_random_pngs
from restore_core.checkpoint import load_checkpoint
from restore_core.training.recipes import RECIPES, DataConfig, check_recipe, load_recipe
from restore_core.training.sources import READ_THREADS, prepare_data
from restore_core.training.trainer import Trainer, TrainingError


def _recipe(tmp_path: Path, steps: int):
    clean = tmp_path / "clean"
    clean.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(clean / f"{i}.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    return replace(
        RECIPES["taylor-derain"],
        model={"mapping": {"width": 4, "levels": 1, "blocks_per_level": [1], "bottleneck_blocks": 1}, "order": 2},
        steps=steps, batch_size=2, patch_size=32, val_every=1000, checkpoint_every=3, ema_decay=0.9,
        data=DataConfig(clean=(str(clean),)),
    )


def test_resume_continues_exactly(tmp_path):
    torch.set_num_threads(1)
    recipe = _recipe(tmp_path, steps=6)
    data = prepare_data(recipe)
    full = Trainer(recipe, tmp_path / "full", torch.device("cpu"), log=lambda s: None)
    full.train(data)

    half = Trainer(recipe, tmp_path / "half", torch.device("cpu"), log=lambda s: None)
    half.train(data, until=3)  # as if killed after the checkpoint at step 3
    resumed = Trainer(recipe, tmp_path / "half", torch.device("cpu"), log=lambda s: None)
    resumed.resume()
    assert resumed.step == 3
    resumed.train(data)
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_resumed_run_logs_each_step_once_and_counts_its_time_from_the_start(tmp_path, monkeypatch):
    """log.csv after a resume: rows a killed run wrote after its last checkpoint are
    dropped (those steps are trained again), and elapsed_s goes on from the seconds
    trained before (the state file carries them) instead of starting again at 0."""
    import csv

    from restore_core.training import trainer as trainer_module

    clock = itertools.count(1000.0, 1.0)  # each reading of the clock: one more second
    monkeypatch.setattr(trainer_module.time, "time", lambda: next(clock))
    torch.set_num_threads(1)
    recipe = _recipe(tmp_path, steps=6)
    data = prepare_data(recipe)
    first = Trainer(recipe, tmp_path / "run", torch.device("cpu"), log=lambda s: None)
    first.train(data, until=3)  # checkpointed at step 3
    with open(tmp_path / "run" / "log.csv", "a", newline="") as log:  # then logged step 5 before it was killed
        csv.writer(log).writerow([5, "0.5", "0.001", "10.0", "1000.0", ""])
    resumed = Trainer(recipe, tmp_path / "run", torch.device("cpu"), log=lambda s: None)
    resumed.resume()
    assert 0 < resumed.seconds_before <= first.seconds_before
    for _ in range(1000):  # a day between the runs: not training time
        next(clock)
    resumed.train(data)
    with open(tmp_path / "run" / "log.csv", newline="") as log:
        rows = list(csv.DictReader(log))
    assert [row["step"] for row in rows] == ["6"]  # the killed run's step 5 is gone
    assert first.seconds_before < float(rows[-1]["elapsed_s"]) < first.seconds_before + 100


def test_worker_processes_draw_the_same_batches_and_train_the_same_weights(tmp_path):
    """--workers changes speed only: the prefetched batches are the loop's own, in
    order, so a run with two workers (resumed midway, too) ends bit-identical."""
    from restore_core.training.prefetch import BatchPrefetcher

    torch.set_num_threads(1)
    recipe = replace(_recipe(tmp_path, steps=6), degradation="noise", degradation_options={"sigma": [5, 50]})
    data = prepare_data(recipe)
    with BatchPrefetcher(data.sampler, recipe.seed, 3, 0, first_step=2, workers=2) as prefetcher:
        for step in range(2, 9):
            got, want = prefetcher.batch(step), data.sampler.batch(recipe.seed, step, 3)
            assert all(np.array_equal(g, w) for g, w in zip(got, want)), step
        with pytest.raises(RuntimeError, match="in order"):
            prefetcher.batch(20)

    # Closing with batches still in flight, larger than a pipe holds (several MB each),
    # returns at once; a worker that dies is reported, not waited for.
    started = time.monotonic()
    with BatchPrefetcher(data.sampler, recipe.seed, 64, 0, first_step=0, workers=2, depth=6) as prefetcher:
        prefetcher.batch(0)
    assert time.monotonic() - started < 60
    with BatchPrefetcher(data.sampler, recipe.seed, 3, 0, first_step=0, workers=2) as prefetcher:
        prefetcher.batch(0)
        prefetcher._processes[1].kill()
        prefetcher._processes[1].join()
        prefetcher.timeout = 5
        with pytest.raises(RuntimeError, match="no training batch from the data workers"):
            for step in range(1, 6):
                prefetcher.batch(step)

    plain = Trainer(recipe, tmp_path / "plain", torch.device("cpu"), log=lambda s: None)
    plain.train(data)
    workers = Trainer(recipe, tmp_path / "workers", torch.device("cpu"), log=lambda s: None, data_workers=2)
    workers.train(data, until=3)
    resumed = Trainer(recipe, tmp_path / "workers", torch.device("cpu"), log=lambda s: None, data_workers=2)
    resumed.resume()
    resumed.train(data)
    for (name, a), b in zip(plain.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_final_checkpoint_has_recipe_and_loads(tmp_path):
    recipe = _recipe(tmp_path, steps=2)
    trainer = Trainer(recipe, tmp_path / "run", torch.device("cpu"), log=lambda s: None)
    trainer.train(prepare_data(recipe))
    loaded = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert loaded.task == "derain" and loaded.recipe["name"] == "taylor-derain" and loaded.recipe["trained_steps"] == 2
    assert (tmp_path / "run" / "log.csv").read_text().startswith("step,loss")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    recipe = replace(_recipe(tmp_path, steps=4), lr=1e30, grad_clip=0.0)
    trainer = Trainer(recipe, tmp_path / "run", torch.device("cpu"), log=lambda s: None)
    with pytest.raises(TrainingError, match="loss became"):
        trainer.train(prepare_data(recipe))
    state = tmp_path / "run" / "state.safetensors"
    if state.exists():  # any checkpoint written holds finite weights only
        with safe_open(str(state), "pt") as f:
            assert all(torch.isfinite(f.get_tensor(k)).all() for k in f.keys() if k.startswith("model."))


def test_a_nan_loss_at_the_first_step_blames_the_weights_not_the_schedule(tmp_path):
    """There is no checkpoint to go back to and no learning rate to lower: the message
    said the opposite ("the last good checkpoint is unchanged: resume with a lower --lr")."""
    from restore_core.checkpoint import save_checkpoint
    from restore_core.models import build_model

    recipe = _recipe(tmp_path, steps=2)
    model = build_model(recipe.architecture, recipe.model)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    save_checkpoint(tmp_path / "nan.safetensors", model, recipe.architecture, recipe.model, "derain", recipe={}, metrics={})
    trainer = Trainer(replace(recipe, init=str(tmp_path / "nan.safetensors")), tmp_path / "run", torch.device("cpu"), log=lambda s: None)
    with pytest.raises(TrainingError, match="at the first step: the model's weights .*nan.safetensors"):
        trainer.train(prepare_data(recipe))


def test_recipe_file_overrides_a_base(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('base = "taylor-derain"\nsteps = 10\n[model]\norder = 1\n')
    recipe = load_recipe(str(path))
    assert recipe.steps == 10 and recipe.model["order"] == 1 and recipe.lr == 1e-3
    from restore_core.configs import ConfigError

    with pytest.raises(ConfigError, match=r"r2.toml: no such recipe file$"):  # not "unknown recipe; known: ..."
        load_recipe(str(tmp_path / "r2.toml"))
    # a file with some fields and no base: which are missing, and the two ways to write one
    partial = tmp_path / "partial.toml"
    partial.write_text('name = "mine"\nsteps = 10\n')
    with pytest.raises(ConfigError, match=r"partial.toml: missing key\(s\) task, architecture, model: a recipe file gives every "
                                          r"field .* or starts from a table recipe with base = \"NAME\""):
        load_recipe(str(partial))
    with pytest.raises(ConfigError, match=r"unknown recipe 'taylor-deraim' \(did you mean taylor-derain\?\); known: taylor-derain"):
        load_recipe("taylor-deraim")
    # a misspelt key of a recipe file (or of a model table) names the key it resembles; an unknown base lists the recipes
    typo = tmp_path / "typo.toml"
    typo.write_text('base = "taylor-derain"\nstepz = 10\n[model]\nordr = 2\n')
    with pytest.raises(ConfigError, match=r"typo.toml: unknown key\(s\) stepz \(did you mean steps\?\); known: "):
        load_recipe(str(typo))
    typo.write_text('base = "taylor-derain"\n[model]\nordr = 2\nmappin = "unet"\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) mappin, ordr \(did you mean mapping for mappin, order for ordr\?\)"):
        check_recipe(load_recipe(str(typo)))
    typo.write_text('base = "nope"\n')
    with pytest.raises(ConfigError, match=r"typo.toml: unknown base recipe 'nope'; known: taylor-derain, golf-deblur"):
        load_recipe(str(typo))


def test_settings_that_must_change_together_are_validated_together():
    """`--set steps=5000 --set stages=[5000,0]`: each alone breaks the sum rule."""
    from restore_core.configs import ConfigError, override, override_many

    golf = RECIPES["golf-deblur"]
    with pytest.raises(ConfigError, match="stages"):
        override(golf, "steps", "5000")
    both = override_many(golf, [("steps", "5000"), ("stages", "[5000, 0]"), ("model.iterations", "0")])
    assert both.steps == 5000 and both.stages == (5000, 0) and both.model["iterations"] == 0
    with pytest.raises(ConfigError, match="unknown setting"):
        override_many(golf, [("steps", "10"), ("no_such", "1")])
    with pytest.raises(ConfigError, match=r"unknown setting 'sed'; did you mean 'seed'\?"):
        override(golf, "sed", "3")
    with pytest.raises(ConfigError, match=r"did you mean 'data.colour_fraction'"):
        override(golf, "data.color_fraction", "0.5")
    with pytest.raises(ConfigError, match=r"^config.data.clean: expected a list, got 'photos' \(a list of one: \[\"photos\"\]\)$"):
        override(golf, "data.clean", "photos")
    with pytest.raises(ConfigError, match=r"^unknown recipe 'golf-debulr' \(did you mean golf-deblur\?\); known: "):
        load_recipe("golf-debulr")
    with pytest.raises(ConfigError, match=r"^recipe golf-deblur: task 'deblurr' \(did you mean deblur\?\)"):
        override(golf, "task", "deblurr")  # was written into every checkpoint of the run
    # A pair given one value (or three) reached Adam as it was.
    with pytest.raises(ConfigError, match=r"^config.betas: expected a list of 2 values, got \[0.9\]$"):
        override(golf, "betas", "[0.9]")
    with pytest.raises(ConfigError, match=r"^config.betas: expected a list, got 0.9$"):
        override(golf, "betas", "0.9")
    assert override(golf, "betas", "[0.5, 0.99]").betas == (0.5, 0.99)


@pytest.mark.parametrize("field, value", [("steps", 0), ("batch_size", 0), ("patch_size", -1), ("lr", -1.0), ("ema_decay", 1.0),
                                          ("val_every", 0), ("checkpoint_every", 0), ("betas", (2.0, 0.9)), ("milestones", (2.0,)),
                                          ("seed", -1)])
def test_a_recipe_out_of_range_is_refused_by_name(field, value):
    """Each used to end in a traceback mid-run (batch 0, lr -1, betas, seed) or a silent
    no-op (steps 0, a milestone past the end)."""
    from restore_core.configs import ConfigError

    with pytest.raises(ConfigError, match=f"{field} must be"):
        replace(RECIPES["taylor-derain"], **{field: value})
    with pytest.raises(ConfigError, match="top_fraction must be"):
        replace(RECIPES["adms"], top_fraction=0.0)
    with pytest.raises(ConfigError, match="paired_fraction must be"):
        DataConfig(paired_fraction=2.0)
    with pytest.raises(ConfigError, match="holdout_every must be"):
        DataConfig(holdout_every=-1)


@pytest.mark.parametrize("name, options", [("noise", {"sigma": [50, 0]}), ("rain", {"layers": [3, 1]}), ("haze", {"beta": [2.0, 0.5]})])
def test_a_degradation_range_given_high_then_low_is_refused(name, options):
    """numpy's uniform(50, 0) raised deep in the first batch ("high - low < 0")."""
    from restore_core.configs import ConfigError
    from restore_core.degradations.table import make_degradation

    with pytest.raises(ConfigError, match=r"is a \(low, high\) range"):
        make_degradation(name, options)
    make_degradation(name, {})  # the defaults are ranges in order


def test_a_single_number_fixes_a_degradation_range():
    from restore_core.degradations import SINGLE_DEGRADATIONS
    from restore_core.degradations.table import DEGRADATIONS, degradation_config

    assert (*SINGLE_DEGRADATIONS, "mixed") == tuple(DEGRADATIONS)  # the light list of names is the table's

    assert degradation_config("noise", {"sigma": 25}).sigma == (25.0, 25.0)
    assert degradation_config("rain", {"layers": 2}).layers == (2, 2)
    assert degradation_config("noise", {"kinds": ["gaussian"], "sigma": [5, 50]}).sigma == (5.0, 50.0)


def test_every_table_recipe_trains_patches_its_model_takes():
    """The patch side must be a multiple of the model's size multiple (taylor-derain had the
    paper's 100 for a U-Net that needs multiples of 16: `restore train --recipe taylor-derain`
    crashed in its first forward pass unless given --patch-size)."""
    from restore_core.models import build_model

    for name, recipe in RECIPES.items():
        architecture, config = (recipe.base_architecture, recipe.base) if name == "adms" else (recipe.architecture, recipe.model)
        multiple = int(getattr(build_model(architecture, config), "size_multiple", 1))
        assert recipe.patch_size % multiple == 0, (name, recipe.patch_size, multiple)


def test_a_patch_size_the_model_cannot_take_is_refused_with_the_sizes_it_can(tmp_path):
    recipe = replace(_recipe(tmp_path, steps=2), model={**RECIPES["taylor-derain"].model}, patch_size=100)
    with pytest.raises(TrainingError, match="use --patch-size 96 or 112"):
        Trainer(recipe, tmp_path / "run", torch.device("cpu"), log=lambda s: None)


def test_clean_folders_are_read_one_image_at_a_time_into_an_8_bit_pool(tmp_path, monkeypatch):
    """A clean folder never sits in memory as float32 all at once (4x its 8-bit pool):
    when an image is read, each other reading thread holds at most one float copy."""
    import gc
    import weakref

    from restore_core.training import data as D

    recipe = _recipe(tmp_path, steps=1)
    for i in range(3, 8):
        cv2.imwrite(str(tmp_path / "clean" / f"{i}.png"), np.full((40, 40, 3), 10 * i, np.uint8))
    alive_at_read, reads = [], []
    real_read = D.read_rgb

    def tracked_read(path):
        gc.collect()
        alive_at_read.append(sum(ref() is not None for ref in reads))
        image = real_read(path)
        reads.append(weakref.ref(image))
        return image

    monkeypatch.setattr(D, "read_rgb", tracked_read)
    data = prepare_data(recipe)
    assert len(reads) == 8 and max(alive_at_read) <= READ_THREADS - 1 + (READ_THREADS == 1), alive_at_read
    assert all(image.clean.dtype == np.uint8 for image in data.sampler.clean)
    assert data.summary["pool_mib"] == round(sum(image.clean.nbytes for image in data.sampler.clean) / 2**20, 1)


@pytest.mark.parametrize("role", ["data", "validation"])
def test_a_pair_of_two_sizes_is_refused_before_training(tmp_path, role):
    """Patches are cut at the same place from both images of a pair: a 96x80 input with an
    80x80 target trained silently on misaligned patches (and a validation pair failed at
    the first validation). Now refused up front, naming both files."""
    folder = tmp_path / "pairs"
    for name, size in (("input", (80, 96)), ("target", (80, 80))):
        (folder / name).mkdir(parents=True)
        cv2.imwrite(str(folder / name / "1.png"), np.zeros((*size, 3), np.uint8))
    recipe = _recipe(tmp_path, steps=1)
    data = replace(recipe.data, paired=(str(folder),)) if role == "data" else replace(recipe.data, validation=(str(folder),))
    with pytest.raises(ValueError, match=r"1.png is 96x80 but its reference .*1.png is 80x80"):
        prepare_data(replace(recipe, data=data))


def test_a_corrupt_training_pair_is_left_out_and_a_corrupt_validation_pair_stops(tmp_path):
    """Either half of a --data pair that cannot be decoded leaves the pair out (named in
    the summary); the same file in a --val folder is an error, as a score over part of
    a validation set would change what the run's best checkpoint means."""
    folder = tmp_path / "pairs"
    for name in ("input", "target"):
        (folder / name).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(folder / name / f"{i}.png"), np.full((40, 40, 3), 50 * i, np.uint8))
    (folder / "target" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    recipe = _recipe(tmp_path, steps=1)
    data = prepare_data(replace(recipe, data=replace(recipe.data, clean=(), builtin_photographs=False, paired=(str(folder),))))
    assert data.summary["paired"][str(folder)]["train"] == 2 and len(data.sampler.paired) == 2
    assert data.summary["undecodable"] == [{"path": str(folder / "target" / "1.png"),
                                            "cause": "cannot decode image (corrupt, truncated or unsupported format)"}]
    with pytest.raises(ValueError, match=r"target/1.png: cannot decode image"):
        prepare_data(replace(recipe, data=replace(recipe.data, validation=(str(folder),))))


def test_a_corrupt_state_file_is_a_training_error_not_a_traceback(tmp_path):
    recipe = _recipe(tmp_path, steps=2)
    trainer = Trainer(recipe, tmp_path / "run", torch.device("cpu"), log=lambda s: None)
    trainer.train(prepare_data(recipe))
    trainer.state_path.write_bytes(b"truncated")
    again = Trainer(recipe, tmp_path / "run", torch.device("cpu"), log=lambda s: None)
    with pytest.raises(TrainingError, match="cannot resume from it"):
        again.resume()


def test_paper_schedule_decays_by_0_2_at_30_50_80_percent():
    recipe = replace(RECIPES["taylor-derain"], steps=100)
    assert [recipe.lr_at(s) for s in (0, 29, 30, 50, 80, 99)] == pytest.approx([1e-3, 1e-3, 2e-4, 4e-5, 8e-6, 8e-6])


def test_cosine_schedule_and_warm_up_follow_their_formulas():
    """schedule = cosine: lr at the first step after the warm-up, min_lr at the last,
    halfway between them at the middle; the warm-up climbs linearly to lr. Golf's two
    stages each get the whole schedule. Bad values are refused naming the field."""
    from restore_core.configs import ConfigError

    recipe = replace(RECIPES["taylor-derain"], steps=101, schedule="cosine", min_lr=1e-5, warmup_steps=0)
    assert recipe.lr_at(0) == pytest.approx(1e-3) and recipe.lr_at(100) == pytest.approx(1e-5)
    assert recipe.lr_at(50) == pytest.approx((1e-3 + 1e-5) / 2)
    assert all(recipe.lr_at(s) > recipe.lr_at(s + 1) for s in range(100))
    warm = replace(recipe, warmup_steps=10)
    assert [warm.lr_at(s) for s in (0, 4, 9)] == pytest.approx([1e-4, 5e-4, 1e-3])
    assert warm.lr_at(10) == pytest.approx(1e-3) and warm.lr_at(100) == pytest.approx(1e-5)
    stepped = replace(RECIPES["taylor-derain"], steps=100, warmup_steps=5)  # a warm-up before the paper's milestones
    assert [stepped.lr_at(s) for s in (0, 4, 5, 30)] == pytest.approx([2e-4, 1e-3, 1e-3, 2e-4])
    golf = replace(RECIPES["golf-deblur"], steps=200, stages=(100, 100), lr=1.0, schedule="cosine")
    assert golf.lr_at(0) == golf.lr_at(100) == 1.0 and golf.lr_at(99) == golf.lr_at(199) == pytest.approx(0.0)
    for field, value, message in (("schedule", "cos", "schedule must be step or cosine"), ("min_lr", 1.0, "min_lr must be >= 0 and at most lr"),
                                  ("warmup_steps", 101, "warmup_steps must be >= 0 and fewer than steps")):
        with pytest.raises(ConfigError, match=message):
            replace(recipe, **{field: value})


def test_fine_tune_from_init_and_degradation_options(tmp_path):
    from restore_core.configs import override

    base = _recipe(tmp_path, steps=2)
    first = Trainer(base, tmp_path / "a", torch.device("cpu"), log=lambda s: None)
    first.train(prepare_data(base))
    tuned = override(override(base, "init", str(tmp_path / "a" / "model.safetensors")), "degradation_options.layers", "[0, 1]")
    assert tuned.degradation_options == {"layers": [0, 1]}
    second = Trainer(tuned, tmp_path / "b", torch.device("cpu"), log=lambda s: None)
    for a, b in zip(second.model.state_dict().values(), load_checkpoint(tmp_path / "a" / "model.safetensors").model.state_dict().values()):
        assert torch.equal(a, b)  # starts from the given weights
    second.train(prepare_data(tuned))
    bad = override(base, "degradation_options.no_such_option", "1")
    with pytest.raises(TrainingError, match="no_such_option"):
        prepare_data(bad)


def test_ema_warms_up_instead_of_keeping_the_initial_weights():
    from restore_core.training.state import EMA, ema_decay_at

    assert ema_decay_at(0.999, 0) == pytest.approx(0.1)
    assert ema_decay_at(0.999, 100) == pytest.approx(101 / 110)
    assert ema_decay_at(0.999, 10**6) == 0.999
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, 0.999)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for t in range(750):
        ema.update(model, t)
    # a plain 0.999 average would still hold 47 % of the initial weights here
    assert torch.allclose(ema.shadow["weight"], torch.ones(2, 2), atol=0.02)


def _tiny_run_files(tmp_path: Path, steps: int, checkpoint_every: int, val_every: int) -> tuple[Path, Path]:
    """A folder of clean images and a tiny Taylor recipe file, for subprocess runs."""
    clean = tmp_path / "clean"
    write_random_pngs(clean, 3, 40, 40, seed=0)
    recipe_file = tmp_path / "tiny.toml"
    recipe_file.write_text(
        f'base = "taylor-derain"\nsteps = {steps}\nbatch_size = 2\npatch_size = 32\ncheckpoint_every = {checkpoint_every}\n'
        f'val_every = {val_every}\n[model]\norder = 1\n[model.mapping]\nwidth = 4\nlevels = 1\nblocks_per_level = [1]\nbottleneck_blocks = 1\n'
    )
    return clean, recipe_file


def test_sigterm_stops_training_after_a_whole_step_and_resume_continues(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    clean, recipe_file = _tiny_run_files(tmp_path, steps=100000, checkpoint_every=100000, val_every=100000)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "cli.main", "train", "--recipe", str(recipe_file), "--clean", str(clean),
               "--no-builtin-photographs", "--out", str(run_dir), "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run_dir / "log.csv").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)  # some steps
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted at step" in stderr and f"continue with: restore train --out {run_dir} --resume" in stderr
    with safe_open(str(run_dir / "state.safetensors"), "pt") as handle:
        saved_step = int(handle.metadata()["step"])
        saved_moment = {k: handle.get_tensor(k) for k in handle.keys() if k.startswith("optim.")}
    assert saved_step > 0 and str(saved_step) in stderr
    resumed = Trainer(load_recipe(str(recipe_file)), run_dir, torch.device("cpu"), log=lambda s: None)
    resumed.resume()
    assert resumed.step == saved_step
    state = resumed.optimizer.state_dict()["state"]
    for key, value in saved_moment.items():
        _, index, name = key.split(".", 2)
        assert torch.equal(state[int(index)][name], value), key


def test_torchrun_two_cpu_ranks_hold_identical_weights(tmp_path):
    """Data-parallel training (gloo) under torchrun: both ranks end bit-identical."""
    import os
    import subprocess
    import sys

    clean, recipe_file = _tiny_run_files(tmp_path, steps=4, checkpoint_every=2, val_every=1000)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "cli.main",
         "train", "--recipe", str(recipe_file), "--clean", str(clean), "--no-builtin-photographs", "--out", str(tmp_path / "run"), "-q"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[:3000] + "\n...\n" + result.stderr[-1500:]
    assert "weights identical on 2 ranks at step 4" in result.stderr
    assert result.stderr.count("recipe taylor-derain") <= 1 and "x 2 ranks" in result.stderr  # rank 0 speaks alone
    loaded = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert loaded.recipe["trained_steps"] == 4


def test_torchrun_ranks_share_one_disk_pool_and_a_reading_failure_stops_them_all(tmp_path):
    """--pool disk under torchrun: the machine's first rank reads the images into a named
    file, the other maps it; both train the same weights as a memory-pool run, and no
    pool file is left. A bad image seen by the reading rank is every rank's error."""
    import os
    import subprocess
    import sys

    clean, recipe_file = _tiny_run_files(tmp_path, steps=4, checkpoint_every=2, val_every=1000)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}

    def run(out: Path, pool: str, ranks: int = 2, *more: str):
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks), "-m", "cli.main"]
        return subprocess.run(command + ["train", "--recipe", str(recipe_file), "--clean", str(clean), "--no-builtin-photographs",
                                         "--out", str(out), "--pool", pool, "-q", *more], capture_output=True, text=True, env=env, timeout=300)

    shared, alone = run(tmp_path / "shared", "disk"), run(tmp_path / "memory", "memory")
    for result in (shared, alone):
        assert result.returncode == 0, result.stderr[-3000:]
        assert "weights identical on 2 ranks at step 4" in result.stderr
    assert "pool disk, shared by 2 ranks 0.0 MiB" in shared.stderr
    assert not [p.name for p in (tmp_path / "shared").iterdir() if p.name.startswith(".restore-pool")]
    a = load_checkpoint(tmp_path / "shared" / "model.safetensors").model.state_dict()
    b = load_checkpoint(tmp_path / "memory" / "model.safetensors").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    pairs = tmp_path / "pairs"  # a pair of two sizes: an error of the reading rank (a corrupt image is only left out)
    for name, size in (("input", (48, 40)), ("target", (40, 40))):
        (pairs / name).mkdir(parents=True)
        cv2.imwrite(str(pairs / name / "1.png"), np.zeros((*size, 3), np.uint8))
    failed = run(tmp_path / "failed", "disk", 2, "--data", str(pairs))
    assert failed.returncode != 0, failed.stderr[-3000:]
    assert "error: " + str(pairs / "input" / "1.png") + " is 40x48 but its reference" in failed.stderr, failed.stderr[-3000:]
    assert "error: rank 0, which reads the training data for this machine, failed: " in failed.stderr, failed.stderr[-3000:]
    assert not [p.name for p in (tmp_path / "failed").iterdir() if p.name.startswith(".restore-pool")]


def test_gopro_scene_layout_is_a_training_folder(tmp_path):
    from restore_core.io.folders import list_training_pairs

    rng = np.random.default_rng(0)
    for scene in ("GOPR0372_07_00", "GOPR0374_11_01"):
        for kind in ("blur", "sharp"):
            (tmp_path / "GoPro" / "train" / scene / kind).mkdir(parents=True)
            for i in range(2):
                cv2.imwrite(str(tmp_path / "GoPro" / "train" / scene / kind / f"{i:06d}.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    pairs = list_training_pairs(tmp_path / "GoPro")
    assert len(pairs) == 4 and all(b.parent.name == "blur" and s.parent.name == "sharp" and b.name == s.name for b, s in pairs)
    recipe = replace(RECIPES["golf-deblur"], patch_size=32, data=DataConfig(paired=(str(tmp_path / "GoPro"),)))
    assert prepare_data(recipe).summary["paired"][str(tmp_path / "GoPro")]["train"] == 4
    # clean images as --data or --val: what takes them instead
    for option, folders, use in (("--data", {"paired": (str(tmp_path / "clean"),)}, "clean images train with --clean FOLDER"),
                                 ("--val", {"validation": (str(tmp_path / "clean"),), "builtin_photographs": True}, "restore make-pairs makes a validation set")):
        (tmp_path / "clean").mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / "clean" / "1.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
        with pytest.raises(ValueError, match=rf"^{option} .*clean: holds 1 image\(s\) with no references beside them: .*; {use}"):
            prepare_data(replace(RECIPES["golf-deblur"], patch_size=32, data=DataConfig(**folders)))
    (tmp_path / "neither").mkdir()
    with pytest.raises(ValueError, match="nor GoPro-style"):
        list_training_pairs(tmp_path / "neither")
    # a scene's blur/ half: the scene (a paired folder) is named as the one to give
    with pytest.raises(ValueError, match=r"blur: the blur/ half of a paired folder; give the folder that holds blur/ and sharp/: .*GOPR0372_07_00$"):
        list_training_pairs(tmp_path / "GoPro" / "train" / "GOPR0372_07_00" / "blur")


def test_grey_photographs_get_grey_degradations_and_colour_ones_colour():
    """Train400 is grey: its patches must carry the same noise in all three channels,
    as the grey test sets do, while colour photographs keep independent noise."""
    from functools import partial

    from restore_core.degradations.noise import NoiseConfig, add_noise
    from restore_core.training.data import PairedImage, PatchSampler

    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 256, (40, 40, 1), dtype=np.uint8), 3, axis=2)
    colour = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    degrade = partial(add_noise, config=NoiseConfig(sigma=(25.0, 25.0)))
    for image, want_grey in ((grey, True), (colour, False)):
        sampler = PatchSampler([], [PairedImage(None, image)], 32, lambda x, r: degrade(x, r))
        noisy, clean = sampler.sample(np.random.default_rng(1))
        noise = noisy - clean
        assert 20 / 255 < noise[..., 0].std() < 30 / 255
        same = np.array_equal(noisy[..., 0], noisy[..., 1]) and np.array_equal(noisy[..., 0], noisy[..., 2])
        assert same == want_grey


def test_resume_continues_the_recorded_recipe_and_refuses_changes(tmp_path):
    """`--resume` reads the run's recipe.json (data included): a bare `--resume` trains on
    the recorded data, and an option that would change the recipe is refused (exit 2)."""
    import os
    import subprocess
    import sys

    clean, recipe_file = _tiny_run_files(tmp_path, steps=4, checkpoint_every=2, val_every=1000)
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}

    def train(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli.main", "train", "--recipe", str(recipe_file), "--out", str(run_dir), "-q", *extra],
                              capture_output=True, text=True, env=env, timeout=300)

    first = train("--clean", str(clean), "--no-builtin-photographs")
    assert first.returncode == 0, first.stderr
    resumed = train("--resume")  # no data flags: the recorded ones are used
    assert resumed.returncode == 0, resumed.stderr
    assert str(clean) in (run_dir / "recipe.json").read_text()
    # A finished run resumed again (a scheduler's retry) is complete: nothing read or rewritten.
    final = run_dir / "model.safetensors"
    written = (final.read_bytes(), final.stat().st_mtime_ns)
    again = train("--resume")
    assert again.returncode == 0 and f"{run_dir}: the run is complete (4 of 4 steps); nothing to resume" in again.stderr
    assert again.stdout.strip() == str(final) and (final.read_bytes(), final.stat().st_mtime_ns) == written
    final.unlink()  # killed before its final model was written: resuming writes it
    # The run folder names its recipe: `--out RUN --resume` alone continues it (it asked for --recipe).
    bare = subprocess.run([sys.executable, "-m", "cli.main", "train", "--out", str(run_dir), "--resume", "-q"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert bare.returncode == 0 and final.exists(), bare.stderr
    changed = train("--resume", "--steps", "8")
    assert changed.returncode == 2
    message = " ".join(changed.stderr.split())
    assert "steps: 4 -> 8" in message and "--init" in message
    assert "recipe.json" in message and "milestones=[]" in message  # why, and how to train longer


def test_resume_with_more_steps_lengthens_a_constant_rate_run_exactly(tmp_path):
    """With a constant learning rate (``milestones = []``) ``--resume --steps 6`` lengthens a
    finished 3-step run, and the result is bit-identical to a 6-step run from the start."""
    import os
    import subprocess
    import sys

    clean, recipe_file = _tiny_run_files(tmp_path, steps=3, checkpoint_every=3, val_every=1000)
    recipe_file.write_text("milestones = []\n" + recipe_file.read_text())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}

    def train(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli.main", "train", "--recipe", str(recipe_file), "--out", str(run_dir), "-q",
                               "--clean", str(clean), "--no-builtin-photographs", *extra],
                              capture_output=True, text=True, env=env, timeout=300)

    assert train(tmp_path / "short").returncode == 0
    lengthened = train(tmp_path / "short", "--resume", "--steps", "6")
    assert lengthened.returncode == 0, lengthened.stderr
    assert "lengthening" in lengthened.stderr
    assert train(tmp_path / "long", "--steps", "6").returncode == 0
    a, b = (load_checkpoint(tmp_path / run / "model.safetensors") for run in ("short", "long"))
    assert a.recipe["trained_steps"] == b.recipe["trained_steps"] == 6
    with safe_open(str(tmp_path / "short" / "model.safetensors"), "pt") as fa, safe_open(str(tmp_path / "long" / "model.safetensors"), "pt") as fb:
        assert set(fa.keys()) == set(fb.keys())
        for key in fa.keys():
            assert torch.equal(fa.get_tensor(key), fb.get_tensor(key)), key


def test_colour_fraction_and_channel_shuffle_shape_the_clean_patch_mix():
    """With 9 grey images and 1 colour one, uniform drawing gives about 10 % colour
    patches; ``colour_fraction=0.5`` gives about half. ``channel_shuffle`` permutes a
    colour patch's channels (all six orders appear) and leaves grey patches alone."""
    from restore_core.training.data import PairedImage, PatchSampler, is_grey

    rng = np.random.default_rng(0)
    greys = [np.repeat(rng.integers(0, 256, (32, 32, 1), dtype=np.uint8), 3, axis=2) for _ in range(9)]
    colour = np.zeros((32, 32, 3), dtype=np.uint8)
    colour[..., 0], colour[..., 1], colour[..., 2] = 10, 100, 200  # a flat colour: its channel order shows
    pool = [PairedImage(None, image) for image in greys + [colour]]

    def identity(x, r):
        return x

    def colour_share(sampler: PatchSampler) -> float:
        draws = np.random.default_rng(1)
        return float(np.mean([not is_grey(sampler.sample(draws)[1]) for _ in range(2000)]))

    assert 0.07 < colour_share(PatchSampler([], pool, 32, identity)) < 0.13
    assert 0.45 < colour_share(PatchSampler([], pool, 32, identity, colour_fraction=0.5)) < 0.55

    shuffled = PatchSampler([], pool, 32, identity, colour_fraction=1.0, channel_shuffle=True)
    draws = np.random.default_rng(2)
    orders = set()
    for _ in range(200):
        degraded, clean = shuffled.sample(draws)
        assert np.array_equal(degraded, clean)  # the degradation sees the shuffled patch
        orders.add(tuple(int(round(v * 255)) for v in clean[0, 0]))
    assert orders == {tuple(int(v) for v in colour[0, 0, list(p)]) for p in itertools.permutations(range(3))}
    grey_only = PatchSampler([], pool, 32, identity, colour_fraction=0.0, channel_shuffle=True)
    assert all(is_grey(grey_only.sample(draws)[1]) for _ in range(50))
    with pytest.raises(ValueError, match="colour_fraction"):
        PatchSampler([], pool, 32, identity, colour_fraction=1.5)


def test_transplant_lays_a_real_pairs_residual_over_a_clean_patch():
    """``transplant_fraction=1``: every clean-only patch is degraded by ``clip(clean +
    (input - target))`` of a crop of the paired image instead of the synthetic
    degradation, which is never called."""
    from restore_core.training.data import PairedImage, PatchSampler, transplant_residual

    source_clean = np.full((32, 32, 3), 100, dtype=np.uint8)
    source_rainy = source_clean.copy()
    source_rainy[:, ::4] = 180  # vertical streaks adding 80 levels
    background = np.full((32, 32, 3), 200, dtype=np.uint8)

    expected = transplant_residual(background.astype(np.float32) / 255, source_rainy, source_clean)
    assert np.isclose(expected[0, 0, 0], 1.0) and np.isclose(expected[0, 1, 0], 200 / 255)  # clipped at white

    def never(x, r):
        raise AssertionError("the synthetic degradation must not run")

    sampler = PatchSampler([PairedImage(source_rainy, source_clean)], [PairedImage(None, background)], 32, never,
                           paired_fraction=0.0, transplant_fraction=1.0)
    draws = np.random.default_rng(0)
    for _ in range(20):
        degraded, clean = sampler.sample(draws)
        assert np.allclose(clean, 200 / 255)
        streaks = degraded[..., 0] > clean[..., 0] + 1e-6
        assert 0.2 < streaks.mean() < 0.3  # one column in four, from the source
    with pytest.raises(ValueError, match="paired images"):
        PatchSampler([], [PairedImage(None, background)], 32, never, transplant_fraction=0.5)
    with pytest.raises(ValueError, match="transplant_fraction"):
        PatchSampler([PairedImage(source_rainy, source_clean)], [PairedImage(None, background)], 32, never,
                     transplant_fraction=1.5)


def test_without_quarter_turns_vertical_streaks_stay_vertical():
    """``quarter_turns=False`` keeps to flips and half turns: a pair with vertical
    streaks never yields a patch with horizontal ones; the default does."""
    from restore_core.training.data import PairedImage, PatchSampler

    clean = np.full((32, 32, 3), 50, dtype=np.uint8)
    rainy = clean.copy()
    rainy[:, ::4] = 150

    def vertical_share(sampler: PatchSampler) -> float:
        draws = np.random.default_rng(3)
        votes = []
        for _ in range(200):
            degraded, _ = sampler.sample(draws)
            residual = degraded[..., 0] - 50 / 255
            votes.append(residual.std(axis=1).mean() > residual.std(axis=0).mean())  # varies along rows
        return float(np.mean(votes))

    assert vertical_share(PatchSampler([PairedImage(rainy, clean)], [], 32, None, quarter_turns=False)) == 1.0
    assert 0.3 < vertical_share(PatchSampler([PairedImage(rainy, clean)], [], 32, None)) < 0.7


@pytest.mark.parametrize("precision, expected", [("auto", torch.float32), ("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_training_precision_sets_the_dtype_of_the_steps_and_is_recorded(tmp_path, precision, expected):
    """`restore train --precision bf16` runs the forward pass under bf16 autocast (on the
    CPU too); the weights stay fp32 and the checkpoint says how the steps were computed."""
    recipe = _recipe(tmp_path, steps=2)
    trainer = Trainer(recipe, tmp_path / "run", torch.device("cpu"), log=lambda s: None, precision=precision)
    seen: list[torch.dtype] = []
    first_conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda module, args, output: seen.append(output.dtype) if module.training else None)
    trainer.train(prepare_data(recipe))
    assert seen and set(seen) == {expected}
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    loaded = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert loaded.recipe["precision"] == ("fp32" if expected == torch.float32 else "bf16 autocast on cpu (fp32 weights)")


def test_training_precision_fp16_on_the_cpu_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        Trainer(_recipe(tmp_path, steps=1), tmp_path / "run", torch.device("cpu"), log=lambda s: None, precision="fp16")


def test_lengthens_only_when_the_recorded_steps_keep_their_learning_rate():
    base = replace(RECIPES["taylor-derain"], steps=100)
    constant = replace(base, milestones=())
    assert replace(constant, steps=200).lengthens(constant)
    assert not replace(constant, steps=50).lengthens(constant)  # shorter is not longer
    assert not replace(constant, steps=200, lr=1e-4).lengthens(constant)  # another change rides along
    assert not replace(base, steps=200).lengthens(base)  # x0.2 at 30 % moves from step 30 to step 60
    never_reached = replace(base, milestones=(1.0,))  # a drop at step 100 of 100: no step ran at the lower rate
    assert replace(never_reached, steps=200).lengthens(never_reached)


def test_bf16_training_of_dilated_convolutions_on_the_cpu_avoids_channels_last(tmp_path):
    """InfoAccum's dilated convolutions, whose inputs grow to 27 channels here, train in the
    contiguous layout under CPU bf16 (oneDNN's channels_last bf16 weight gradients of such
    convolutions came out NaN, or crashed, on an AVX512-BF16 Xeon: see
    ``training_memory_format``), and two steps leave every weight finite. Models without
    dilation, and fp32 steps, keep channels_last."""
    from restore_core.device import training_memory_format

    clean = tmp_path / "clean"
    write_random_pngs(clean, 2, 80, 80, seed=0)
    model = {"levels": 1, "base_filters": 8, "max_filters": 8, "info_accum": {"layers": 3, "growth": 4},
             "subpixel_top": True, "norm": "none", "residual": True}
    recipe = replace(RECIPES["infoflow-denoise"], model=model, steps=2, batch_size=2, patch_size=64, pretrain_steps=0,
                     val_every=1000, checkpoint_every=1000, data=DataConfig(clean=(str(clean),)))
    trainer = Trainer(recipe, tmp_path / "run", torch.device("cpu"), log=lambda s: None, precision="bf16")
    assert trainer.memory_format == torch.contiguous_format and "contiguous" in trainer.precision_note()
    trainer.train(prepare_data(recipe))
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())

    cpu = torch.device("cpu")
    assert training_memory_format(trainer.model, cpu, None) == torch.channels_last
    derainer = Trainer(_recipe(tmp_path, steps=1), tmp_path / "derain", cpu, log=lambda s: None, precision="bf16")
    assert derainer.memory_format == torch.channels_last


def test_validation_pairs_of_8_bit_images_are_held_as_8_bit_and_score_the_same(tmp_path):
    """Validation images are held for the whole run: 8-bit ones as uint8 (a quarter of
    float32's memory), 16-bit ones as float32, and the metrics are those of the floats."""
    from restore_core.io.images import read_rgb
    from restore_core.models import build_model
    from restore_core.training.sources import ValidationSet
    from restore_core.training.trainer import evaluate

    eight = tmp_path / "eight"
    write_random_pngs(eight / "input", 4, 32, 48, seed=1)
    write_random_pngs(eight / "target", 4, 32, 48, seed=2)
    sixteen = tmp_path / "sixteen"
    rng = np.random.default_rng(3)
    for role in ("input", "target"):
        (sixteen / role).mkdir(parents=True)
        cv2.imwrite(str(sixteen / role / "a.png"), rng.integers(0, 65536, (32, 48, 3), dtype=np.uint16))
    recipe = replace(_recipe(tmp_path, steps=1), data=DataConfig(paired=(str(eight),), holdout_every=2, validation=(str(sixteen),)))
    data = prepare_data(recipe)
    held, sixteen_bit = data.validation
    assert [a.dtype for pair in held.pairs for a in pair] == [np.uint8] * 4
    assert [a.dtype for pair in sixteen_bit.pairs for a in pair] == [np.float32] * 2
    assert data.summary["validation_mib"] == round((4 * 32 * 48 * 3 + 2 * 32 * 48 * 3 * 4) / 2**20, 1)

    model = build_model(recipe.architecture, recipe.model).eval()
    as_floats = ValidationSet(held.name, [(read_rgb(eight / "input" / f"{i:02d}.png"), read_rgb(eight / "target" / f"{i:02d}.png")) for i in (1, 3)])
    assert evaluate(model, [held], torch.device("cpu"), 16) == evaluate(model, [as_floats], torch.device("cpu"), 16)


def test_the_best_validation_step_is_recorded_and_survives_resume(tmp_path):
    """best.safetensors holds the best mean PSNR-Y's weights; the trainer records the step
    it came from (and keeps it across --resume), so the CLI's last line can name it."""
    from cli.train_cmd import final_validation_line
    from restore_core.checkpoint import read_metadata

    torch.set_num_threads(1)
    recipe = _recipe(tmp_path, steps=6)
    pairs = tmp_path / "val"
    write_random_pngs(pairs / "input", 2, 32, 32, seed=3)
    write_random_pngs(pairs / "target", 2, 32, 32, seed=4)
    recipe = replace(recipe, val_every=1, data=replace(recipe.data, validation=(str(pairs),)))
    data = prepare_data(recipe)
    trainer = Trainer(recipe, tmp_path / "run", torch.device("cpu"), log=lambda s: None)
    trainer.train(data, until=4)
    best = read_metadata(tmp_path / "run" / "best.safetensors")["metrics"]
    assert trainer.best_step == best["step"] and trainer.best == pytest.approx(best["val/psnr_y"])
    resumed = Trainer(recipe, tmp_path / "run", torch.device("cpu"), log=lambda s: None)
    resumed.resume()
    assert (resumed.best, resumed.best_step) == (trainer.best, trainer.best_step)

    metrics = {"val/psnr_y": 30.0, "val/ssim_y": 0.9, "step": 6}
    line = final_validation_line(metrics, 31.25, 4, Path("run/best.safetensors"))
    assert line == "validation at the end (step 6): val/psnr_y 30.000, val/ssim_y 0.900; best at step 4 (mean PSNR-Y 31.250): run/best.safetensors"
    assert final_validation_line(metrics, 30.0, 6, Path("b")) == "validation at the end (step 6): val/psnr_y 30.000, val/ssim_y 0.900"


def test_a_second_train_into_a_running_runs_folder_is_refused(tmp_path):
    """Two `restore train` into one --out (a scheduler's retry with --resume while the first
    job still runs, or two fresh starts) wrote their checkpoints over each other; the run
    folder is now locked for the life of the process that trains in it."""
    import os
    import subprocess
    import sys

    from restore_core.training.state import lock_run

    clean, recipe_file = _tiny_run_files(tmp_path, steps=2, checkpoint_every=1, val_every=100)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    command = [sys.executable, "-m", "cli.main", "train", "--recipe", str(recipe_file), "--clean", str(clean),
               "--no-builtin-photographs", "--out", str(run_dir), "--threads", "1", "-q"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    held = lock_run(run_dir)  # as a training process holds it
    for extra in ((), ("--resume",)):
        refused = subprocess.run([*command, *extra], env=env, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip() == (f"error: {run_dir}: a restore train is running in this folder now (process {os.getpid()}); "
                                          "wait for it, stop it, or use another --out")
    assert not (run_dir / "state.safetensors").exists()
    os.close(held)  # the process ended
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert (run_dir / "model.safetensors").exists()
    # A fresh run into a folder holding files of a run's names but no run (a model kept
    # there as model.safetensors) replaced them silently; now refused, the folder untouched.
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "model.safetensors").write_bytes((run_dir / "model.safetensors").read_bytes())
    (kept / "log.csv").write_text("mine\n")
    before = {p.name: p.read_bytes() for p in kept.iterdir()}
    replacing = subprocess.run([*command[:-4], str(kept), *command[-3:]], env=env, capture_output=True, text=True, timeout=300)
    assert replacing.returncode == 2 and replacing.stderr.strip() == (
        f"error: {kept} holds model.safetensors, log.csv, which a new run there would replace; choose another --out (a folder of its own)")
    assert {p.name: p.read_bytes() for p in kept.iterdir()} == before  # no .lock either
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)  # the finished run: resumable, not replaced
    assert again.returncode == 2 and "already holds a run; use --resume" in again.stderr


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_it_and_of_no_run_says_so(tmp_path):
    """A run stopped before its first checkpoint (while reading its data, say) holds a
    recipe.json and no state: a fresh start there was refused ("already holds a run")
    and --resume too ("nothing to resume from"), so a scheduler's retry could never
    succeed. --resume now starts the recorded run from step 0. --resume where no run is
    said "no training data: give --data ..."; now that there is no run to resume."""
    import os
    import subprocess
    import sys

    clean, recipe_file = _tiny_run_files(tmp_path, steps=2, checkpoint_every=1, val_every=100)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "cli.main", "train", "--recipe", str(recipe_file), "--out", str(run_dir), "--threads", "1", "-q"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    nowhere = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert nowhere.returncode == 2 and nowhere.stderr.strip() == f"error: {run_dir}: no run to resume there (no recipe.json); start one without --resume"
    first = subprocess.run([*command, "--clean", str(clean), "--no-builtin-photographs"], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    for name in ("state.safetensors", "last.safetensors", "model.safetensors", "log.csv"):  # as if stopped before step 1
        (run_dir / name).unlink()
    retried = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert retried.returncode == 0 and f"{run_dir}: no checkpoint yet; the recorded run starts from step 0" in retried.stderr, retried.stderr
    assert load_checkpoint(run_dir / "model.safetensors").recipe["trained_steps"] == 2


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through Linux's /proc")
def test_a_rank_leaves_no_gloo_thread_running_into_interpreter_shutdown(tmp_path):
    """A rank aborted at exit now and then ("terminate called without an active
    exception", 1 torchrun run in ~30 under load): torch._dynamo, first imported by the
    optimiser while the process group existed, kept references to it past
    destroy_process_group, so gloo's worker threads ran on into interpreter shutdown and
    one, releasing a finished all_gather's tensors there, could not take the GIL. With
    the import done before the group exists, shutdown() leaves no gloo thread."""
    import os
    import subprocess
    import sys

    script = tmp_path / "rank.py"
    script.write_text(
        "import os, torch\n"
        "from restore_core.training.distributed import init_from_env, shutdown, weights_agree\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        "info = init_from_env('cpu')\n"
        "model = torch.nn.Conv2d(3, 3, 3)\n"
        "torch.optim.Adam(model.parameters())  # imports torch._dynamo if nothing did before\n"
        "assert weights_agree(model, info) in (True, False)\n"
        "shutdown(info)\n"
        "with open(os.path.join(os.path.dirname(__file__), f'rank{info.rank}.txt'), 'w') as out:  # not stdout: the ranks' lines interleave\n"
        "    out.write(f\"{before} {len(os.listdir('/proc/self/task'))}\")\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):  # threads before the group was made, and left after shutdown()
        before, after = map(int, (tmp_path / f"rank{rank}.txt").read_text().split())
        assert after <= before, (rank, before, after)


def test_a_made_set_of_another_task_given_as_data_or_val_is_said(tmp_path):
    """A set `restore make-pairs -d noise` made, given to a derain recipe as --data or --val:
    the run trained on (or was measured by) denoising pairs without a word. Its
    degradation.json names the degradation; a warning says so for each such folder."""
    import json

    from cli.train_cmd import sets_of_another_task

    for name, degradation in (("noise25", "noise"), ("rainy", "rain"), ("mixed", "mixed")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "degradation.json").write_text(json.dumps({"degradation": degradation, "seed": 0}))
    (tmp_path / "plain").mkdir()  # no record: nothing to say
    folders = tuple(str(tmp_path / name) for name in ("noise25", "rainy", "mixed", "plain"))
    derain = replace(RECIPES["taylor-derain"], data=DataConfig(paired=folders[:2], validation=folders))
    assert sets_of_another_task(derain) == [
        f"--data {folders[0]}: its pairs were made with noise (its degradation.json), and recipe taylor-derain trains derain",
        f"--val {folders[0]}: its pairs were made with noise (its degradation.json), and recipe taylor-derain trains derain",
        f"--val {folders[2]}: its pairs were made with mixed degradations (its degradation.json), and recipe taylor-derain trains derain",
    ]
    assert sets_of_another_task(replace(RECIPES["adms"], data=DataConfig(validation=folders))) == []


def test_a_time_limit_pauses_before_the_step_that_would_overrun_it():
    """The pace is this call's mean step, validations and checkpoints left out; a step
    that validates adds the last validation's time, and pausing the last checkpoint's;
    the first step always runs (no pace known yet)."""
    from restore_core.training.trainer import Pace

    now = [100.0]
    pace = Pace(12.0, first_step=4, clock=lambda: now[0])
    assert not pace.no_room_for_a_step(4, validates=True)  # this call's first step: always run
    now[0] = 103.0  # one step of 3 s
    assert not pace.no_room_for_a_step(5, validates=False)  # 3 + 3 = 6 s: fits
    now[0] = 108.0  # a second step of 3 s, then a validation of 2 s
    pace.validated(2.0)
    assert not pace.no_room_for_a_step(6, validates=False)  # 8 + 3 = 11 s (the mean step leaves the validation out)
    assert pace.no_room_for_a_step(6, validates=True) and pace.ran_out  # 8 + 3 + 2 = 13 s: would overrun
    now[0] = 111.5  # a third step of 3 s, then a checkpoint of 0.5 s, which pausing will write again
    pace.checkpointed(0.5)
    pace.time_limit = 15.0
    assert not pace.no_room_for_a_step(7, validates=False)  # 11.5 + 3 (mean still 3) + 0.5 (the checkpoint) = 15 s: fits
    pace.time_limit = 14.9
    assert pace.no_room_for_a_step(7, validates=False)  # 11.5 + 3 + 0.5 (the checkpoint) = 15 s: over 14.9
    assert not Pace(None, 0, clock=lambda: now[0]).no_room_for_a_step(1000, validates=True)


def test_a_time_limited_run_pauses_checkpointed_and_resumes_exactly(tmp_path):
    """`restore train --time-limit`: the run pauses after the last step that fits,
    checkpointed; resumed, it ends bit-identical to a run never paused."""
    torch.set_num_threads(1)
    recipe = _recipe(tmp_path, steps=6)
    data = prepare_data(recipe)
    full = Trainer(recipe, tmp_path / "full", torch.device("cpu"), log=lambda s: None)
    full.train(data)
    said: list[str] = []
    limited = Trainer(recipe, tmp_path / "limited", torch.device("cpu"), log=said.append)
    limited.train(data, time_limit=1e-9)  # room for no step after the first
    assert limited.step == 1 and not (tmp_path / "limited" / "model.safetensors").exists()
    assert said[-1] == f"time limit reached: paused at step 1 of 6; continue with: restore train --out {tmp_path / 'limited'} --resume"
    with safe_open(str(tmp_path / "limited" / "state.safetensors"), "pt") as handle:
        assert int(handle.metadata()["step"]) == 1
    resumed = Trainer(recipe, tmp_path / "limited", torch.device("cpu"), log=lambda s: None)
    resumed.resume()
    resumed.train(data, time_limit=3600)
    assert resumed.step == 6 and (tmp_path / "limited" / "model.safetensors").exists()
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_train_time_limit_on_the_command_line(tmp_path):
    """--time-limit takes 45m, 2h, 1h30m or H:MM:SS and refuses a bare number (minutes to a
    scheduler, seconds elsewhere); a run that reaches it exits 0 naming last.safetensors,
    and --resume finishes it."""
    import os
    import subprocess
    import sys

    clean, recipe_file = _tiny_run_files(tmp_path, steps=4, checkpoint_every=100, val_every=100)
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}

    def train(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli.main", "train", "--recipe", str(recipe_file), "--clean", str(clean),
                               "--no-builtin-photographs", "--out", str(run_dir), "-q", *extra], capture_output=True, text=True, env=env,
                              timeout=300)

    bare = train("--time-limit", "90")
    assert bare.returncode == 2 and "--time-limit: '90' has no unit; say 90m for minutes or 90s for seconds" in bare.stderr
    assert not run_dir.exists()
    paused = train("--time-limit", "0.001s")
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.strip() == str(run_dir / "last.safetensors") and (run_dir / "last.safetensors").is_file()
    assert "time limit reached: paused at step 1 of 4" in paused.stderr
    finished = subprocess.run([sys.executable, "-m", "cli.main", "train", "--out", str(run_dir), "--resume", "-q", "--time-limit", "1h"],
                              capture_output=True, text=True, env=env, timeout=300)
    assert finished.returncode == 0 and finished.stdout.strip() == str(run_dir / "model.safetensors"), finished.stderr


def test_parse_duration_reads_units_and_clock_times():
    from cli.options import parse_duration

    assert [parse_duration(t) for t in ("45m", "2h", "1h30m", "1.5h", "90s", "10m30s", "1:30:00", "0:05", " 2H ")] == [
        2700, 7200, 5400, 5400, 90, 630, 5400, 5, 7200]
    for wrong in ("90", "1h30", "abc", "1:70", "0m", "1:2:3:4"):
        with pytest.raises(ValueError):
            parse_duration(wrong)


def test_a_recipe_s_noise_level_on_the_0_1_scale_is_cautioned():
    """`restore train --set 'degradation_options={"sigma": 0.1}'` trained on next to no
    noise without a word; the shipped recipes get no caution."""
    from cli.train_cmd import degradation_cautions

    faint = replace(RECIPES["infoflow-denoise"], degradation_options={"sigma": 0.1})
    assert degradation_cautions(faint) == [
        "recipe infoflow-denoise: noise sigma 0.1 is on the 0-255 scale of 8-bit samples, where it is a fraction of one step "
        "(next to no noise); 0.1 on the 0-1 scale is sigma=25.5"]
    assert all(degradation_cautions(recipe) == [] for recipe in RECIPES.values())
