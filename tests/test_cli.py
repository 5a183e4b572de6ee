"""The restoration CLI end to end, as a user runs it (subprocesses)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import SAMPLES

from restore_core.metrics import psnr
from restore_core.presets import PRESETS, find_weights


def restore(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        timeout=300,
    )


@pytest.fixture
def folder(tmp_path: Path, rng) -> Path:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for name in ("a.png", "b.png", "sub/c.png"):
        cv2.imwrite(str(src / name), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    return src


def test_folder_writes_one_path_per_line_and_exit_0(folder, tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    result = restore("derain", str(folder), str(out), "--model", str(tiny_checkpoint))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(out / "a.png"), str(out / "b.png")]
    assert (out / "a.png").is_file() and not (out / "sub").exists()
    assert "2 restored, 0 failed" in result.stderr


def test_one_image_to_an_output_file(folder, tmp_path, tiny_checkpoint):
    """`restore derain a.png clear.jpg` writes that file (format from its extension), as
    `cp a b` would; an existing folder with an image name stays a folder."""
    out = tmp_path / "deep" / "clear.jpg"
    result = restore("derain", str(folder / "a.png"), str(out), "--model", str(tiny_checkpoint))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(out)]
    assert out.is_file() and out.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    assert cv2.imread(str(out)).shape == (24, 32, 3)
    again = restore("derain", str(folder / "a.png"), str(out), "--model", str(tiny_checkpoint))
    assert again.returncode == 2 and "already exist" in again.stderr
    suffixed = restore("derain", str(folder / "a.png"), str(tmp_path / "b.png"), "--suffix", "_x", "--model", str(tiny_checkpoint))
    assert suffixed.returncode == 2 and "output file itself" in suffixed.stderr and not (tmp_path / "b.png").exists()
    (tmp_path / "named.png").mkdir()
    into_folder = restore("derain", str(folder / "a.png"), str(tmp_path / "named.png"), "--model", str(tiny_checkpoint))
    assert into_folder.returncode == 0 and (tmp_path / "named.png" / "a.png").is_file()
    # A name that cannot be the output file is refused, not made a folder of that name.
    for name in ("a.qoi", "a.mp4"):
        refused = restore("derain", str(folder / "a.png"), str(tmp_path / name), "--model", str(tiny_checkpoint))
        assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1 and not (tmp_path / name).exists(), refused.stderr
    many = restore("derain", str(folder), str(tmp_path / "all.png"), "--model", str(tiny_checkpoint))
    assert many.returncode == 2 and "go into a folder" in many.stderr and not (tmp_path / "all.png").exists()


def test_files_restore_cannot_read_get_a_skipped_line_and_one_warning(tmp_path, tiny_checkpoint, rng):
    src = tmp_path / "camera"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    (src / "IMG_1.QOI").write_bytes(b"qoif" + bytes(64))  # QOI: a game's textures, not read here
    result = restore("derain", str(src), str(tmp_path / "out"), "--json", "--model", str(tiny_checkpoint))
    assert result.returncode == 0, result.stderr
    lines = {Path(row["input"]).name: row for row in map(json.loads, result.stdout.splitlines())}
    assert lines["a.png"]["status"] == "ok"
    assert lines["IMG_1.QOI"]["status"] == "skipped" and lines["IMG_1.QOI"]["reason"] == "QOI: a format restore cannot read"
    assert result.stderr.count("left out 1 file(s) in formats restore cannot read: 1 .qoi (QOI)") == 1
    assert "1 restored, 0 failed, 1 skipped" in result.stderr


def test_an_alpha_channel_dropped_by_jpeg_is_said(tmp_path, tiny_checkpoint, rng):
    """RGBA into JPEG loses the alpha (JPEG has none): each image's JSON line says so in
    "note", and stderr once for the run; an opaque image gets no note."""
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "clear.png"), rng.integers(0, 256, (24, 32, 4), dtype=np.uint8))
    cv2.imwrite(str(src / "solid.png"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    result = restore("derain", str(src), str(tmp_path / "out"), "--ext", "jpg", "--json", "--model", str(tiny_checkpoint))
    assert result.returncode == 0, result.stderr
    lines = {Path(row["input"]).name: row for row in map(json.loads, result.stdout.splitlines())}
    assert "alpha channel dropped" in lines["clear.png"]["note"] and "note" not in lines["solid.png"]
    assert result.stderr.count("alpha channel dropped") == 1 and f"{src / 'clear.png'}: alpha channel dropped" in result.stderr


def test_jpeg_and_netpbm_files_under_their_other_names_are_restored_in_their_own_format(tmp_path, tiny_checkpoint, rng):
    """A folder of a browser's photo.jfif, a 16-bit scan.pgm and a fax.pbm: each restored
    (none left out), the JPEG as a JPEG of that name that --quality applies to, the PGM as
    a 16-bit grey PGM, the one-bit bitmap as a PNG."""
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(src / "photo.jfif", format="JPEG")
    assert cv2.imwrite(str(src / "scan.pgm"), rng.integers(0, 65536, (24, 32), dtype=np.uint16))
    Image.fromarray(rng.integers(0, 2, (24, 32), dtype=np.uint8) * 255).convert("1").save(src / "fax.pbm")
    out = tmp_path / "out"
    result = restore("derain", str(src), str(out), "--quality", "80", "--model", str(tiny_checkpoint))
    assert result.returncode == 0 and "3 restored, 0 failed" in result.stderr, result.stderr
    assert "warning" not in result.stderr, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["fax.png", "photo.jfif", "scan.pgm"]
    assert (out / "photo.jfif").read_bytes()[:3] == b"\xff\xd8\xff"
    assert (out / "scan.pgm").read_bytes()[:2] == b"P5"
    assert cv2.imread(str(out / "scan.pgm"), cv2.IMREAD_UNCHANGED).dtype == np.uint16


def test_recursive_mirrors_sub_folders_and_suffix_ext(folder, tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    result = restore("derain", str(folder), str(out), "-r", "--suffix", "_x", "--ext", "jpg", "--model", str(tiny_checkpoint))
    assert result.returncode == 0, result.stderr
    assert (out / "sub" / "c_x.jpg").is_file() and (out / "a_x.jpg").is_file()


def test_dry_run_lists_the_plan_and_writes_nothing(folder, tmp_path, tiny_checkpoint):
    """--dry-run prints the outputs the run would write (shard by shard they add up to the
    whole batch), writes nothing, and exits as the run would: 2 on existing outputs, 1
    when inputs would be refused; a bad model is caught too."""
    out = tmp_path / "out"
    shards = [restore("derain", str(folder), str(out), "-r", "--dry-run", "--shard", f"{i}/2", "--model", str(tiny_checkpoint)) for i in (0, 1)]
    assert all(r.returncode == 0 for r in shards), shards[0].stderr
    assert "dry run: " in shards[0].stderr and "nothing written" in shards[0].stderr
    assert not out.exists()
    planned = sorted(line for r in shards for line in r.stdout.split())
    real = restore("derain", str(folder), str(out), "-r", "--model", str(tiny_checkpoint))
    assert real.returncode == 0 and planned == sorted(real.stdout.split()) and len(planned) == 3

    again = restore("derain", str(folder), str(out), "-r", "-n", "--model", str(tiny_checkpoint))
    assert again.returncode == 2 and "already exist" in again.stderr
    rows = [json.loads(line) for line in restore("derain", str(folder), str(out), "-r", "-n", "--skip-existing", "--json").stdout.splitlines()]
    assert [row["status"] for row in rows] == ["skipped"] * 3
    (folder / "d.png").write_bytes((folder / "a.png").read_bytes())
    before = sorted(p.name for p in out.rglob("*"))
    planned_json = restore("derain", str(folder), str(out), "-r", "-n", "--skip-existing", "--json", "--model", str(tiny_checkpoint))
    assert [json.loads(line)["status"] for line in planned_json.stdout.splitlines()] == ["skipped"] * 3 + ["planned"]
    refused = restore("derain", str(folder), str(folder), "-n", "--model", str(tiny_checkpoint))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr  # one line, not one per image
    assert f"output(s) would replace inputs of this run: {folder / 'a.png'}" in refused.stderr and "--suffix" in refused.stderr
    assert restore("derain", str(folder), str(out), "-r", "-n", "--overwrite", "--model", "no-such-model").returncode == 2
    assert sorted(p.name for p in out.rglob("*")) == before


def test_small_tiles_get_a_warning(folder, tmp_path, tiny_checkpoint):
    small = restore("derain", str(folder), str(tmp_path / "out"), "-n", "--tile", "128", "--tile-overlap", "16", "--model", str(tiny_checkpoint))
    assert small.returncode == 0 and "--tile 128: tiles under 256 pixels" in small.stderr
    enough = restore("derain", str(folder), str(tmp_path / "out"), "-n", "--tile", "256", "--model", str(tiny_checkpoint))
    assert enough.returncode == 0 and "tiles under" not in enough.stderr
    # an overlap of nearly the whole tile (a typo) multiplies the work: said, with the factor
    costly = restore("derain", str(folder), str(tmp_path / "out"), "-n", "--tile", "256", "--tile-overlap", "240", "--model", str(tiny_checkpoint))
    assert costly.returncode == 0 and "--tile-overlap 240 of --tile 256: each pixel is restored about 256 times" in costly.stderr
    half = restore("derain", str(folder), str(tmp_path / "out"), "-n", "--tile", "256", "--tile-overlap", "128", "--model", str(tiny_checkpoint))
    assert half.returncode == 0 and "each pixel" not in half.stderr


def test_writing_into_the_input_folder_twice_leaves_earlier_outputs_alone(folder, tiny_checkpoint):
    """With --suffix into the input folder, a second run does not restore the first run's
    outputs again (no a_x_x.png), it says which files it left out; and an output that
    would replace another input of the run is refused, even with --overwrite."""
    first = restore("derain", str(folder), str(folder), "--suffix", "_x", "--model", str(tiny_checkpoint))
    assert first.returncode == 0, first.stderr
    again = restore("derain", str(folder), str(folder), "--suffix", "_x", "--overwrite", "--model", str(tiny_checkpoint))
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in folder.glob("*.png")) == ["a.png", "a_x.png", "b.png", "b_x.png"]
    assert "left out 2 input(s) that are this run's outputs of other inputs" in again.stderr
    assert again.stdout.split() == [str(folder / "a_x.png"), str(folder / "b_x.png")]
    assert "2 restored, 0 failed, 2 skipped" in again.stderr
    as_json = restore("derain", str(folder), str(folder), "--suffix", "_x", "--skip-existing", "--json", "--model", str(tiny_checkpoint))
    rows = sorted((Path(row["input"]).name, row["status"], row.get("reason")) for row in map(json.loads, as_json.stdout.splitlines()))
    assert rows == [("a.png", "skipped", "output exists"), ("a_x.png", "skipped", "an output of this run"),
                    ("b.png", "skipped", "output exists"), ("b_x.png", "skipped", "an output of this run")]

    second_picture = folder / "a.jpg"
    cv2.imwrite(str(second_picture), np.full((24, 32, 3), 90, dtype=np.uint8))
    before = (folder / "a.png").read_bytes()
    clash = restore("derain", str(folder), str(folder), "--ext", "png", "--overwrite", "--model", str(tiny_checkpoint))
    assert clash.returncode == 2 and not clash.stdout
    assert f"would replace inputs of this run: {folder / 'a.png'}" in clash.stderr  # a.jpg's output, and a.png's own
    assert (folder / "a.png").read_bytes() == before


def test_an_output_folder_inside_the_input_folder_is_not_read_as_input(folder, tiny_checkpoint):
    """`restore derain in in/restored -r` twice (or with a glob over in/): the second run
    finds only the 3 originals, all restored already, not in/restored/restored/..."""
    out = folder / "restored"
    for spec, flags in ((str(folder), ("-r",)), (str(folder), ("-r", "--skip-existing")), (f"{folder}/**/*.png", ("--skip-existing",))):
        result = restore("derain", spec, str(out), *flags, "--model", str(tiny_checkpoint))
        assert result.returncode == 0, result.stderr
    assert "0 restored, 0 failed, 3 skipped" in result.stderr
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png")) == [
        "a.png", "b.png", "restored/a.png", "restored/b.png", "restored/sub/c.png", "sub/c.png"]


def test_quality_sets_the_jpeg_encoder_quality(tmp_path, tiny_checkpoint):
    """--quality reaches the JPEG encoder: a lower quality writes a smaller file further from
    the lossless PNG of the same restoration; out of 1-100 it is a usage error. The shipped
    model restores: an untrained network's noisy output makes every JPEG quality poor."""
    source = SAMPLES / "input" / "motorcycle-detail.png"
    written = {}
    for ext, quality in (("png", None), ("jpg", None), ("jpg", "30")):
        out = tmp_path / f"{ext}{quality}"
        result = restore("derain", str(source), str(out), "-q", "--ext", ext, "--threads", "1", *(("--quality", quality) if quality else ()))
        assert result.returncode == 0, result.stderr
        written[ext, quality] = out / f"motorcycle-detail.{ext}"
    lossless = cv2.imread(str(written["png", None]))
    default, low = written["jpg", None], written["jpg", "30"]
    assert low.stat().st_size < 0.7 * default.stat().st_size
    assert psnr(cv2.imread(str(low)), lossless) < psnr(cv2.imread(str(default)), lossless) - 2
    bad = restore("derain", str(source), str(tmp_path / "bad"), "--quality", "0", "--model", str(tiny_checkpoint))
    assert bad.returncode == 2 and "--quality must be between 1 and 100" in bad.stderr and not (tmp_path / "bad").exists()


def test_corrupt_file_in_batch_reports_it_and_continues(folder, tmp_path, tiny_checkpoint):
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    out = tmp_path / "out"
    result = restore("derain", str(folder), str(out), "--json", "--model", str(tiny_checkpoint))
    assert result.returncode == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok", "error"]
    bad = rows[2]
    assert bad["input"].endswith("broken.png") and bad["output"] is None and "cannot decode" in bad["error"]
    assert not (out / "broken.png").exists()
    assert f"{folder / 'broken.png'}: cannot decode" in result.stderr
    assert [line for line in result.stderr.splitlines() if "broken.png" in line or "IHDR" in line] == [
        f"error: {folder / 'broken.png'}: cannot decode image (corrupt, truncated or unsupported format)"]  # no OpenCV log line beside it
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left



def test_paths_with_brackets_are_named_verbatim(tmp_path, rng, tiny_checkpoint):
    """Rich markup must not eat '[bold]' from a file name nor crash on '[/b]' in a path."""
    src = tmp_path / "shots[" / "b]"
    src.mkdir(parents=True)
    cv2.imwrite(str(src / "good.png"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    (src / "pic[bold].png").write_bytes(b"not an image")
    out = tmp_path / "out"
    result = restore("derain", str(src), str(out), "--model", str(tiny_checkpoint))
    assert result.returncode == 1, result.stderr
    assert f"error: {src / 'pic[bold].png'}: cannot decode" in result.stderr
    assert "Traceback" not in result.stderr
    assert (out / "good.png").is_file()

def test_stdin_paths_and_json_fields(folder, tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    paths = f"{folder / 'a.png'}\n{folder / 'sub' / 'c.png'}\n"
    result = restore("derain", "-", str(out), "--json", "--model", str(tiny_checkpoint), stdin=paths)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["output"] for r in rows} == {str(out / "a.png"), str(out / "c.png")}
    assert set(rows[0]) >= {"input", "output", "seconds", "status", "error"}


def test_nul_separated_stdin_paths_as_find_print0_gives_them(folder, tmp_path, tiny_checkpoint):
    odd = folder / "two\nlines.png"
    odd.write_bytes((folder / "a.png").read_bytes())
    result = subprocess.run([sys.executable, "-m", "cli.main", "derain", "-", str(tmp_path / "out"), "--json", "--model", str(tiny_checkpoint)],
                            input=f"{folder / 'a.png'}\0{odd}\0".encode(), capture_output=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(json.loads(line)["output"] for line in result.stdout.decode().splitlines()) == [
        str(tmp_path / "out" / "a.png"), str(tmp_path / "out" / "two\nlines.png")]


def test_closed_standard_streams_are_a_clear_error_or_nothing_lost(folder, tmp_path, tiny_checkpoint):
    """`restore derain - out/ <&-` (stdin closed, not empty) ended in an AttributeError
    traceback; a closed stdout (`>&-`) left fd 1 free for the next opened file."""
    def run(redirect: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", f'exec "$@" {redirect}', "_", sys.executable, "-m", "cli.main", "derain", *args,
                               "--model", str(tiny_checkpoint)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})

    no_stdin = run("<&-", "-", str(tmp_path / "out"))
    assert no_stdin.returncode == 2 and no_stdin.stderr.strip() == "error: no paths on stdin", no_stdin.stderr
    no_stdout = run(">&-", str(folder), str(tmp_path / "out"))
    assert no_stdout.returncode == 0 and "2 restored" in no_stdout.stderr, no_stdout.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    assert all(cv2.imread(str(p)) is not None for p in (tmp_path / "out").iterdir())


def test_ctrl_c_while_the_command_line_is_still_importing_is_quiet():
    """Ctrl-C in the first 0.2 s of `restore ...` (while cli.main was still importing)
    printed a traceback through the import machinery; the console script's entry now
    exits 130 without a word, as a later Ctrl-C does. Simulated: the import of cli.main
    is interrupted."""
    code = ("import sys, importlib.abc\n"
            "class Interrupted(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'cli.main':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Interrupted())\n"
            "from cli.launch import main\n"
            "main()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert (result.returncode, result.stderr) == (130, "")
    import tomllib

    scripts = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"restore": "cli.launch:main"}


def test_existing_outputs_are_not_overwritten_by_default(folder, tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"keep me")
    result = restore("derain", str(folder), str(out), "--model", str(tiny_checkpoint))
    assert result.returncode == 2
    assert "already exist" in result.stderr and "a.png" in result.stderr
    assert (out / "a.png").read_bytes() == b"keep me"
    skipped = restore("derain", str(folder), str(out), "--skip-existing", "--json", "--model", str(tiny_checkpoint))
    assert skipped.returncode == 0
    assert [(row["status"], row.get("reason")) for row in map(json.loads, skipped.stdout.splitlines())] == [("skipped", "output exists"), ("ok", None)]
    assert (out / "a.png").read_bytes() == b"keep me"
    forced = restore("derain", str(folder), str(out), "--overwrite", "--model", str(tiny_checkpoint))
    assert forced.returncode == 0 and (out / "a.png").read_bytes() != b"keep me"


def test_a_run_clears_the_temporary_files_a_killed_run_left_for_its_outputs(folder, tmp_path, tiny_checkpoint):
    import time

    out = tmp_path / "out"
    out.mkdir()
    left = out / ".a.png.k1ll3d_9.part"  # as mkstemp names a write to a.png
    left.write_bytes(b"half an image")
    os.utime(left, (time.time() - 7200, time.time() - 7200))
    dry = restore("derain", str(folder), str(out), "--dry-run", "--model", str(tiny_checkpoint))
    assert dry.returncode == 0 and left.exists()  # a dry run changes nothing
    result = restore("derain", str(folder), str(out), "--model", str(tiny_checkpoint))
    assert result.returncode == 0, result.stderr
    assert f"note: removed 1 temporary file(s) that an interrupted run left: {left}" in result.stderr
    assert not left.exists() and (out / "a.png").is_file()


# The CLI with torch made unimportable: what must not wait for torch's import (1.5 s).
WITHOUT_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch imported")
sys.meta_path.insert(0, NoTorch())
sys.argv = ["restore", *sys.argv[1:]]
from cli.main import main
main()
"""


def test_mistakes_and_finished_batches_are_answered_without_torch(folder, tmp_path, tiny_checkpoint):
    """A usage error (a missing input, a bad option, outputs already there, a dataset
    folder that is not one) and a re-run whose every output exists never import torch:
    answered in about 0.4 s instead of 2 s (a sharded job's retries, a mistyped path)."""
    def restore_without_torch(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *args], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})

    out = tmp_path / "out"
    assert restore("derain", str(folder), str(out), "--model", str(tiny_checkpoint), "-q").returncode == 0
    for args, words in (((str(tmp_path / "nope"), str(out)), "no such file or folder"),
                        ((str(folder), str(out)), "2 output(s) already exist"),
                        ((str(folder), str(out), "--threads", "100000"), "--threads must be between 0"),
                        ((str(folder), str(out), "--tile", "-1"), "error: --tile must be >= 0 (0 = whole images), got -1"),
                        ((str(folder), str(out), "--tile-overlap", "-2"), "error: --tile-overlap must be >= 0, got -2"),
                        ((str(folder), str(out), "--batch-size", "0"), "error: --batch-size must be >= 1, got 0")):
        refused = restore_without_torch("derain", *args, "--model", str(tiny_checkpoint))
        assert refused.returncode == 2 and words in refused.stderr and "torch imported" not in refused.stderr, (args, refused.stderr)
    finished = restore_without_torch("derain", str(folder), str(out), "--model", str(tiny_checkpoint), "--skip-existing")
    assert finished.returncode == 0 and "0 restored, 0 failed, 2 skipped" in finished.stderr, finished.stderr
    for args, words in ((("--root", str(tmp_path / "nope")), "no such folder"), (("--threads", "100000"), "--threads must be between 0"),
                        (("--root", str(folder), "--dataset", "rain100h"), "layout does not match")):
        refused = restore_without_torch("benchmark", *args)
        assert refused.returncode == 2 and words in refused.stderr and "torch imported" not in refused.stderr, (args, refused.stderr)
    # make-pairs is NumPy work: a whole set is made without torch (noise_level.py holds the torch half of noise).
    made = restore_without_torch("make-pairs", str(folder), str(tmp_path / "pairs"), "-d", "mixed")
    assert made.returncode == 0 and "torch imported" not in made.stderr and len(list((tmp_path / "pairs" / "input").iterdir())) == 2, made.stderr
    for args, words in ((("--recipe", "taylor-deraim"), "did you mean taylor-derain?"), (("--recipe", "taylor-derain", "--set", "sed=1"), "did you mean 'seed'?"),
                        (("--out", str(tmp_path / "no-run"), "--resume"), "no run to resume there")):
        refused = restore_without_torch("train", *args)
        assert refused.returncode == 2 and words in refused.stderr and "torch imported" not in refused.stderr, (args, refused.stderr)
    for args, words, code in (((str(tmp_path / "nope.pth"), str(tmp_path / "x.safetensors"), "-p", "unet-s"), "nope.pth: no such file", 1),
                              ((str(tiny_checkpoint), str(tmp_path / "x.bin"), "-p", "unet-s"), "the output must be a .safetensors file", 2),
                              ((str(tiny_checkpoint), str(tmp_path / "x.safetensors"), "-p", "unet-z"), "unknown preset 'unet-z'", 2)):
        refused = restore_without_torch("convert", *args)
        assert refused.returncode == code and words in refused.stderr and "torch imported" not in refused.stderr, (args, refused.stderr)
    for args, words in (((str(tmp_path / "a.safetensors"), str(tiny_checkpoint), str(folder)), "--baseline " + str(tmp_path / "a.safetensors") + ": no such checkpoint file"),
                        ((str(tiny_checkpoint), str(tiny_checkpoint), str(tmp_path / "nope")), "--data " + str(tmp_path / "nope") + ": no such folder")):
        refused = restore_without_torch("attribute-filters", "--baseline", args[0], "--target", args[1], "--data", args[2])
        assert refused.returncode == 2 and words in refused.stderr and "torch imported" not in refused.stderr, (args, refused.stderr)
    # and where torch is needed, it is imported (the check above cannot pass by failing early)
    needed = restore_without_torch("derain", str(folder / "a.png"), str(tmp_path / "again.png"), "--model", str(tiny_checkpoint))
    assert needed.returncode != 0 and "torch imported" in needed.stderr


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_paths_read_from_a_terminal_are_asked_for(folder, tmp_path, tiny_checkpoint):
    """IN '-' with nothing piped in (stdin a terminal): a line says what the command
    waits for, then the typed paths are restored (it seemed to hang, silently)."""
    leader, follower = os.openpty()
    run = subprocess.Popen([sys.executable, "-m", "cli.main", "derain", "-", str(tmp_path / "out"), "--model", str(tiny_checkpoint)],
                           stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    os.close(follower)
    os.write(leader, f"{folder / 'a.png'}\n".encode() + b"\x04")  # a line typed, then Ctrl-D
    stdout, stderr = run.communicate(timeout=300)
    os.close(leader)
    assert run.returncode == 0, stderr
    assert stderr.startswith("reading image paths from the terminal, one a line (IN is '-'); Ctrl-D ends the list\n"), stderr
    assert stdout.split() == [str(tmp_path / "out" / "a.png")]


def test_an_option_of_another_command_is_named_as_such(tmp_path):
    """`restore denoise --iterations 2` was "No such option: --iterations (Possible
    options: --duration)": Click's guess among denoise's own options. An option another
    command has is named as that command's; a typo of this command's keeps Click's guess."""
    def refusal(*args: str) -> str:
        result = restore(*args, "-n")
        assert result.returncode == 2 and not (tmp_path / "out").exists(), result.stderr
        return " ".join(line.strip("│ ╭╮╰╯─") for line in result.stderr.splitlines() if line.strip("│ ╭╮╰╯─")).replace("  ", " ")

    where = (str(SAMPLES / "input"), str(tmp_path / "out"))
    assert "No such option: --iterations (an option of restore deblur, restore benchmark, restore export)" in refusal("denoise", *where, "--iterations", "2")
    assert "No such option: --darken-only (an option of restore derain, restore benchmark, restore export)" in refusal("dehaze", *where, "--darken-only")
    assert "No such option: --model-sigma (an option of restore benchmark)" in refusal("denoise", *where, "--model-sigma", "25")
    assert "No such option: --tiles (Possible options:" in refusal("derain", *where, "--tiles", "3")  # a typo: Click's guess
    assert "No such option: --bogus" in refusal("derain", *where, "--bogus")


def test_usage_errors_exit_2(tmp_path, tiny_checkpoint):
    missing = restore("derain", str(tmp_path / "nope"), str(tmp_path / "out"), "--model", str(tiny_checkpoint))
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    bad_model = restore("derain", str(SAMPLES / "input"), str(tmp_path / "out"), "--model", "no-such-model")
    assert bad_model.returncode == 2 and "unknown model" in bad_model.stderr
    # Each a one-line error, no traceback (--threads 100000 crashed torch; --device tpu and a
    # --suffix with a slash were tracebacks or wrote outside OUT), and nothing written.
    for flags, words in ((("--threads", "100000"), "--threads must be between 0"), (("--device", "tpu"), "unknown device 'tpu'"),
                         (("--suffix", "../x"), "cannot hold a path separator"), (("--max-pixels", "0"), "--max-pixels must be >= 1")):
        result = restore("derain", str(SAMPLES / "input"), str(tmp_path / "refused"), "--model", str(tiny_checkpoint), *flags)
        assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr, (flags, result.stderr)
        assert not (tmp_path / "refused").exists() and not (tmp_path / "x.png").exists()
    for command in (("benchmark", "--limit", "1"), ("train", "--recipe", "taylor-derain", "--builtin-photographs", "--out", str(tmp_path / "run"))):
        result = restore(*command, "--threads", "100000")
        assert result.returncode == 2 and "--threads must be between 0" in result.stderr, (command, result.stderr)
    for flags, words in ((("--speed", "--count", "0"), "--count must be >= 1"), (("--speed", "--sizes", "0x0"), "must be >= 1"),
                         (("--limit", "-1"), "--limit must be >= 0"), (("--crop-border", "1000"), "0x0 once a 1000-pixel border is cropped; SSIM needs"),
                         (("--tile", "-5"), "--tile must be >= 0 (0 = whole images), got -5"),
                         (("--model-sigma", "25"), "--model-sigma does not apply to this model")):
        result = restore("benchmark", "-m", str(tiny_checkpoint), *flags)
        assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr, (flags, result.stderr)
        assert "Warning" not in result.stderr, (flags, result.stderr)  # NumPy's, from a PSNR of nothing
    for flags, words in ((("--set", "model.order=-1"), "order must be >= 0"), (("--workers", "500"), "more batch-drawing processes"),
                         (("--pool", "ram"), "--pool 'ram': expected one of auto, memory, disk"), (("--exclude-like", str(tmp_path / "nope")), "no such folder")):
        result = restore("train", "--recipe", "taylor-derain", "--builtin-photographs", "--steps", "1", "--out", str(tmp_path / "run"), *flags)
        assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr, (flags, result.stderr)
    (tmp_path / "a-file").write_text("")
    under_a_file = restore("train", "--recipe", "taylor-derain", "--builtin-photographs", "--steps", "1", "--out", str(tmp_path / "a-file" / "run"))
    assert under_a_file.returncode == 2 and "a folder on this path is a file" in under_a_file.stderr, under_a_file.stderr
    # the restore commands alike, before any image is restored (each was refused on write: "Not a directory", "File exists")
    for out in (tmp_path / "a-file" / "out", tmp_path / "a-file" / "deep" / "x.png"):
        source = SAMPLES / "input" / "camera.png" if out.suffix else SAMPLES / "input"
        refused = restore("derain", str(source), str(out), "--model", str(tiny_checkpoint))
        assert refused.returncode == 2 and refused.stderr.strip() == f"error: {out}: {tmp_path / 'a-file'} is a file, so no folder can be made there"
    for flag, path in (("--save-images", tmp_path / "a-file" / "images"), ("--csv", tmp_path / "a-file" / "rows.csv")):
        refused = restore("benchmark", "-m", str(tiny_checkpoint), flag, str(path))  # before scoring, not after
        assert refused.returncode == 2 and f"{flag} {path}: {tmp_path / 'a-file'} is a file" in refused.stderr, refused.stderr
    import torch

    torch.save({"weight": torch.zeros(1)}, tmp_path / "x.pth")
    unknown = restore("convert", str(tmp_path / "x.pth"), str(tmp_path / "x.safetensors"), "--architecture", "nope", "--config", "{}")
    # A KeyError traceback once, then exit 1 blaming x.pth; a usage error naming the option now, before the file is read.
    assert unknown.returncode == 2 and "error: --architecture/--config: unknown architecture 'nope'" in unknown.stderr, unknown.stderr


def test_print_recipe_writes_a_recipe_file_that_loads_back_unchanged(tmp_path):
    """--print-recipe shows every field after the options (no data needed) and its output
    is a recipe file: passed back as --recipe it prints the same, for both recipe kinds."""
    for name, flags in (("infoflow-denoise", ("--set", "model.refine_more=[48]", "--steps", "10", "--set", "pretrain_steps=2", "--lr", "3e-4")), ("adms", ("--set", "base.width=8"))):
        printed = restore("train", "--recipe", name, *flags, "--print-recipe")
        assert printed.returncode == 0, printed.stderr
        fields = json.loads(printed.stdout)
        saved = tmp_path / f"{name}.json"
        saved.write_text(printed.stdout)
        again = restore("train", "--recipe", str(saved), "--print-recipe")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == fields
    assert fields["base"]["width"] == 8
    denoise = json.loads((tmp_path / "infoflow-denoise.json").read_text())
    assert denoise["model"]["refine_more"] == [48] and denoise["steps"] == 10 and denoise["lr"] == 3e-4
    # What the recipe's code would refuse is refused here too, before any data: the model's
    # config, the discriminator's, the degradation (which training met only after reading every image).
    for flags, words in ((("--set", "model.bogus=1"), "recipe taylor-derain: model: taylor: unknown key(s) bogus"),
                         (("--set", "degradation=snow"), "recipe taylor-derain: unknown degradation 'snow'"),
                         (("--set", "degradation_options.layers=[3, 1]"), "recipe taylor-derain: degradation_options (rain): layers is a (low, high) range"),
                         (("--set", "adversarial=true", "--set", "discriminator.norm=3"), "recipe taylor-derain: discriminator: patchgan.norm")):
        refused = restore("train", "--recipe", "taylor-derain", *flags, "--print-recipe")
        assert refused.returncode == 2 and words in refused.stderr and not refused.stdout, (flags, refused.stderr)
    # A run no longer than its reconstruction pre-training would never see a degraded image
    # (infoflow-denoise pre-trains 100 steps; --steps 30 trained an autoencoder, silently).
    short = restore("train", "--recipe", "infoflow-denoise", "--steps", "30", "--print-recipe")
    assert short.returncode == 2 and "first 100 steps (pretrain_steps) reconstruct clean images" in short.stderr, short.stderr
    assert "--set pretrain_steps=N with N < 30" in short.stderr and not short.stdout


def test_every_command_help_has_an_example():
    for command in ("derain", "train", "models"):
        result = restore(command, "--help")
        assert result.returncode == 0 and "Example" in result.stdout, command


def _shipped_model() -> Path:
    path = find_weights(PRESETS["taylor-derain"].weights)
    if path is None:
        pytest.fail("shipped derain weights are missing from weights/")
    return path


def test_shipped_model_improves_the_bundled_samples(tmp_path):
    _shipped_model()
    out = tmp_path / "out"
    result = restore("derain", str(SAMPLES / "input"), str(out))
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (SAMPLES / "input").glob("*.png"))
    assert len(names) >= 3
    for name in names:
        clean = cv2.imread(str(SAMPLES / "target" / name)).astype(np.float64)
        rainy = cv2.imread(str(SAMPLES / "input" / name)).astype(np.float64)
        restored = cv2.imread(str(out / name)).astype(np.float64)
        gain = psnr(restored, clean) - psnr(rainy, clean)
        assert gain > 3.0, f"{name}: only {gain:.2f} dB better than the input"


def test_models_lists_the_shipped_weights():
    _shipped_model()
    result = restore("models", "--json")
    rows = json.loads(result.stdout)
    row = next(r for r in rows if r["name"] == "taylor-derain")
    assert row["task"] == "derain" and row["parameters"] > 0 and row["metrics"]
    # What a script needs to pin and run it: the file's hash, its padding multiple, its card.
    from restore_core.checkpoint import file_sha256

    assert row["sha256"] == file_sha256(row["path"]) and row["size_multiple"] == 16
    assert Path(row["card"]).read_text().startswith("# Model card: `taylor-derain`")


def test_models_describes_one_model_whole(tmp_path, tiny_checkpoint):
    """`restore models MODEL`: a preset or a file, with its config, recipe and metrics (what
    a checkpoint from a colleague or an old run is, without reading its header by hand)."""
    _shipped_model()
    shipped = restore("models", "taylor-derain", "--json")
    assert shipped.returncode == 0, shipped.stderr
    details = json.loads(shipped.stdout)
    assert details["architecture"] == "taylor" and details["size_multiple"] == 16 and details["config"]["order"] >= 1
    assert details["recipe"]["name"] == "taylor-derain" and details["metrics"]["SemiIRR_val20/psnr_y"] > 20
    assert details["card"].endswith("taylor-derain.md")
    from restore_core.models.complexity import architecture_macs

    # the loaded file's count is its architecture's (tests/test_complexity.py checks that one by hand)
    assert details["macs"] == architecture_macs("taylor", details["config"]) and details["macs_input"] == [256, 256]
    # the CPU memory of a pixel: what the engine measures before it tiles (engine.memory)
    from restore_core.engine.memory import PIPELINE_BYTES_PER_PIXEL
    from restore_core.models.activation_memory import model_activation_bytes_per_pixel
    from restore_core.presets import load_for_task

    import torch

    model = load_for_task("taylor-derain", None).model.eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = model_activation_bytes_per_pixel(model, 16) + PIPELINE_BYTES_PER_PIXEL
    assert details["cpu_memory_bytes_per_pixel"] == round(expected) and 300 < expected < 600
    text = restore("models", str(tiny_checkpoint))
    assert text.returncode == 0, text.stderr
    assert "unet, " in text.stdout and "parameters" in text.stdout and str(tiny_checkpoint) in text.stdout
    assert "none recorded" in text.stdout  # no recipe in this file: said, not left blank
    assert "bytes a pixel on the CPU (fp32)" in text.stdout and "GiB for a 12-megapixel photograph untiled" in text.stdout
    from safetensors.torch import load_file

    torch.save(load_file(str(tiny_checkpoint)), tmp_path / "net.pth")
    from restore_core.checkpoint import read_metadata

    meta = read_metadata(tiny_checkpoint)
    converted = restore("convert", str(tmp_path / "net.pth"), str(tmp_path / "net.safetensors"), "--architecture", meta["architecture"],
                        "--config", json.dumps(meta["config"]), "--task", "derain")
    assert converted.returncode == 0, converted.stderr
    imported = restore("models", str(tmp_path / "net.safetensors"))  # said "?: None steps of ? patches of ? pixels, lr ?"
    assert imported.returncode == 0 and "none: imported by restore convert from net.pth (sha256 " in imported.stdout, imported.stdout
    assert "None steps" not in imported.stdout
    adms = restore("models", "adms")  # its config lists every kept filter: cut, and said so
    assert adms.returncode == 0 and "characters in all" in adms.stdout, adms.stderr  # (the table may wrap the rest)
    for args, words in ((("no-such-model",), "unknown model"), (("taylor-derain", "--presets"), "name no model with it"),
                        ((str(tmp_path),), "a folder, not a checkpoint file")):
        refused = restore("models", *args)
        assert refused.returncode == 2 and words in refused.stderr, (args, refused.stderr)


def test_models_headline_shows_grey_set_psnr_and_no_other_metrics():
    from cli.models_cmd import _headline

    line = _headline({"BSD68_sigma25/psnr": 27.515, "McMaster/psnr_rgb": 28.178, "McMaster/ssim_rgb": 0.7, "step": 2000})
    assert line == "BSD68_sigma25 27.52, McMaster 28.18 RGB"
    # one item a set, Y first (each set's name was written twice, RGB before Y)
    assert _headline({"Rain/all/psnr_rgb": 26.7, "Rain/all/psnr_y": 28.16, "Rain/all/ssim_y": 0.9}) == "Rain/all 28.16 Y / 26.70 RGB"


def test_layouts_survive_the_cli(tmp_path, rng, tiny_checkpoint):
    src = tmp_path / "in"
    src.mkdir()
    alpha = rng.integers(0, 256, (20, 28), dtype=np.uint8)
    rgba = np.dstack([rng.integers(0, 256, (20, 28, 3), dtype=np.uint8), alpha])
    cv2.imwrite(str(src / "rgba.png"), rgba)
    cv2.imwrite(str(src / "grey16.png"), rng.integers(0, 65536, (20, 28), dtype=np.uint16))
    cv2.imwrite(str(src / "grey16.tif"), rng.integers(0, 65536, (20, 28), dtype=np.uint16))
    out = tmp_path / "out"
    result = restore("derain", str(src), str(out), "--model", str(tiny_checkpoint))
    assert result.returncode == 0, result.stderr
    back = cv2.imread(str(out / "rgba.png"), cv2.IMREAD_UNCHANGED)
    assert back.shape == (20, 28, 4) and np.array_equal(back[..., 3], alpha)
    for name in ("grey16.png", "grey16.tif"):
        grey = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert grey.shape == (20, 28) and grey.dtype == np.uint16, name


def test_tiled_result_is_within_0_1_db_of_untiled():
    from restore_core.engine.tiling import default_overlap

    assert (default_overlap(256), default_overlap(128), default_overlap(1024)) == (96, 64, 96)
    model = _shipped_model()
    from restore_core.checkpoint import load_checkpoint
    from restore_core.engine.runner import Restorer
    from restore_core.io.images import read_image
    import torch

    descriptor = load_checkpoint(model)
    for name in ("motorcycle.png", "motorcycle-detail.png", "camera.png"):
        image = read_image(SAMPLES / "input" / name).rgb
        clean = np.round(read_image(SAMPLES / "target" / name).rgb * 255)
        whole = np.round(Restorer(descriptor, torch.device("cpu")).restore_array(image) * 255)
        # 256-pixel tiles with the default overlap (96 pixels): 2 x 2 tiles on these images
        tiled = np.round(Restorer(descriptor, torch.device("cpu"), tile=256).restore_array(image) * 255)
        assert abs(psnr(whole, clean) - psnr(tiled, clean)) < 0.1, name
        assert psnr(tiled, whole) > 35, name  # and no visible seams


def test_shards_partition_the_input_without_overlap(folder, tmp_path, tiny_checkpoint):
    outputs = []
    for index in range(2):
        result = restore("derain", str(folder), str(tmp_path / "out"), "-r", "--shard", f"{index}/2", "--model", str(tiny_checkpoint))
        assert result.returncode == 0, result.stderr
        outputs.append(set(result.stdout.split()))
    assert not outputs[0] & outputs[1]
    assert len(outputs[0] | outputs[1]) == 3
    bad = restore("derain", str(folder), str(tmp_path / "x"), "--shard", "2/2", "--model", str(tiny_checkpoint))
    assert bad.returncode == 2 and "shards are numbered from 0, so I must be 0 to 1 (a 1-based array index: --shard $((I - 1))/2)" in bad.stderr
    # --temporal-strength without --temporal changed nothing, silently
    lone = restore("derain", str(folder), str(tmp_path / "y"), "--temporal-strength", "2", "--model", str(tiny_checkpoint))
    assert lone.returncode == 2 and "--temporal-strength applies with --temporal R" in lone.stderr and not (tmp_path / "y").exists()


def test_version_flag_says_the_versions_and_formats_of_this_install():
    from restore_core.io.images import SUPPORTED_EXTENSIONS
    from restore_core.io.video import pyav_available

    result = restore("--version")
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and lines[0].startswith("restore ")
    assert lines[1].startswith("python 3.") and ", torch 2." in lines[1]
    assert lines[2].startswith("images: png jpg") and all(ext.lstrip(".") in lines[2] for ext in SUPPORTED_EXTENSIONS)
    assert lines[3].startswith("many pictures in one file, restored each: multi-page tif tiff; animated gif png webp")
    assert lines[4] == "videos: none (pip install 'restore[video]')" if not pyav_available() else lines[4].startswith("videos: mp4 ")
    from restore_core.export import onnx_available, onnxruntime_available

    assert lines[5].startswith("export: ONNX (onnx 1.") if onnx_available() and onnxruntime_available() else lines[5].startswith("export: ")
    assert lines[6].startswith("training logs: log.csv")


HELP_PROBE = """
import sys
from cli.main import app
commands = ["derain", "deblur", "denoise", "dehaze", "auto", "train", "models", "benchmark", "convert", "export", "attribute-filters"]
for args in (["--help"], ["--version"], *[[command, "--help"] for command in commands]):
    try:
        app(args=args)
    except SystemExit as exit:
        assert exit.code == 0, (args, exit.code)
print("torch loaded:", "torch" in sys.modules, file=sys.stderr)
"""


def test_help_and_version_do_not_import_torch():
    """Every --help and --version answer without loading torch (a second and more to
    import; 0.3 s instead of 1.9 s for `restore --help` when this was written): the
    command modules import what runs a model inside the commands."""
    result = subprocess.run([sys.executable, "-c", HELP_PROBE], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert result.returncode == 0, result.stderr
    assert "torch loaded: False" in result.stderr, result.stderr


def test_every_device_option_defaults_to_cuda_when_present():
    """Every command with --device takes CUDA when there is one (``auto``): one
    default across the app (attribute-filters once defaulted to the CPU)."""
    import typer

    from cli.main import app

    group = typer.main.get_command(app)
    defaults = {name: param.default for name, command in group.commands.items()
                for param in command.params if "--device" in param.opts}
    assert set(defaults) >= {"derain", "auto", "train", "benchmark", "attribute-filters"}
    assert set(defaults.values()) == {"auto"}, defaults


# Run before the CLI in a child process: at exit it writes the child's peak resident
# memory (VmHWM, kB) to $PEAK_FILE. That is this program's own peak: Linux's ru_maxrss
# of a child (os.wait4, RUSAGE_CHILDREN) also counts the parent's resident memory at the
# fork, which pytest's grows to 1.5 GiB and more late in a run.
_REPORT_PEAK_MEMORY = (
    "import atexit, os\n"
    "def _report_peak():\n"
    "    with open('/proc/self/status') as status, open(os.environ['PEAK_FILE'], 'w') as out:\n"
    "        out.write(next(line for line in status if line.startswith('VmHWM')).split()[1])\n"
    "atexit.register(_report_peak)\n"
)


@pytest.mark.slow
def test_tiled_12_megapixel_image_stays_under_1_5_gib(tmp_path):
    """4000x3000 with --tile 512: the CLI's peak resident memory measured 0.825 GiB in
    session 37 (4.65 GiB untiled); bound 1.5 GiB. Measured by the child itself (VmHWM at
    exit): the ru_maxrss that os.wait4 reports for a child starts from the parent's
    resident memory at the fork, and fresh-clone runs failed on 1.51 and 1.58 GiB that
    way, pytest's own size late in the run, while the CLI's peak was unchanged."""
    from restore_core.engine.speed import synthetic_photos

    if not Path("/proc/self/status").exists():
        pytest.skip("reads the peak from /proc (Linux)")
    _shipped_model()
    synthetic_photos(tmp_path / "in", 1, 4000, 3000)
    peak_file = tmp_path / "peak_kib.txt"
    result = subprocess.run([sys.executable, "-c", _REPORT_PEAK_MEMORY + "from cli.main import app; app()", "derain",
                             str(tmp_path / "in"), str(tmp_path / "out"), "--tile", "512", "-q"],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "PEAK_FILE": str(peak_file)})
    assert result.returncode == 0, result.stderr
    peak_gib = int(peak_file.read_text()) / 2**20
    assert peak_gib < 1.5, f"peak RSS {peak_gib:.2f} GiB"


def test_deblur_iterations_reach_the_golf_model(folder, tmp_path):
    import torch

    from restore_core.checkpoint import save_checkpoint
    from restore_core.models import build_model

    tiny = {"width": 4, "levels": 1, "blocks_per_level": [1], "bottleneck_blocks": 1}
    config = {"first_architecture": "unet", "first": tiny, "step_architecture": "unet", "step": tiny, "iterations": 3}
    torch.manual_seed(0)
    model = build_model("golf", config)
    with torch.no_grad():
        for p in model.step.parameters():
            p.add_(0.05)  # make every tap of G visible in the output
    golf = save_checkpoint(tmp_path / "golf.safetensors", model, "golf", config, "deblur", recipe={"train_iterations": 3})
    outputs = {}
    for n in (0, 3, 4):
        result = restore("deblur", str(folder / "a.png"), str(tmp_path / f"out{n}"), "--model", str(golf), "--iterations", str(n))
        assert result.returncode == 0, result.stderr
        outputs[n] = cv2.imread(str(tmp_path / f"out{n}" / "a.png"))
        # more taps than G was trained over drift from the optimum (the shipped G: far below the input at 100)
        drift = "warning: --iterations 4: golf was trained with G taking 3 taps; beyond them its steps drift"
        assert (drift in result.stderr) == (n == 4), result.stderr
    assert np.abs(outputs[0].astype(int) - outputs[3]).max() > 0
    import restore_core

    with pytest.warns(RuntimeWarning, match="trained with G taking 3 taps"):
        restore_core.load(golf, iterations=4)
    bad = restore("deblur", str(folder / "a.png"), str(tmp_path / "bad"), "--model", str(golf), "--iterations", "-1")
    assert bad.returncode == 2 and "--iterations" in bad.stderr
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())


def test_iterations_on_a_model_without_them_is_a_usage_error(folder, tmp_path, tiny_checkpoint):
    result = restore("deblur", str(folder / "a.png"), str(tmp_path / "o"), "--model", str(tiny_checkpoint), "--iterations", "2", "-q")
    assert result.returncode == 2 and "--iterations does not apply to this model (unet)" in result.stderr


def test_denoise_sigma_reaches_a_model_with_a_noise_level_input(folder, tmp_path):
    import torch

    from restore_core.checkpoint import save_checkpoint
    from restore_core.models import build_model

    config = {"levels": 2, "base_filters": 4, "max_filters": 8, "info_accum": {"layers": 1, "growth": 2}, "norm": "none",
              "residual": True, "noise_level": True}
    torch.manual_seed(0)
    model = build_model("infoflow", config)
    with torch.no_grad():
        model.noise_level_embedding.mlp[-1].weight.normal_(0, 0.5)  # as if trained: the level shows
    told = save_checkpoint(tmp_path / "told.safetensors", model, "infoflow", config, "denoise")
    outputs = {}
    for sigma in (None, "auto", "blind", "5", "50"):
        out = tmp_path / f"out{sigma}"
        result = restore("denoise", str(folder / "a.png"), str(out), "--model", str(told), *(("--sigma", sigma) if sigma else ()))
        assert result.returncode == 0, result.stderr
        outputs[sigma] = cv2.imread(str(out / "a.png")).astype(int)
    assert np.abs(outputs["5"] - outputs["50"]).max() > 0 and np.abs(outputs["blind"] - outputs["5"]).max() > 0
    assert np.array_equal(outputs[None], outputs["auto"]) and np.abs(outputs["auto"] - outputs["blind"]).max() > 0
    reported = restore("denoise", str(folder / "a.png"), str(tmp_path / "json"), "--model", str(told), "--json")
    assert json.loads(reported.stdout)["degradation"]["noise_sigma"] > 50  # uniform random pixels: very noisy
    assert "has no noise calibration" in reported.stderr and "restore train --calibrate" in reported.stderr
    quick = restore("denoise", str(folder / "a.png"), str(tmp_path / "quick"), "--model", str(told), "--sigma", "quick")
    assert quick.returncode == 0 and "calibration" not in quick.stderr
    bad = restore("denoise", str(folder / "a.png"), str(tmp_path / "bad"), "--model", str(told), "--sigma", "300")
    assert bad.returncode == 2 and "between 0 and 255" in bad.stderr
    bad = restore("denoise", str(folder / "a.png"), str(tmp_path / "bad"), "--model", str(told), "--sigma", "loud")
    assert bad.returncode == 2 and "'quick' or 'blind'" in bad.stderr and not (tmp_path / "bad").exists()


def test_denoise_sigma_on_a_blind_model_is_a_usage_error(folder, tmp_path):
    config = {"levels": 2, "base_filters": 4, "max_filters": 8, "info_accum": None, "norm": "none", "residual": True}
    from restore_core.checkpoint import save_checkpoint
    from restore_core.models import build_model

    blind = save_checkpoint(tmp_path / "blind.safetensors", build_model("infoflow", config), "infoflow", config, "denoise")
    result = restore("denoise", str(folder / "a.png"), str(tmp_path / "o"), "--model", str(blind), "--sigma", "25", "-q")
    assert result.returncode == 2 and "--sigma" in result.stderr and "blind" in result.stderr
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_dehaze_recompose_radius_switches_the_recomposition(folder, tmp_path):
    """The shipped dehazer recomposes by default; --recompose-radius 0 gives the network's
    output, another radius another result; a negative one is a usage error with no output."""
    outputs = {}
    for radius in (None, "0", "10"):
        out = tmp_path / f"out{radius}"
        result = restore("dehaze", str(folder / "a.png"), str(out), "-q", *(("--recompose-radius", radius) if radius else ()))
        assert result.returncode == 0, result.stderr
        outputs[radius] = cv2.imread(str(out / "a.png")).astype(int)
    assert np.abs(outputs[None] - outputs["0"]).max() > 0 and np.abs(outputs[None] - outputs["10"]).max() > 0
    bad = restore("dehaze", str(folder / "a.png"), str(tmp_path / "bad"), "-q", "--recompose-radius", "-3")
    assert bad.returncode == 2 and "radius must be >= 0" in bad.stderr
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())


def test_derain_darken_only_switches_the_projection(tmp_path):
    """The shipped derainer is never brighter than its input (rain only adds light);
    --no-darken-only gives the network's output, brighter in places; a model without
    the switch refuses it with a usage error and writes nothing."""
    source = SAMPLES / "input" / "motorcycle-detail.png"  # colour: compared channel by channel
    rainy = cv2.imread(str(source)).astype(int)
    outputs = {}
    for flag in ("", "--darken-only", "--no-darken-only"):
        out = tmp_path / f"out{flag}"
        result = restore("derain", str(source), str(out), "-q", *((flag,) if flag else ()))
        assert result.returncode == 0, result.stderr
        outputs[flag] = cv2.imread(str(out / source.name)).astype(int)
    assert (outputs[""] <= rainy).all() and np.array_equal(outputs[""], outputs["--darken-only"])
    assert (outputs["--no-darken-only"] > rainy).any()
    assert np.array_equal(outputs[""], np.minimum(outputs["--no-darken-only"], rainy))
    bad = restore("derain", str(source), str(tmp_path / "bad"), "-q", "-m", "adms", "--no-darken-only")
    assert bad.returncode == 2 and "--darken-only does not apply to this model (adms)" in bad.stderr
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())


def test_shipped_deblur_model_improves_blurred_images(tmp_path):
    """The embedded deblur set (bundled photographs, seeded synthetic camera shake)."""
    result = restore("benchmark", "--task", "deblur", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["label"]: row for row in json.loads(result.stdout)["results"]}
    assert rows["golf-deblur"]["psnr_y"] > rows["input"]["psnr_y"] + 0.5


@pytest.mark.parametrize("task, model, gain", [("denoise", "infoflow-denoise", 3.0), ("dehaze", "infoflow-dehaze", 5.0)])
def test_shipped_default_models_improve_their_embedded_sets(task, model, gain):
    """The embedded sets: bundled photographs with seeded synthetic noise (sigma 25) or haze."""
    result = restore("benchmark", "--task", task, "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["label"]: row for row in json.loads(result.stdout)["results"]}
    assert rows[model]["psnr_y"] > rows["input"]["psnr_y"] + gain


def test_the_embedded_auto_set_holds_each_degradation_as_the_single_task_sets_do():
    """restore benchmark --task auto (it had no embedded set: "pass --root"): the bundled
    photographs under each of the four degradations, scored per degradation, each group's
    input row that of the task's own embedded set; adms improves every group."""
    result = restore("benchmark", "--task", "auto", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["pairs"] == 12 and report["dataset"] == "samples-auto"
    rows = {row["label"]: row["by_degradation"] for row in report["results"]}
    assert list(rows["input"]) == ["rain", "motion-blur", "noise", "haze"] and all(g["count"] == 3 for g in rows["input"].values())
    for degradation in rows["input"]:
        assert rows["adms"][degradation]["psnr_y"] > rows["input"][degradation]["psnr_y"]
        named = rows["adms"][degradation]["classified_as"]  # what the classifier took each image for
        assert sum(named.values()) == 3 and named.get(degradation, 0) == rows["adms"][degradation]["classified"]
        assert set(named) <= {"rain", "motion-blur", "noise", "haze"}
    for task, degradation in (("derain", "rain"), ("denoise", "noise"), ("dehaze", "haze")):
        alone = json.loads(restore("benchmark", "--task", task, "--json").stdout)["results"][0]
        assert alone["label"] == "input" and alone["psnr_y"] == pytest.approx(rows["input"][degradation]["psnr_y"], abs=1e-9)


def test_a_corrupt_training_image_is_named_and_left_out_and_a_corrupt_benchmark_pair_stops_the_score(tmp_path, tiny_checkpoint, rng):
    """A training folder's corrupt file (one truncated JPEG among thousands of photos)
    stopped the run before its first step, naming only the first such file: each is now
    a warning, left out (data.json lists them) and training goes on. A benchmark still
    stops with one line, exit 2: a score over part of a set is not the set's score."""
    clean = tmp_path / "clean"
    clean.mkdir()
    cv2.imwrite(str(clean / "good.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    (clean / "broken.png").write_bytes(b"not an image")
    (clean / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    trained = restore("train", "--recipe", "infoflow-denoise", "--clean", str(clean), "--no-builtin-photographs",
                      "--steps", "1", "--set", "pretrain_steps=0", "--patch-size", "32", "--batch-size", "1", "--out", str(tmp_path / "run"))
    assert trained.returncode == 0, trained.stderr
    for name in ("broken.png", "cut.jpg"):
        assert f"warning: {clean / name}: cannot decode image (corrupt, truncated or unsupported format); left out of training" in trained.stderr
    assert f"2 files that could not be decoded left out ({clean / 'broken.png'}, {clean / 'cut.jpg'})" in trained.stderr
    assert "Traceback" not in trained.stderr
    recorded = json.loads((tmp_path / "run" / "data.json").read_text())
    assert [entry["path"] for entry in recorded["undecodable"]] == [str(clean / "broken.png"), str(clean / "cut.jpg")]
    assert recorded["clean"] == {str(clean): 1} and (tmp_path / "run" / "model.safetensors").is_file()

    (clean / "good.png").unlink()  # nothing left to train on: said as such
    again = restore("train", "--recipe", "infoflow-denoise", "--clean", str(clean), "--no-builtin-photographs",
                    "--steps", "1", "--set", "pretrain_steps=0", "--patch-size", "32", "--out", str(tmp_path / "run2"))
    assert again.returncode == 2 and "no training images left: 2 files that could not be decoded (" in again.stderr

    pairs = tmp_path / "pairs"
    for side in ("input", "target"):
        (pairs / side).mkdir(parents=True)
        cv2.imwrite(str(pairs / side / "a.png"), rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    (pairs / "input" / "b.png").write_bytes(b"not an image")
    cv2.imwrite(str(pairs / "target" / "b.png"), rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    scored = restore("benchmark", "--root", str(pairs), "-m", str(tiny_checkpoint), "--task", "derain")
    assert scored.returncode == 2
    assert "b.png: cannot decode image" in scored.stderr and "Traceback" not in scored.stderr
    assert "(every pair is scored, or the mean would not be the set's: mend or remove it)" in scored.stderr
    validated = restore("train", "--recipe", "infoflow-denoise", "--builtin-photographs", "--val", str(pairs), "--steps", "1",
                        "--set", "pretrain_steps=0", "--patch-size", "32", "--out", str(tmp_path / "run3"))
    assert validated.returncode == 2 and "b.png: cannot decode image" in validated.stderr
    assert "(a validation or --exclude-like image: each is needed, or the run's measure changes: mend or remove it)" in validated.stderr


def test_a_run_without_validation_says_so_once(tmp_path, rng):
    """Without --val or --holdout-every a run is never measured and keeps no best
    checkpoint: one line at the start says so, and how to add a validation set."""
    clean, pairs = tmp_path / "clean", tmp_path / "pairs"
    clean.mkdir()
    for i in range(2):
        cv2.imwrite(str(clean / f"{i}.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    for side in ("input", "target"):
        (pairs / side).mkdir(parents=True)
        cv2.imwrite(str(pairs / side / "a.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    common = ("train", "--recipe", "taylor-derain", "--clean", str(clean), "--no-builtin-photographs", "--steps", "1", "--patch-size", "32",
              "--batch-size", "1", "--set", "model.mapping.width=4", "--threads", "1")
    blind = restore(*common, "--out", str(tmp_path / "blind"))
    assert blind.returncode == 0, blind.stderr
    assert blind.stderr.count("no validation set: the run is not measured while it trains") == 1
    # --holdout-every without --data held nothing out, silently (then the line above suggested it)
    holdout = restore(*common, "--holdout-every", "2", "--out", str(tmp_path / "holdout"))
    assert holdout.returncode == 2 and "--holdout-every 2 holds out pairs of --data folders, and there is none" in holdout.stderr
    assert not (tmp_path / "holdout").exists()
    # --holdout-every 1 held out every pair and trained on none of --data (said only as "0 pairs" on the data line)
    every = restore(*common, "--data", str(pairs), "--holdout-every", "1", "--out", str(tmp_path / "every"))
    assert every.returncode == 2 and every.stderr.strip() == (
        "error: --holdout-every 1 holds out every pair, so no pair of --data would be trained on; to validate on a folder "
        f"without training on it, give it as --val (--val {pairs}), or hold out every k-th pair with k >= 2")
    assert not (tmp_path / "every").exists()
    # A log file (no terminal) gets a line every 250 steps, with the rate and the time left.
    longer = restore(*common, "--steps", "250", "--set", "checkpoint_every=1000", "--out", str(tmp_path / "longer"))
    assert longer.returncode == 0, longer.stderr
    assert re.search(r"step 250/250 loss [0-9.]+ lr \S+, [0-9.]+ steps/s, about \d+ (s|min) left", longer.stderr), longer.stderr
    measured = restore(*common, "--val", str(pairs), "--out", str(tmp_path / "measured"))
    assert measured.returncode == 0, measured.stderr
    assert "no validation set" not in measured.stderr and (tmp_path / "measured" / "best.safetensors").is_file()


def test_a_training_log_gets_a_line_every_250_steps_and_every_minute_between():
    """A log file got a line every 250 steps only: a run of several seconds a step (the
    Golf paper preset on a CPU) said nothing for the better part of an hour."""
    from cli.console import StepLines

    now = [0.0]
    lines = StepLines(every_steps=250, every=60, clock=lambda: now[0])
    said = []
    for seconds, step in [(0, 1), (30, 11), (61, 21), (70, 24), (125, 41), (700, 250)]:
        now[0] = seconds
        said.append(lines(step, 1000, 0.01234, 5e-4))
    assert said == [None, None, "step 21/1000 loss 0.0123 lr 0.0005, 0.33 steps/s, about 49 min left", None,
                    "step 41/1000 loss 0.0123 lr 0.0005, 0.32 steps/s, about 49 min left",
                    "step 250/1000 loss 0.0123 lr 0.0005, 0.36 steps/s, about 35 min left"]


def test_a_model_or_folder_name_with_brackets_is_printed_whole(folder, tmp_path, tiny_checkpoint):
    """The summary line, the dry run's, a benchmark table's title and `models MODEL`'s
    were printed with Rich markup on: a model file `net[bold].safetensors` was named
    "net", a folder `b[bold]` "b"."""
    import shutil

    model = tmp_path / "net[bold].safetensors"
    shutil.copy(tiny_checkpoint, model)
    for extra in ((), ("--dry-run",)):
        result = restore("derain", str(folder), str(tmp_path / "out"), "--model", str(model), "--overwrite", *extra)
        assert result.returncode == 0 and result.stderr.rstrip().endswith(("with net[bold]", "with net[bold], 0 refused, 0 skipped; nothing written")), result.stderr
    pairs = tmp_path / "b[bold]"
    for side in ("input", "target"):
        (pairs / side).mkdir(parents=True)
        shutil.copy(next(folder.glob("*.png")), pairs / side / "a.png")
    scored = restore("benchmark", "--root", str(pairs), "--model", str(model))
    assert scored.returncode == 0 and "b[bold] (1 pair)" in scored.stdout and "│ net[bold] │" in scored.stdout, scored.stderr
    described = restore("models", str(model))
    assert described.returncode == 0 and described.stdout.lstrip().startswith("net[bold]"), described.stdout


def test_batches_on_the_cpu_are_said_to_run_slower(folder, tmp_path, tiny_checkpoint):
    """--batch-size on a CPU ran 1.3-1.6x slower than single images with the shipped
    models (12 photos of 480x320 on 2 cores), without a word."""
    batched = restore("derain", str(folder), str(tmp_path / "out"), "--model", str(tiny_checkpoint), "--batch-size", "2", "--device", "cpu")
    assert batched.returncode == 0 and "warning: --batch-size 2 on the CPU: batches run slower than one image at a time" in batched.stderr
    single = restore("derain", str(folder), str(tmp_path / "one"), "--model", str(tiny_checkpoint), "--device", "cpu")
    assert single.returncode == 0 and "--batch-size" not in single.stderr


def test_a_batch_in_a_log_file_gets_progress_lines(folder, tmp_path, tiny_checkpoint, monkeypatch, capsys):
    """Without a terminal the progress bar is off, so a batch of thousands of images said
    nothing on stderr until its end; now a line every minute (here: every image) with
    the count, the rate and the time left. Run in this process to shorten the minute."""
    import cli.console as console
    import cli.restore_cmd as restore_cmd

    monkeypatch.setattr(console, "PROGRESS_LINE_SECONDS", 0.0)
    monkeypatch.setattr(restore_cmd.signal, "signal", lambda *args: None)  # leave pytest's own handlers alone
    request = restore_cmd.RestoreRequest(task="derain", sources=(str(folder),), out_dir=tmp_path / "out", model=str(tiny_checkpoint))
    restore_cmd.run_restore(request)
    err = capsys.readouterr().err
    assert re.search(r"derain: 1 of 2 inputs, [0-9.]+ inputs/s, about \d+ s left", err), err
    assert "derain: 2 of 2 inputs" in err and "2 restored, 0 failed" in err


def test_strength_blends_the_restoration_with_the_input(folder, tmp_path, tiny_checkpoint):
    """--strength 0 writes the input's pixels, 1 the model's output, 0.5 the pixel halfway
    between them (to the 8-bit rounding); outside 0-1 it is a usage error that writes nothing."""
    outputs = {}
    for strength in ("0", "0.5", "1"):
        out = tmp_path / f"s{strength}"
        result = restore("denoise", str(folder / "a.png"), str(out), "--model", str(tiny_checkpoint), "--strength", strength, "-q")
        assert result.returncode == 0, result.stderr
        outputs[strength] = cv2.imread(str(out / "a.png")).astype(int)
    source = cv2.imread(str(folder / "a.png")).astype(int)
    assert np.array_equal(outputs["0"], source)
    assert np.abs(outputs["1"] - source).mean() > 5  # the untrained model changes the image a lot
    assert np.abs(2 * outputs["0.5"] - (source + outputs["1"])).max() <= 2  # halfway, to a rounding on each side
    bad = restore("denoise", str(folder / "a.png"), str(tmp_path / "bad"), "--model", str(tiny_checkpoint), "--strength", "1.5")
    assert bad.returncode == 2 and "--strength must be between 0 and 1" in bad.stderr and not (tmp_path / "bad").exists()


def _strict_json(line: str) -> dict:
    """Parse as jq or JavaScript would: NaN and Infinity are not JSON."""
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(line, parse_constant=refuse)


def test_the_grey_denoiser_beats_the_colour_one_on_grey_noise_and_warns_once_on_colour(tmp_path):
    """infoflow-denoise-grey is trained on grey patches only: on a grey photograph with noise
    it restores better than infoflow-denoise; colour inputs get one line saying it is the
    wrong model for them (once per run, not per image), grey ones none."""
    from skimage import data as skdata

    from restore_core.metrics import psnr

    if find_weights(PRESETS["infoflow-denoise-grey"].weights) is None:
        pytest.skip("shipped grey denoiser absent")
    clean = skdata.camera()[::2, ::2]  # 256 x 256 grey photograph
    noisy = np.clip(np.round(clean + np.random.default_rng(25).normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)
    (tmp_path / "grey").mkdir()
    cv2.imwrite(str(tmp_path / "grey" / "camera.png"), noisy)
    scores = {}
    for model in ("infoflow-denoise", "infoflow-denoise-grey"):
        result = restore("denoise", str(tmp_path / "grey"), str(tmp_path / model), "--model", model, "--sigma", "25")
        assert result.returncode == 0, result.stderr
        assert "trained on grey images only" not in result.stderr
        scores[model] = psnr(cv2.imread(str(tmp_path / model / "camera.png"), cv2.IMREAD_UNCHANGED), clean)
    assert scores["infoflow-denoise-grey"] > scores["infoflow-denoise"] > psnr(noisy, clean) + 5

    (tmp_path / "colour").mkdir()
    astronaut = cv2.cvtColor(skdata.astronaut()[::4, ::4], cv2.COLOR_RGB2BGR)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / "colour" / name), astronaut)
    result = restore("denoise", str(tmp_path / "colour"), str(tmp_path / "out"), "--model", "infoflow-denoise-grey")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("infoflow-denoise-grey was trained on grey images only") == 1


def test_json_records_are_strict_json_when_the_noise_level_is_unknown(tmp_path, rng):
    """A 1-pixel-high image has no measurable noise level: its record says null, not NaN."""
    if find_weights(PRESETS["infoflow-denoise"].weights) is None:
        pytest.skip("shipped denoiser absent")
    cv2.imwrite(str(tmp_path / "row.png"), rng.integers(0, 256, (1, 40, 3), dtype=np.uint8))
    result = restore("denoise", str(tmp_path / "row.png"), str(tmp_path / "out"), "--json", "-q")
    assert result.returncode == 0, result.stderr
    record = _strict_json(result.stdout.strip())
    assert record["status"] == "ok" and record["degradation"] == {"noise_sigma": None, "noise_sigma_first_look": None}


def test_several_inputs_as_a_shell_expands_a_pattern(tmp_path, rng, tiny_checkpoint):
    """``restore derain photos/*.png out/`` unquoted: the shell gives each file as an
    argument, which was "Got unexpected extra argument(s)"; now every one is restored into
    OUT, as ``cp`` takes them. OUT naming one file is a usage error."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(photos / name), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    names = [str(photos / name) for name in ("a.png", "b.png", "c.png")]
    result = restore("derain", *names, str(tmp_path / "out"), "-m", str(tiny_checkpoint))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "out" / name) for name in ("a.png", "b.png", "c.png")]
    refused = restore("derain", *names[:2], str(tmp_path / "one.png"), "-m", str(tiny_checkpoint))
    assert refused.returncode == 2 and "names a file, but the outputs of 2 inputs go into a folder" in refused.stderr
    assert not (tmp_path / "one.png").exists()


def test_benchmark_json_is_strict_when_input_equals_target(tmp_path, rng, tiny_checkpoint):
    """Identical images have infinite PSNR: the JSON says null (NaN and Infinity are not JSON)."""
    for side in ("input", "target"):
        (tmp_path / "set" / side).mkdir(parents=True)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "set" / "input" / "1.png"), image)
    cv2.imwrite(str(tmp_path / "set" / "target" / "1.png"), image)
    result = restore("benchmark", "--root", str(tmp_path / "set"), "-m", str(tiny_checkpoint), "--json")
    assert result.returncode == 0, result.stderr
    report = _strict_json(result.stdout)
    rows = {row["label"]: row for row in report["results"]}
    assert rows["input"]["psnr_rgb"] is None and rows["input"]["ssim_rgb"] == 1.0
    assert rows[tiny_checkpoint.stem]["psnr_rgb"] < 40
    model = report["models"][0]  # what papers' tables put beside the scores: parameters and MACs on a 256x256 image
    assert model["parameters"] > 0 and model["macs_256"] > model["parameters"]


def test_benchmark_says_which_images_it_left_out(tmp_path, rng, tiny_checkpoint):
    for side in ("input", "target"):
        (tmp_path / "set" / side).mkdir(parents=True)
    for name in ("1.png", "2.png"):
        cv2.imwrite(str(tmp_path / "set" / "input" / name), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "set" / "target" / "1.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    result = restore("benchmark", "--root", str(tmp_path / "set"), "-m", str(tiny_checkpoint), "--json")
    assert result.returncode == 0, result.stderr
    assert "1 image(s) pair with no other and are left out: input/2.png" in result.stderr
    header = _strict_json(result.stdout)
    assert header["pairs"] == 1 and header["unpaired"] == ["input/2.png"]
    # The folder may come first, as restore derain's IN does (it was "unexpected extra argument")
    positional = restore("benchmark", str(tmp_path / "set"), "-m", str(tiny_checkpoint), "--json")
    assert positional.returncode == 0 and _strict_json(positional.stdout)["root"] == header["root"], positional.stderr
    twice = restore("benchmark", str(tmp_path / "set"), "--root", str(tmp_path), "-m", str(tiny_checkpoint))
    assert twice.returncode == 2 and "two dataset folders" in twice.stderr
    timed = restore("benchmark", str(tmp_path / "set"), "--speed", "-m", str(tiny_checkpoint))
    assert timed.returncode == 2 and "--root: for scoring on a dataset; --speed times" in timed.stderr


def test_benchmark_reports_go_to_new_folders_and_a_bad_path_is_one_line(tmp_path, tiny_checkpoint):
    """--csv and --markdown into folders that do not exist yet are written (they ended the
    run in a FileNotFoundError traceback, after the whole benchmark); an unwritable path is
    a one-line error, after the JSON results."""
    csv_path, markdown_path = tmp_path / "new" / "deep" / "scores.csv", tmp_path / "new" / "card.md"
    result = restore("benchmark", "-m", str(tiny_checkpoint), "--limit", "1", "--csv", str(csv_path), "--markdown", str(markdown_path),
                     "--tile", "256", "-q")
    assert result.returncode == 0, result.stderr
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "model,image,psnr_y,ssim_y,psnr_rgb,ssim_rgb,seconds,degradation,classified" and len(rows) == 3  # input + model
    # The line above a model card's table says what was scored and how (it named no task, device or setting)
    assert markdown_path.read_text().startswith("Dataset: samples-rain at ") and "(1 pair); task derain; cpu, float32; tile 256; " in markdown_path.read_text()
    assert f"Size: {tiny_checkpoint.stem} " in markdown_path.read_text() and " G MACs at 256x256." in markdown_path.read_text()
    (tmp_path / "a-file").write_text("")
    if Path("/proc/self").is_dir():  # Linux: a folder no file can be made in, found only on writing
        bad = restore("benchmark", "-m", str(tiny_checkpoint), "--limit", "1", "--json", "--csv", "/proc/x.csv")
        assert bad.returncode == 1 and "cannot write" in bad.stderr and "Traceback" not in bad.stderr
        assert _strict_json(bad.stdout)["results"]  # the scores were printed first
    # under a file: refused before scoring
    under = restore("benchmark", "-m", str(tiny_checkpoint), "--limit", "1", "--json", "--csv", str(tmp_path / "a-file" / "x.csv"))
    assert under.returncode == 2 and "is a file, so no folder can be made there" in under.stderr and under.stdout == ""
    # A path that names a folder where a file goes (or the reverse) is refused before scoring.
    for flag, path in (("--csv", tmp_path / "new"), ("--markdown", tmp_path / "new"), ("--save-images", tmp_path / "a-file")):
        refused = restore("benchmark", "-m", str(tiny_checkpoint), "--limit", "1", "--json", flag, str(path))
        assert refused.returncode == 2 and f"error: {flag} {path}: is a " in refused.stderr and refused.stdout == ""


def test_benchmark_refuses_options_its_measurement_ignores_and_quiet_alone_keeps_the_table(tmp_path, tiny_checkpoint):
    """--speed and --growth time synthetic images: scoring options beside them (--csv,
    --root, --save-images, ...) were ignored silently, nothing written; --sizes/--count
    without --speed alike. --quiet without --json/--csv/--markdown printed nothing at all."""
    csv_path = tmp_path / "x.csv"
    for flags, words in ((("--speed", "--csv", str(csv_path), "--limit", "2"), "--limit, --csv: for scoring on a dataset; --speed times"),
                         (("--growth", "--root", str(tmp_path)), "--root: for scoring on a dataset; --growth times"),
                         (("--speed", "--growth"), "--speed and --growth are two measurements"),
                         (("--count", "3"), "--count applies with --speed"), (("--sizes", "64x64"), "--sizes applies with --speed"),
                         (("--temporal-strength", "2"), "--temporal-strength applies with --temporal R"),
                         (("--temporal-strength", "4"), "--temporal-strength applies with --temporal R"),  # given, though the default
                         (("--speed", "--sigma", "25"), "--sigma: for scoring on a dataset")):
        refused = restore("benchmark", "-m", str(tiny_checkpoint), *flags)
        assert refused.returncode == 2 and words in refused.stderr and not refused.stdout, (flags, refused.stderr)
    assert not csv_path.exists()
    alone = restore("benchmark", "-m", str(tiny_checkpoint), "--limit", "1", "-q")
    # The table is the command's output: on stdout (it was on stderr: `> results.txt` kept nothing), on
    # stderr only where stdout carries the JSON report.
    assert alone.returncode == 0 and "PSNR Y" in alone.stdout and tiny_checkpoint.stem in alone.stdout and alone.stderr == "", alone.stderr
    with_json = restore("benchmark", "-m", str(tiny_checkpoint), "--limit", "1", "-q", "--json")
    assert with_json.returncode == 0 and with_json.stderr == "" and _strict_json(with_json.stdout)["results"], with_json.stderr
    timed = restore("benchmark", "-m", str(tiny_checkpoint), "--speed", "--sizes", "32x32", "--count", "1", "-q")
    assert timed.returncode == 0 and "CLI / bare" in timed.stdout, timed.stderr
    timed_json = restore("benchmark", "-m", str(tiny_checkpoint), "--speed", "--sizes", "32x32", "--count", "1", "--json")
    assert timed_json.returncode == 0 and "CLI / bare" in timed_json.stderr and json.loads(timed_json.stdout)[0]["images"] == 1


def test_benchmark_takes_its_task_from_the_dataset(tmp_path, rng, tiny_checkpoint):
    """--dataset cbsd68 without --task is a denoising benchmark: the self-ensemble uses
    denoising's eight views (it once used derain's four); --task still overrides it."""
    (tmp_path / "clean").mkdir()
    cv2.imwrite(str(tmp_path / "clean" / "1.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    common = ("benchmark", "--dataset", "cbsd68", "--root", str(tmp_path / "clean"), "-m", str(tiny_checkpoint), "--self-ensemble", "--json")
    result = restore(*common)
    assert result.returncode == 0, result.stderr
    report = _strict_json(result.stdout)
    assert report["self_ensemble"] == list(range(8)) and report["results"][-1]["label"].endswith("-x8")
    # A model scored on another task than its own is said, as the restore commands say it
    # (benchmark said nothing), and so is a tile size that changes the scores.
    assert "warning: model tiny was trained for derain, not denoise" in result.stderr
    told = restore(*common, "--task", "dehaze", "--tile", "16")
    assert told.returncode == 0, told.stderr
    assert _strict_json(told.stdout)["self_ensemble"] == [0, 4]
    assert "warning: model tiny was trained for derain, not dehaze" in told.stderr
    assert "warning: --tile 16: tiles under 256 pixels see too little around them" in told.stderr
    own = restore(*common, "--task", "derain")
    assert own.returncode == 0 and "warning" not in own.stderr, own.stderr
    quiet = restore(*common, "-q")
    assert quiet.returncode == 0 and quiet.stderr == "" and _strict_json(quiet.stdout)["results"]  # JSON alone, no table
    # A task that is none (a typo, a capital) is named as such, not as a task without a default model.
    unknown = restore(*common, "--task", "Derain")
    assert unknown.returncode == 2 and unknown.stderr.strip() == (
        "error: --task 'Derain': expected one of derain, deblur, denoise, dehaze, auto")


def test_benchmark_takes_its_task_from_a_made_set_or_from_the_models(tmp_path, rng, tiny_checkpoint):
    """A paired folder says no task: benchmark used derain's (its default model, its
    self-ensemble views, an all-in-one model forced to remove rain) for a set that
    make-pairs made with noise and for a dehazer given alone. The set's degradation.json,
    then the task the models share, decide now; --task still overrides; the JSON says which."""
    import torch

    from restore_core.checkpoint import save_checkpoint
    from restore_core.models import build_model
    from restore_core.presets import declared_task

    for half in ("input", "target"):
        (tmp_path / "set" / half).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "set" / half / "1.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    config = {"width": 4, "levels": 1, "blocks_per_level": [1], "bottleneck_blocks": 1}
    dehazer = save_checkpoint(tmp_path / "dehazer.safetensors", build_model("unet", config), "unet", config, "dehaze")

    def task_of(*args: str) -> tuple[str, str]:
        result = restore("benchmark", "--root", str(tmp_path / "set"), "--json", *args)
        assert result.returncode == 0, result.stderr
        return _strict_json(result.stdout)["task"], "".join(line for line in result.stderr.splitlines(True) if "warning" in line)

    assert task_of("-m", str(dehazer)) == ("dehaze", "")  # it warned "trained for dehaze, not derain"
    assert task_of("-m", str(tiny_checkpoint))[0] == "derain"
    mixed, warned = task_of("-m", str(tiny_checkpoint), "-m", str(dehazer))  # no common task: derain, as before
    assert mixed == "derain" and "trained for dehaze, not derain" in warned
    (tmp_path / "set" / "degradation.json").write_text(json.dumps({"degradation": "haze", "seed": 0}))
    assert task_of("-m", str(dehazer)) == ("dehaze", "") and task_of("-m", str(tiny_checkpoint))[0] == "dehaze"
    (tmp_path / "set" / "degradation.json").write_text(json.dumps({"degradation": "mixed"}))
    assert task_of("-m", str(dehazer), "--task", "deblur")[0] == "deblur"
    # A folder whose halves name the degradation (noisy/ + clean/) is that task's set.
    for old, new in (("input", "noisy"), ("target", "clean")):
        (tmp_path / "set" / old).rename(tmp_path / "set" / new)
    (tmp_path / "set" / "degradation.json").unlink()
    assert task_of("-m", str(tiny_checkpoint))[0] == "denoise"
    # Nothing to go by (input/ + target/, no -m): derain's model, with a note saying so.
    for old, new in (("noisy", "input"), ("clean", "target")):
        (tmp_path / "set" / old).rename(tmp_path / "set" / new)
    guessed = restore("benchmark", "--root", str(tmp_path / "set"), "--limit", "1")
    assert guessed.returncode == 0 and (f"note: nothing says which degradation {tmp_path / 'set'} holds, so it is scored as "
                                        "deraining with taylor-derain") in " ".join(guessed.stderr.split()), guessed.stderr
    # Read without torch from the header; what cannot be read is None (loading says why).
    assert declared_task(str(dehazer)) == "dehaze" and declared_task("adms") == "all"
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    assert declared_task(str(tmp_path / "junk.safetensors")) is None and declared_task(str(tmp_path / "nope")) is None
    assert torch  # the models above were built in this process; the CLI ran in its own


def test_train_calibrate_stores_a_noise_calibration_and_keeps_the_weights(tmp_path):
    """restore train --calibrate: the table lands in the checkpoint's config, every tensor
    and the rest of the metadata are unchanged, and the model then looks twice; a blind
    checkpoint is refused with one line and left as it was."""
    import hashlib

    import torch
    from safetensors.torch import load_file

    from restore_core.checkpoint import load_checkpoint, read_metadata, save_checkpoint
    from restore_core.models import build_model

    clean = tmp_path / "clean"
    clean.mkdir()
    from skimage import data

    for i, photo in enumerate((data.astronaut(), data.coffee())):
        cv2.imwrite(str(clean / f"{i}.png"), photo[:96, :128, ::-1])
    config = {"levels": 2, "base_filters": 4, "max_filters": 8, "info_accum": None, "norm": "none", "residual": True, "noise_level": True}
    torch.manual_seed(0)
    told = save_checkpoint(tmp_path / "told.safetensors", build_model("infoflow", config), "infoflow", config, "denoise", metrics={"x": 1.0})
    before = load_file(str(told))
    result = restore("train", "--calibrate", str(told), "--clean", str(clean))
    assert result.returncode == 0, result.stderr
    assert "noise calibration on 2 clean images" in result.stderr
    meta = read_metadata(told)
    assert len(meta["config"]["noise_calibration"]) >= 2 and meta["metrics"] == {"x": 1.0} and meta["task"] == "denoise"
    after = load_file(str(told))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert load_checkpoint(told).model.needs_first_pass

    blind_config = {**config, "noise_level": False}
    blind = save_checkpoint(tmp_path / "blind.safetensors", build_model("infoflow", blind_config), "infoflow", blind_config, "denoise")
    digest = hashlib.sha256(blind.read_bytes()).hexdigest()
    refused = restore("train", "--calibrate", str(blind), "--clean", str(clean))
    assert refused.returncode == 2 and "noise-level input" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert hashlib.sha256(blind.read_bytes()).hexdigest() == digest
    nothing = restore("train", "--clean", str(clean))
    assert nothing.returncode == 2 and "--recipe" in nothing.stderr
    (tmp_path / "empty").mkdir()
    no_images = restore("train", "--calibrate", str(told), "--clean", str(tmp_path / "empty"), "--no-builtin-photographs")
    assert no_images.returncode == 2 and no_images.stderr.strip() == (
        f"error: --calibrate needs clean images: no images in {tmp_path / 'empty'}; give --clean FOLDER or --builtin-photographs")
    # a corrupt image among them is named and left out, as in training (its error was put under the checkpoint's name)
    (clean / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    again = restore("train", "--calibrate", str(told), "--clean", str(clean))
    assert again.returncode == 0, again.stderr
    assert f"warning: {clean / '2.png'}: cannot decode image (corrupt, truncated or unsupported format); left out of the calibration" in again.stderr
    assert "noise calibration on 2 clean images" in again.stderr
    # Training options beside --calibrate were ignored silently (--steps, --out: no run folder made).
    told_digest = hashlib.sha256(told.read_bytes()).hexdigest()
    ignored = restore("train", "--calibrate", str(told), "--clean", str(clean), "--steps", "500", "--out", str(tmp_path / "run"))
    assert ignored.returncode == 2 and ignored.stderr.strip() == (
        f"error: --out, --steps: for training; --calibrate measures {told} on --clean images (and --builtin-photographs) and trains nothing")
    assert hashlib.sha256(told.read_bytes()).hexdigest() == told_digest and not (tmp_path / "run").exists()


def test_benchmark_rows_of_models_with_the_same_name_stay_apart(tmp_path, tiny_checkpoint):
    """Two runs' `model.safetensors` (and one model given twice) were all labelled
    `model`: their JSON rows, `--csv` lines and `--save-images` folders fell together, the
    second model's images written over the first's. Now labelled by path, then numbered."""
    import shutil

    for run in ("run-a", "run-b"):
        (tmp_path / run).mkdir()
        shutil.copy(tiny_checkpoint, tmp_path / run / "model.safetensors")
    result = restore("benchmark", "-m", "run-a/model.safetensors", "-m", "run-b/model.safetensors", "-m", str(tiny_checkpoint),
                     "-m", str(tiny_checkpoint), "--limit", "1", "--json", "--save-images", "saved", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    labels = [row["label"] for row in _strict_json(result.stdout)["results"]]
    assert labels == ["input", "run-a/model", "run-b/model", "tiny#1", "tiny#2"]
    saved = sorted(str(p.relative_to(tmp_path / "saved")) for p in (tmp_path / "saved").rglob("*.png"))
    assert saved == ["run-a/model/camera.png", "run-b/model/camera.png", "tiny#1/camera.png", "tiny#2/camera.png"]
    one = restore("benchmark", "-m", str(tiny_checkpoint), "--limit", "1", "--json", cwd=tmp_path)
    assert [row["label"] for row in _strict_json(one.stdout)["results"]] == ["input", tiny_checkpoint.stem]


def test_benchmark_scores_an_all_in_one_models_classifier_on_a_set_of_one_degradation(tmp_path, rng):
    """A hazy/ + clear/ set scored with --task auto: the by-degradation table counts the
    images adms's classifier named haze; scored as dehazing (the set's own task) no
    classifier runs and no second table is printed."""
    for name in ("a.png", "b.png"):
        clear = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        for side, image in (("clear", clear), ("hazy", (clear * 0.5 + 110).astype(np.uint8))):
            (tmp_path / "set" / side).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / "set" / side / name), image)
    auto = restore("benchmark", "--root", str(tmp_path / "set"), "--task", "auto", "--json")
    assert auto.returncode == 0, auto.stderr
    groups = {result["label"]: result["by_degradation"] for result in json.loads(auto.stdout)["results"]}
    assert list(groups["adms"]) == ["haze"] and 0 <= groups["adms"]["haze"]["classified"] <= 2
    assert groups["adms"]["haze"]["count"] == 2 and "classified" not in groups["input"]["haze"]
    assert "by degradation" in auto.stderr
    plain = restore("benchmark", "--root", str(tmp_path / "set"), "--json")
    assert plain.returncode == 0 and json.loads(plain.stdout)["task"] == "dehaze"
    assert all("by_degradation" not in result for result in json.loads(plain.stdout)["results"]) and "by degradation" not in plain.stderr


def test_benchmark_scores_another_methods_output_folder_as_its_own_row(tmp_path, tiny_checkpoint, rng):
    """--outputs scores images another tool wrote (a published method's results) under
    the same protocol: a folder of this model's own outputs scores exactly as the model's
    row; outputs are matched by name in any format; a missing one stops the score, naming
    it; two files that could each be an image's output are refused."""
    for name in ("a.png", "b.png"):
        for side in ("input", "target"):
            (tmp_path / "set" / side).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(tmp_path / "set" / side / name), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    assert restore("derain", str(tmp_path / "set" / "input"), str(tmp_path / "mine"), "-m", str(tiny_checkpoint), "-q").returncode == 0
    assert restore("derain", str(tmp_path / "set" / "input"), str(tmp_path / "mine-jpg"), "-m", str(tiny_checkpoint), "--ext", "jpg", "-q").returncode == 0
    scored = restore("benchmark", "--root", str(tmp_path / "set"), "--task", "derain", "-m", str(tiny_checkpoint),
                     "--outputs", str(tmp_path / "mine"), "--outputs", str(tmp_path / "mine-jpg"), "--json")
    assert scored.returncode == 0, scored.stderr
    report = json.loads(scored.stdout)
    rows = {row["label"]: row for row in report["results"]}
    assert report["outputs"] == [str(tmp_path / "mine"), str(tmp_path / "mine-jpg")]
    for key in ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"):
        assert rows["mine"][key] == rows["tiny"][key]
    assert rows["mine-jpg"]["count"] == 2 and rows["mine-jpg"]["psnr_rgb"] != rows["mine"]["psnr_rgb"]  # the JPEG's own pixels
    # nothing ran for the input row or the folders: no time (it read 0.00 s/image)
    assert rows["input"]["seconds_per_image"] is None and rows["mine"]["seconds_per_image"] is None and rows["tiny"]["seconds_per_image"] > 0
    assert re.search(r"│ mine +│ [-\d.]+ +│ [-\d.]+ +│ [-\d.]+ +│ [-\d.]+ +│ - +│", scored.stderr)

    alone = restore("benchmark", "--root", str(tmp_path / "set"), "--outputs", str(tmp_path / "mine"), "--json")
    assert alone.returncode == 0, alone.stderr
    assert [row["label"] for row in json.loads(alone.stdout)["results"]] == ["input", "mine"]  # no model run
    assert json.loads(alone.stdout)["models"] == [] and "note:" not in alone.stderr

    (tmp_path / "mine" / "b.png").unlink()
    missing = restore("benchmark", "--root", str(tmp_path / "set"), "--outputs", str(tmp_path / "mine"))
    assert missing.returncode == 2
    assert f"error: {tmp_path / 'mine'}: no output for 1 of the 2 pair(s): b.png (outputs are matched by name, any image format)" in missing.stderr
    shutil.copy(tmp_path / "mine-jpg" / "a.jpg", tmp_path / "mine-jpg" / "b.png")
    clash = restore("benchmark", "--root", str(tmp_path / "set"), "--outputs", str(tmp_path / "mine-jpg"))
    assert clash.returncode == 0  # b.png, named exactly, wins over b.jpg
    (tmp_path / "mine-jpg" / "b.png").rename(tmp_path / "mine-jpg" / "b.tif")
    clash = restore("benchmark", "--root", str(tmp_path / "set"), "--outputs", str(tmp_path / "mine-jpg"))
    assert clash.returncode == 2 and "b.jpg, b.tif could each be the output for b.png; keep one" in clash.stderr


@pytest.mark.parametrize("args, named", [
    (("derain", str(SAMPLES / "input" / "camera.png"), ""), "'OUT'"),
    (("denoise", "", "out"), "'IN'"),
    (("train", "--recipe", "taylor-derain", "--builtin-photographs", "--out", ""), "'--out' / '-o'"),
    (("benchmark", "--root", ""), "'--root'"),
    (("make-pairs", str(SAMPLES / "target"), "", "-d", "noise"), "'OUT'"),
])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path, args, named):
    """Python reads Path("") as ".", so `restore derain in/ "$OUT"` with OUT unset wrote its
    outputs into the folder the job ran in (and train --out "" trained there)."""
    result = restore(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    flat = " ".join(result.stderr.replace("│", " ").split())
    assert f"Invalid value for {named}: an empty path (an unset shell variable?); '.' names the current folder" in flat
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran


@pytest.mark.parametrize("args, missing", [
    (("denoise", "photo.jpg"), "Missing argument 'OUT'. The output comes last, after the inputs: restore denoise photo.jpg out/"),
    (("make-pairs", "clean/", "-d", "noise"), "Missing argument 'OUT'. The output comes last, after the inputs: restore make-pairs clean/ out/"),
    (("derain",), "Missing argument 'IN'."),
])
def test_a_command_given_only_its_inputs_says_out_is_missing(tmp_path, args, missing):
    """Click fills the last argument first, so `restore denoise photo.jpg` said 'Missing
    argument IN', the one argument the user had given."""
    result = restore(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert missing in " ".join(result.stderr.replace("│", " ").split())


def test_max_memory_sizes_and_refusals(tmp_path):
    from cli.options import parse_memory_size

    assert [parse_memory_size(text) for text in ("4G", "512m", "1.5GiB", "2048MB", "3 T")] == [
        4 * 2**30, 512 * 2**20, 3 * 2**29, 2 * 2**30, 3 * 2**40]
    for text, cause in (("4000", "'4000' is less than a megabyte; give a unit, e.g. 4000M or 4000G"),
                        ("4X", "expected a size such as 4G, 512M or 1.5GiB, got '4X'")):
        with pytest.raises(ValueError, match=re.escape(cause)):
            parse_memory_size(text)
    image = str(SAMPLES / "input" / "camera.png")
    unitless = restore("derain", image, str(tmp_path / "out"), "--max-memory", "4000")
    assert unitless.returncode == 2 and "error: --max-memory: '4000' is less than a megabyte" in unitless.stderr
    both = restore("derain", image, str(tmp_path / "out"), "--max-memory", "1G", "--tile", "512")
    assert both.returncode == 2 and "--tile fixes the tile size and --max-memory picks one to fit: give one of them" in both.stderr
    assert not (tmp_path / "out").exists()
    tight = restore("derain", image, str(tmp_path / "out"), "--max-memory", "12M")
    assert tight.returncode == 0, tight.stderr
    assert "--max-memory allows 0.012 GiB: restoring it in tiles of" in tight.stderr
    assert (tmp_path / "out" / "camera.png").exists()
