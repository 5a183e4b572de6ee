"""`restore make-pairs`: paired test sets made from clean images, reproducibly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from restore_core.io.folders import list_pairs
from restore_core.metrics import psnr


def restore(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    """Two colour photographs and a grey one."""
    folder = tmp_path / "clean"
    folder.mkdir()
    cv2.imwrite(str(folder / "astronaut.png"), cv2.cvtColor(data.astronaut()[::4, ::4], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "coffee.jpg"), cv2.cvtColor(data.coffee()[::4, ::4], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "camera.png"), data.camera()[::4, ::4])
    return folder


def pixels(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_a_noise_set_has_the_noise_asked_for_and_is_made_again_bit_for_bit(clean: Path, tmp_path: Path):
    out = tmp_path / "noise25"
    result = restore("make-pairs", str(clean), str(out), "-d", "noise", "--set", "sigma=25", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(out / "input" / n) for n in ("astronaut.png", "camera.png", "coffee.png")]
    assert "3 pair(s) made" in result.stderr
    # the layout restore benchmark and restore train --val read
    assert [(i.name, t.name) for i, t in list_pairs(out)] == [(n, n) for n in ("astronaut.png", "camera.png", "coffee.png")]
    for name in ("astronaut.png", "camera.png", "coffee.png"):
        noisy, target = pixels(out / "input" / name), pixels(out / "target" / name)
        residual = noisy.astype(np.float64) - target
        middle = (target > 40) & (target < 215)  # where clipping hardly cuts the noise
        assert 23.5 < residual[middle].std() < 26.5, name
    assert pixels(out / "input" / "camera.png").ndim == 2 and pixels(out / "target" / "camera.png").ndim == 2  # grey stays grey
    assert np.array_equal(pixels(out / "target" / "camera.png"), data.camera()[::4, ::4])
    assert np.array_equal(pixels(out / "target" / "astronaut.png")[..., ::-1], data.astronaut()[::4, ::4])
    record = json.loads((out / "degradation.json").read_text())
    assert record["degradation"] == "noise" and record["settings"]["sigma"] == [25.0, 25.0] and record["seed"] == 3
    assert record["images"] == ["astronaut.png", "camera.png", "coffee.jpg"]

    again = tmp_path / "again"
    assert restore("make-pairs", str(clean), str(again), "-d", "noise", "--set", "sigma=25", "--seed", "3").returncode == 0
    other_seed = tmp_path / "seed4"
    assert restore("make-pairs", str(clean), str(other_seed), "-d", "noise", "--set", "sigma=25", "--seed", "4").returncode == 0
    for name in ("astronaut.png", "camera.png", "coffee.png"):
        assert (again / "input" / name).read_bytes() == (out / "input" / name).read_bytes()
        assert (other_seed / "input" / name).read_bytes() != (out / "input" / name).read_bytes()
        assert (other_seed / "target" / name).read_bytes() == (out / "target" / name).read_bytes()
    # the same files named one by one (a shell's expansion of clean/*): the same set
    named = tmp_path / "named"
    files = [str(clean / name) for name in ("astronaut.png", "camera.png", "coffee.jpg")]
    assert restore("make-pairs", *files, str(named), "-d", "noise", "--set", "sigma=25", "--seed", "3").returncode == 0
    assert all((named / "input" / n).read_bytes() == (out / "input" / n).read_bytes() for n in ("astronaut.png", "camera.png", "coffee.png"))


def test_blur_and_grey_sets_are_degraded_as_asked(clean: Path, tmp_path: Path):
    blur = tmp_path / "blur"
    result = restore("make-pairs", str(clean), str(blur), "-d", "motion-blur", "--set", "length=[15,15]", "--set", "noise_sigma=0", "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["ok"] * 3 and [r["grey"] for r in rows] == [False, True, False]
    for name in ("astronaut.png", "coffee.png"):
        blurred, sharp = pixels(blur / "input" / name), pixels(blur / "target" / name)
        assert 12 < psnr(blurred, sharp) < 30  # changed, and not beyond recognition
        assert cv2.Laplacian(blurred, cv2.CV_64F).var() < 0.5 * cv2.Laplacian(sharp, cv2.CV_64F).var()

    grey = tmp_path / "grey"
    assert restore("make-pairs", str(clean), str(grey), "-d", "noise", "--set", "sigma=15", "--grey").returncode == 0
    target = pixels(grey / "target" / "astronaut.png")
    assert target.ndim == 2
    expected = cv2.cvtColor(data.astronaut()[::4, ::4].astype(np.float32) / 255, cv2.COLOR_RGB2GRAY)
    assert np.abs(target.astype(np.float64) - np.round(expected * 255)).max() <= 1
    assert pixels(grey / "input" / "astronaut.png").ndim == 2


def test_bad_images_and_name_clashes_are_reported_and_the_set_goes_on(clean: Path, tmp_path: Path):
    (clean / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    cv2.imwrite(str(clean / "coffee.png"), cv2.cvtColor(data.coffee()[::4, ::4], cv2.COLOR_RGB2BGR))  # beside coffee.jpg
    out = tmp_path / "set"
    result = restore("make-pairs", str(clean), str(out), "-d", "rain", "--json")
    assert result.returncode == 1
    rows = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows["broken.png"]["status"] == "error" and "cannot decode" in rows["broken.png"]["error"]
    assert rows["coffee.png"]["status"] == "error" and "coffee.jpg" in rows["coffee.png"]["error"]  # the name its pair would take
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {clean / 'broken.png'}: cannot decode image (corrupt, truncated or unsupported format)",
        f"error: {clean / 'coffee.png'}: its pair would be named like that of {clean / 'coffee.jpg'} (coffee.png)"]
    assert sorted(p.name for p in (out / "input").iterdir()) == ["astronaut.png", "camera.png", "coffee.png"]
    assert sorted(p.name for p in (out / "target").iterdir()) == ["astronaut.png", "camera.png", "coffee.png"]
    assert not (out / "input" / "broken.png").exists()


def test_sub_folders_with_recursive_and_videos_or_unreadable_files_said_not_mistaken(clean: Path, tmp_path: Path):
    """--recursive takes the images of sub-folders (pairs side by side: a second image of one
    name is refused); a folder's videos and unreadable files are named in a warning, and a
    video given by name is refused as a video, not as a corrupt image."""
    (clean / "2024").mkdir()
    cv2.imwrite(str(clean / "2024" / "rocket.png"), cv2.cvtColor(data.rocket()[::4, ::4], cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(clean / "2024" / "camera.png"), data.camera()[::8, ::8])  # named like camera.png above it
    (clean / "clip.mp4").write_bytes(b"\0\0\0\x18ftypmp42")
    (clean / "layers.psd").write_bytes(b"8BPS")
    flat = restore("make-pairs", str(clean), str(tmp_path / "flat"), "-d", "noise")
    assert flat.returncode == 0, flat.stderr
    assert sorted(p.name for p in (tmp_path / "flat" / "input").iterdir()) == ["astronaut.png", "camera.png", "coffee.png"]
    assert "left out 1 file(s) in formats restore cannot read: 1 .psd" in flat.stderr
    assert "left out 1 video(s)" in flat.stderr

    deep = restore("make-pairs", str(clean), str(tmp_path / "deep"), "-d", "noise", "--recursive", "--json")
    assert deep.returncode == 1
    rows = {str(Path(r["input"]).relative_to(clean)): r for r in map(json.loads, deep.stdout.splitlines())}
    assert rows["2024/rocket.png"]["status"] == "ok" and (tmp_path / "deep" / "target" / "rocket.png").is_file()
    # sorted by path, 2024/camera.png comes first: its pair is made, the other camera.png's refused
    assert rows["camera.png"]["status"] == "error" and str(clean / "2024" / "camera.png") in rows["camera.png"]["error"]
    assert np.array_equal(pixels(tmp_path / "deep" / "target" / "camera.png"), data.camera()[::8, ::8])

    quiet = restore("make-pairs", str(clean), str(tmp_path / "quiet"), "-d", "noise", "-q")
    assert quiet.returncode == 0 and quiet.stderr == "" and len(quiet.stdout.split()) == 3  # the paths, no summary or warnings

    video = restore("make-pairs", str(clean / "clip.mp4"), str(tmp_path / "video"), "-d", "noise")
    assert video.returncode == 1 and "clip.mp4: a video; pairs are made from still images" in video.stderr
    assert "cannot decode" not in video.stderr and not list((tmp_path / "video").rglob("*.png"))


def test_camera_noise_takes_odd_sizes_and_an_image_a_degradation_refuses_is_one_error(clean: Path, tmp_path: Path, monkeypatch):
    """`make-pairs -d noise --set kinds=["camera"]` on a photo with an odd side ended the
    whole set in a traceback ("camera noise needs even sizes"); now it is made. Any image a
    degradation cannot take is that image's error line, and the set goes on."""
    cv2.imwrite(str(clean / "odd.png"), cv2.cvtColor(data.astronaut()[:101:4, :87:4], cv2.COLOR_RGB2BGR))  # 26 x 22
    result = restore("make-pairs", str(clean), str(tmp_path / "set"), "-d", "noise", "--set", 'kinds=["camera"]')
    assert result.returncode == 0, result.stderr
    assert pixels(tmp_path / "set" / "input" / "odd.png").shape == (26, 22, 3)

    from restore_core.degradations import pairs
    from restore_core.degradations.pairs import PairRecipe, make_pairs

    def refuse_wide(clean_image, rng, config):
        if clean_image.shape[1] > 128:  # coffee.jpg alone
            raise ValueError("too wide for this degradation")
        return clean_image * 0.5

    monkeypatch.setitem(pairs.DEGRADATIONS, "noise", (pairs.DEGRADATIONS["noise"][0], refuse_wide))
    made = list(make_pairs(sorted(clean.iterdir()), tmp_path / "other", PairRecipe.from_options("noise", {})))
    errors = {pair.source.name: pair.error for pair in made if pair.error}
    assert errors == {"coffee.jpg": f"{clean / 'coffee.jpg'}: cannot degrade: too wide for this degradation"}
    assert sorted(p.name for p in (tmp_path / "other" / "input").iterdir()) == ["astronaut.png", "camera.png", "odd.png"]


def test_a_set_is_finished_by_running_it_again_and_never_mixed_with_other_settings(clean: Path, tmp_path: Path):
    out = tmp_path / "set"
    command = ["make-pairs", str(clean), str(out), "-d", "haze", "--seed", "1"]
    assert restore(*command).returncode == 0
    made = {p.name: p.read_bytes() for p in (out / "input").iterdir()}
    (out / "input" / "camera.png").unlink()  # as if stopped there
    finished = restore(*command, "--json")
    assert finished.returncode == 0, finished.stderr
    assert [json.loads(line)["status"] for line in finished.stdout.splitlines()] == ["skipped", "ok", "skipped"]
    assert {p.name: p.read_bytes() for p in (out / "input").iterdir()} == made

    other = restore("make-pairs", str(clean), str(out), "-d", "haze", "--seed", "2")
    assert other.returncode == 2 and "made with other settings or images" in other.stderr and "--overwrite" in other.stderr
    assert {p.name: p.read_bytes() for p in (out / "input").iterdir()} == made
    assert json.loads((out / "degradation.json").read_text())["seed"] == 1
    replaced = restore("make-pairs", str(clean), str(out), "-d", "haze", "--seed", "2", "--overwrite")
    assert replaced.returncode == 0 and json.loads((out / "degradation.json").read_text())["seed"] == 2
    assert (out / "input" / "camera.png").read_bytes() != made["camera.png"]


@pytest.mark.parametrize("args, message", [
    (["-d", "fog"], "unknown degradation 'fog'; known: rain, noise, motion-blur, haze, mixed"),
    (["-d", "noise", "--set", "sigmas=25"], "unknown key(s) sigmas"),
    (["-d", "noise", "--set", "sigma=[40,10]"], "sigma is a (low, high) range, got [40.0, 10.0]"),
    (["-d", "noise", "--set", "sigma"], "--set expects KEY=VALUE"),
    # these ended in tracebacks (numpy's "scale < 0", "high <= 0", a KeyError) or made nonsense pairs
    (["-d", "noise", "--set", "sigma=-5"], "sigma must be >= 0, got [-5.0, -5.0]"),
    (["-d", "noise", "--set", "kinds=[]"], "kinds must name one or more of gaussian, poisson-gaussian, jpeg, camera, got none"),
    (["-d", "noise", "--set", 'kinds=["jpeg", "salt"]'], "kinds must name one or more of gaussian, poisson-gaussian, jpeg, camera; unknown: salt"),
    (["-d", "mixed", "--set", 'degradations=["rain", "fog"]'], "degradations must name one or more of rain, noise, motion-blur, haze; unknown: fog"),
    (["-d", "mixed", "--set", 'settings={"noise": {"sigm": 50}}'], "degradation_options (noise): unknown key(s) sigm (did you mean sigma?)"),
    (["-d", "mixed", "--set", 'settings={"haze": {}}', "--set", 'degradations=["noise"]'], "settings for 'haze', which is not among degradations (noise)"),
    (["-d", "mixed", "--set", 'settings={"noise": 5}'], 'settings of noise must be an object of its fields, e.g. {"sigma": 25}, got 5'),
    (["-d", "haze", "--set", "beta=-1"], "beta must be >= 0"),
    (["-d", "rain", "--set", "density=[0, 2]"], "density must be in [0, 1], got [0.0, 2.0]"),
    (["-d", "noise", "--set", "jpeg_quality=[50, 120]"], "jpeg_quality must be in [0, 100]"),
    # a range of three ended in numpy's TypeError after degradation.json was written; a word
    # for a number said "expected a list, got str"; a near miss of a name had no suggestion
    (["-d", "noise", "--set", "sigma=[5, 15, 25]"], "degradation_options (noise).sigma: expected a list of 2 values, got [5, 15, 25]"),
    (["-d", "rain", "--set", "layers=[2]"], "degradation_options (rain).layers: expected a list of 2 values, got [2]"),
    (["-d", "noise", "--set", "sigma=high"], "sigma takes a number or a [low, high] range, got 'high'"),
    (["-d", "nois"], "unknown degradation 'nois' (did you mean noise?); known:"),
    (["-d", "blur"], "unknown degradation 'blur' (did you mean motion-blur?); known:"),
    (["-d", "noise", "--set", 'kinds="camera"'], """kinds: expected a list, got 'camera' (a list of one: ["camera"])"""),
])
def test_a_bad_degradation_or_setting_is_refused_before_any_image(clean: Path, tmp_path: Path, args, message):
    result = restore("make-pairs", str(clean), str(tmp_path / "set"), *args)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "set").exists()


def test_what_a_pair_leaves_out_of_its_clean_image_is_said(tmp_path: Path):
    """Pairs are 8-bit PNGs of the colour (or grey) planes: an RGBA image lost its alpha
    plane and a 16-bit one its depth without a word. Each is noted (--json), once warned."""
    clean = tmp_path / "clean"
    clean.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(clean / "rgba.png"), np.dstack([rng.integers(0, 256, (24, 24, 3), dtype=np.uint8), np.full((24, 24), 128, np.uint8)]))
    cv2.imwrite(str(clean / "deep.png"), rng.integers(0, 65536, (24, 24), dtype=np.uint16))
    cv2.imwrite(str(clean / "plain.png"), rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    result = restore("make-pairs", str(clean), str(tmp_path / "set"), "-d", "noise", "--set", "sigma=10", "--json")
    assert result.returncode == 0, result.stderr
    notes = {Path(line["input"]).name: line.get("note") for line in map(json.loads, result.stdout.splitlines())}
    assert notes == {"deep.png": "the pair leaves out 16-bit samples (written 8-bit)", "plain.png": None,
                     "rgba.png": "the pair leaves out its alpha plane"}
    assert result.stderr.count("warning: pairs are 8-bit PNGs of the colour (or grey) planes: 2 input(s) lost") == 1
    assert cv2.imread(str(tmp_path / "set" / "target" / "rgba.png"), cv2.IMREAD_UNCHANGED).shape == (24, 24, 3)


def test_a_mixed_set_records_each_pairs_degradation_and_benchmark_scores_each_apart(clean: Path, tmp_path: Path):
    """A mixed set (one of rain, motion-blur, noise, haze per image) recorded no image's
    degradation, so its scores could not be told apart per degradation (the all-in-one
    model's per-task numbers). degradation.json's per_image, the --json lines and the
    pixels agree; benchmark adds a table and a by_degradation entry per result, each the
    mean of that degradation's per-image scores. A set made before per_image was recorded
    is finished by running the same command again, not refused as another set."""
    from restore_core.degradations.table import DEGRADATIONS, as_grey_camera, draw_one_of
    from restore_core.degradations.pairs import encode_png
    from restore_core.io.images import read_image

    out = tmp_path / "mixed"
    made = restore("make-pairs", str(clean), str(out), "-d", "mixed", "--seed", "5", "--json")
    assert made.returncode == 0, made.stderr
    lines = [json.loads(line) for line in made.stdout.splitlines()]
    record = json.loads((out / "degradation.json").read_text())
    labels = record["per_image"]
    assert labels == {Path(line["degraded"]).name: line["degradation"] for line in lines}
    for index, name in enumerate(record["images"]):
        rng = np.random.default_rng([5, index])
        assert draw_one_of(rng) == labels[Path(name).stem + ".png"]
        target = read_image(out / "target" / (Path(name).stem + ".png"))
        config_class, degrade = DEGRADATIONS[labels[Path(name).stem + ".png"]]
        degraded = degrade(target.rgb, rng, config_class())
        grey = target.layout.startswith("grey")
        expected = encode_png(as_grey_camera(degraded) if grey else degraded, grey)
        assert (out / "input" / (Path(name).stem + ".png")).read_bytes() == expected, name

    del record["per_image"]  # as a set made before it was recorded, and before mixed sets took settings of their own
    del record["settings"]["settings"]
    (out / "degradation.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "input" / "camera.png").unlink()
    again = restore("make-pairs", str(clean), str(out), "-d", "mixed", "--seed", "5", "--json")
    assert again.returncode == 0, again.stderr
    assert [json.loads(line)["status"] for line in again.stdout.splitlines()] == ["skipped", "ok", "skipped"]
    assert json.loads((out / "degradation.json").read_text())["per_image"] == labels

    scored = restore("benchmark", "--root", str(out), "--json", "--csv", str(tmp_path / "rows.csv"))
    assert scored.returncode == 0, scored.stderr
    report = json.loads(scored.stdout)
    assert report["task"] == "auto" and "by degradation" in scored.stderr
    rows = [line.split(",") for line in (tmp_path / "rows.csv").read_text().splitlines()[1:]]
    for result in report["results"]:
        groups = result["by_degradation"]
        assert sorted(groups) == sorted(set(labels.values()))
        for degradation, group in groups.items():
            mine = [float(row[2]) for row in rows if row[0] == result["label"] and labels[row[1]] == degradation]
            assert group["count"] == len(mine) and group["psnr_y"] == pytest.approx(np.mean(mine), abs=1e-3)
    # classified: how many of a degradation's images the all-in-one model's classifier named so, as restore auto finds them
    detected = restore("auto", str(out / "input"), str(tmp_path / "auto"), "--no-route", "--json")
    named = {Path(line["input"]).name: max(line["degradation"], key=line["degradation"].get)
             for line in map(json.loads, detected.stdout.splitlines())}
    by_model = {result["label"]: result["by_degradation"] for result in report["results"]}
    assert all("classified" not in group for group in by_model["input"].values())
    for degradation, group in by_model["adms"].items():
        assert group["classified"] == sum(named[name] == degradation for name, label in labels.items() if label == degradation)
    # --csv: each image's degradation and, for adms, what its classifier named it; no time where nothing ran
    assert all(row[7] == labels[row[1]] for row in rows)
    assert {row[1]: row[8] for row in rows if row[0] == "adms"} == named
    assert all(row[6] == "" and row[8] == "" for row in rows if row[0] == "input")


def test_a_mixed_sets_degradations_take_their_own_settings(clean: Path, tmp_path: Path):
    """--set 'settings={"noise": {"sigma": 50}}': the mixed set's noise pairs carry sigma
    50 (they could only take each degradation's defaults), recorded in degradation.json."""
    out = tmp_path / "mixed50"
    made = restore("make-pairs", str(clean), str(out), "-d", "mixed", "--set", 'degradations=["noise"]', "--set", 'settings={"noise": {"sigma": 50}}')
    assert made.returncode == 0, made.stderr
    assert json.loads((out / "degradation.json").read_text())["settings"]["settings"] == {"noise": {"sigma": 50}}
    dotted = restore("make-pairs", str(clean), str(tmp_path / "dotted"), "-d", "mixed", "--set", 'degradations=["noise"]', "--set", "settings.noise.sigma=50")
    assert dotted.returncode == 0, dotted.stderr  # the same set, field by field as restore train's --set
    assert (tmp_path / "dotted" / "degradation.json").read_text() == (out / "degradation.json").read_text()
    for name in ("astronaut.png", "camera.png", "coffee.png"):
        noisy, target = pixels(out / "input" / name), pixels(out / "target" / name)
        middle = (target > 60) & (target < 195)
        assert 46 < (noisy.astype(np.float64) - target)[middle].std() < 54, name


def test_a_noise_level_on_the_0_1_scale_is_warned_about(clean: Path, tmp_path: Path):
    """`--set sigma=0.1` (the 0-1 scale's 25.5) is a tenth of one 8-bit step here: the set
    is made as asked, with a warning saying what 0.1 is on this scale; 25 gets none."""
    result = restore("make-pairs", str(clean), str(tmp_path / "faint"), "-d", "noise", "--set", "sigma=0.1")
    assert result.returncode == 0 and "warning: noise sigma 0.1 is on the 0-255 scale" in result.stderr, result.stderr
    assert "0.1 on the 0-1 scale is sigma=25.5" in result.stderr
    plain = restore("make-pairs", str(clean), str(tmp_path / "plain"), "-d", "noise", "--set", "sigma=25")
    assert plain.returncode == 0 and "warning" not in plain.stderr, plain.stderr
