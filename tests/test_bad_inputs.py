"""The bad-input corpus: every file is made here (nothing is committed), run
through ``restore derain`` in one batch, and each outcome is checked.

README.md ("What happens with bad inputs") lists the same cases; keep the two in step.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import write_random_pngs
from test_cli import restore

GOOD = {  # name -> (height, width) of an input that must be restored
    "good.png": (24, 32),
    "cmyk.jpg": (24, 32),
    "palette.png": (24, 32),
    "deep16.png": (24, 32),
    "deep16.tif": (24, 32),
    "one.png": (1, 1),
    "three.png": (3, 3),
    "with space.png": (24, 32),
    "ünïcødé.png": (24, 32),
}
BAD = {  # name -> words the one-line error must contain
    "zero.png": "empty file",
    "truncated.png": "cannot decode",
    "truncated.jpg": "cannot decode",
    "text.png": "cannot decode",
    "huge-header.png": "over the limit",
    "gone.png": "a broken link (to",  # was "No such file or directory", of a file ls shows
}
if hasattr(os, "mkfifo"):
    BAD["pipe.png"] = "is a named pipe (FIFO), not an image file"  # opening it waited for ever: the batch hung


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height pixels (8-bit RGB)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + _png_chunk(b"IEND", b"")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    png = cv2.imencode(".png", image)[1].tobytes()
    jpg = cv2.imencode(".jpg", image)[1].tobytes()
    cv2.imwrite(str(folder / "good.png"), image)
    Image.fromarray(image).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(image).convert("P").save(folder / "palette.png")
    cv2.imwrite(str(folder / "deep16.png"), image.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "deep16.tif"), image.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "one.png"), image[:1, :1])
    cv2.imwrite(str(folder / "three.png"), image[:3, :3])
    cv2.imwrite(str(folder / "with space.png"), image)
    (folder / "ünïcødé.png").write_bytes(png)
    (folder / "zero.png").write_bytes(b"")
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (folder / "text.png").write_text("not an image\n")
    (folder / "huge-header.png").write_bytes(huge_png_header(50_000, 50_000))
    (folder / "folder.png").mkdir()  # a directory named like an image
    (folder / "sub").mkdir()
    os.symlink("..", folder / "sub" / "loop")  # a symlink loop inside a recursive folder
    os.symlink(folder / "moved-away.png", folder / "gone.png")  # a link whose file is gone
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "pipe.png")  # no writer: reading it would wait for ever
    if sys.platform != "darwin":  # macOS refuses non-UTF-8 file names
        with open(os.path.join(os.fsencode(folder), b"bytes\xffname.png"), "wb") as handle:
            handle.write(png)
    return folder


def test_bad_input_corpus(corpus: Path, tmp_path: Path, tiny_checkpoint: Path):
    out = tmp_path / "out"
    result = restore("derain", str(corpus), str(out), "-r", "--model", str(tiny_checkpoint), "--json")
    assert result.returncode == 1, result.stderr  # some inputs failed, the batch went on
    records = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    for name, (height, width) in GOOD.items():
        assert records[name]["status"] == "ok", (name, records[name])
        restored = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert restored is not None and restored.shape[:2] == (height, width), name
    assert cv2.imread(str(out / "deep16.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert cv2.imread(str(out / "deep16.tif"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    if sys.platform != "darwin":
        assert os.path.isfile(os.path.join(os.fsencode(out), b"bytes\xffname.png"))
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    for name, cause in BAD.items():
        assert records[name]["status"] == "error" and cause in records[name]["error"], (name, records[name])
        assert not (out / name).exists(), f"{name}: an output was left for a failed input"
        assert any(name in line and cause in line for line in error_lines), name
    assert len(error_lines) == len(BAD)  # one line per bad file, nothing else (no library warnings)
    # the symlink loop was not followed into a second copy of the folder
    assert not (out / "sub").exists() or not any((out / "sub").rglob("*.png"))
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_a_folder_lists_no_folder_named_like_an_image_and_reports_special_files(corpus: Path):
    """Without --recursive a folder's sub-folders are left alone, "folder.png" too (it was
    an input, then an error); a named pipe is an input, refused unopened when read."""
    from restore_core.engine.inputs import collect_inputs
    from restore_core.io.images import ImageError, read_image

    names = {job.source.name for job in collect_inputs(str(corpus))}
    assert "folder.png" not in names and "good.png" in names
    if hasattr(os, "mkfifo"):
        assert "pipe.png" in names
        with pytest.raises(ImageError, match="pipe.png: is a named pipe"):
            read_image(corpus / "pipe.png")


def test_directory_named_like_an_image_given_directly(corpus: Path, tmp_path: Path, tiny_checkpoint: Path):
    result = restore("derain", str(corpus / "folder.png"), str(tmp_path / "out"), "--model", str(tiny_checkpoint))
    assert result.returncode == 2 and "folder.png" in result.stderr and "no images" in result.stderr


def test_max_pixels_is_configurable(corpus: Path, tmp_path: Path, tiny_checkpoint: Path):
    result = restore("derain", str(corpus / "good.png"), str(tmp_path / "out"), "--model", str(tiny_checkpoint), "--max-pixels", "100")
    assert result.returncode == 1 and "over the limit of 100" in result.stderr
    assert not (tmp_path / "out" / "good.png").exists()


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root reads any file")
def test_unreadable_file(corpus: Path, tmp_path: Path, tiny_checkpoint: Path):
    target = corpus / "good.png"
    target.chmod(0)
    result = restore("derain", str(target), str(tmp_path / "out"), "--model", str(tiny_checkpoint))
    assert result.returncode == 1 and "good.png" in result.stderr and "ermission" in result.stderr


def test_output_folder_that_is_a_file_or_cannot_be_written(corpus: Path, tmp_path: Path, tiny_checkpoint: Path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    result = restore("derain", str(corpus / "good.png"), str(a_file), "--model", str(tiny_checkpoint))
    assert result.returncode == 2 and "a-file: the output folder exists and is not a folder" in result.stderr
    # a folder below a file can never be made: said before any image is restored, exit 2
    result = restore("derain", str(corpus / "good.png"), str(a_file / "sub"), "--model", str(tiny_checkpoint))
    assert result.returncode == 2 and f"{a_file} is a file, so no folder can be made there" in result.stderr
    if Path("/proc/self").is_dir():  # Linux: a folder where nothing can be written, found on writing: each image fails, exit 1
        result = restore("derain", str(corpus / "good.png"), "/proc/restore-out", "--model", str(tiny_checkpoint))
        # the input and the output it could not write, both named (it said "good.png: cannot write: No such file ...")
        assert result.returncode == 1 and "good.png: cannot write /proc/restore-out/good.png: " in result.stderr, result.stderr


def test_two_processes_writing_one_folder_leave_only_complete_files(tmp_path: Path, tiny_checkpoint: Path):
    folder = tmp_path / "in"
    write_random_pngs(folder, 12, 64, 64, seed=1)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [sys.executable, "-m", "cli.main", "derain", str(folder), str(out), "--model", str(tiny_checkpoint), "--overwrite", "-q"]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()
    written = sorted(p.name for p in out.iterdir())
    assert written == [f"{i:02d}.png" for i in range(12)]  # no temporary files left over
    for name in written:
        assert cv2.imread(str(out / name)).shape == (64, 64, 3)


def _batch_of_40(tmp_path: Path) -> tuple[list[str], dict, Path]:
    """A `restore derain` command over 40 256x256 images with a small random U-Net (long
    enough to stop part-way), its environment, and its output folder."""
    from restore_core.checkpoint import save_checkpoint
    from restore_core.models import build_model

    config = {"width": 16, "levels": 2, "blocks_per_level": [2, 2], "bottleneck_blocks": 2}
    model_path = save_checkpoint(tmp_path / "m.safetensors", build_model("unet", config), "unet", config, "derain")
    write_random_pngs(tmp_path / "in", 40, 256, 256, seed=2)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return [sys.executable, "-m", "cli.main", "derain", str(tmp_path / "in"), str(out), "--model", str(model_path)], env, out


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_interrupt_leaves_no_partial_file_and_skip_existing_finishes(tmp_path: Path, signal_number):
    command, env, out = _batch_of_40(tmp_path)
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The first output on disk: the batch is under way. (Not a readline of stdout: its
    # buffer may hold the next lines too, which communicate() would then not return.)
    deadline = time.monotonic() + 120
    while not (out / "00.png").exists() and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.02)
    run.send_signal(signal_number)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr
    assert "interrupted:" in stderr and "--skip-existing" in stderr
    written = sorted(p.name for p in out.iterdir())
    assert all(not name.startswith(".") for name in written), written  # no temporary file left behind
    assert 1 <= len(written) < 40
    for name in written:
        assert cv2.imread(str(out / name)).shape == (256, 256, 3)  # every file left is complete
    # stdout names every file the run wrote, those whose writes finished after the signal too
    assert sorted(Path(line).name for line in stdout.splitlines()) == written
    assert f"interrupted: {len(written)} of 40 input(s) written" in stderr
    finish = subprocess.run([*command, "--skip-existing", "-q"], env=env, capture_output=True, text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{i:02d}.png" for i in range(40)]


@pytest.mark.parametrize("stderr_too", [False, True], ids=["stdout", "stdout-and-stderr"])
def test_a_reader_that_leaves_stops_the_batch_with_status_141_and_only_whole_files(tmp_path: Path, stderr_too: bool):
    """`restore derain in/ out/ | head -1`: typer turned the broken pipe into a silent exit
    status 1, though the batch had stopped part-way. Now it stops like a Unix tool (141),
    says on stderr how many were written, and leaves only whole files. With stderr in the
    same pipe (`2>&1 | head -1`) Rich's own exit status 1 came first; now 141 too."""
    command, env, out = _batch_of_40(tmp_path)
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT if stderr_too else subprocess.PIPE, text=True)
    first = run.stdout.readline()  # with stderr too, it may be a hint
    run.stdout.close()  # as `head -1` does
    stderr = "" if stderr_too else run.stderr.read()
    assert run.wait(timeout=120) == 141, stderr
    written = sorted(p.name for p in out.iterdir())
    assert 1 <= len(written) < 40
    assert all(cv2.imread(str(out / name)).shape == (256, 256, 3) for name in written)  # no temporary file, none partial
    if not stderr_too:
        assert Path(first.strip()).name == "00.png"
        assert f"stopped: stdout was closed by its reader; {len(written)} of 40 input(s) written" in stderr
        assert "Traceback" not in stderr


def _stream_of_random_images(tmp_path: Path, checkpoint: Path, via: str, count: int, side: int, seed: int):
    """The engine's result stream (``via``: restore_stream, or restore_jobs around it)
    over ``count`` random side x side images into tmp_path/out, and that folder."""
    import torch

    from restore_core.checkpoint import load_checkpoint
    from restore_core.engine.batch import restore_jobs
    from restore_core.engine.inputs import Job
    from restore_core.engine.runner import Restorer, RunOptions, restore_stream

    paths = write_random_pngs(tmp_path / "in", count, side, side, seed=seed)
    out = tmp_path / "out"
    jobs = [Job(p, Path(p.name), out / p.name) for p in paths]
    restorer = Restorer(load_checkpoint(checkpoint), torch.device("cpu"), "fp32")
    return (restore_stream(jobs, restorer, RunOptions()) if via == "restore_stream" else restore_jobs(jobs, restorer, RunOptions())), out


@pytest.mark.parametrize("via", ["restore_stream", "restore_jobs"])
def test_an_interrupt_in_the_caller_still_reports_the_writes_that_finished(tmp_path: Path, tiny_checkpoint: Path, via: str,
                                                                            monkeypatch):
    """Ctrl-C while the caller handles a result (not inside the stream): the stream,
    told of it, reports each image whose write finished, and every file on disk is one
    of the results reported."""
    import threading
    import time

    from restore_core.engine import runner
    from restore_core.engine.runner import finish_interrupted

    write_image = runner.write_image
    writes_begun = []
    second_write_begun = threading.Event()

    def slow_write(*args, **kwargs):
        """Writes slower than the model, and the first finishes only once the second has
        begun (two writer threads): the second is under way when the first is reported,
        however slowly a loaded machine runs the model (it failed once, the model starved)."""
        writes_begun.append(1)
        if len(writes_begun) == 1:
            second_write_begun.wait(timeout=30)
        else:
            second_write_begun.set()
        time.sleep(0.2)
        return write_image(*args, **kwargs)

    monkeypatch.setattr(runner, "write_image", slow_write)

    stream, out = _stream_of_random_images(tmp_path, tiny_checkpoint, via, count=12, side=96, seed=3)
    reported = [next(stream)]
    reported += list(finish_interrupted(stream))  # the interrupt delivered at the stream's yield
    assert len(reported) >= 2  # the image restored after the first was being written: it finishes and is named
    assert all(r.status == "ok" for r in reported)
    assert sorted(p.name for p in out.iterdir()) == sorted(r.output.name for r in reported)
    assert list(finish_interrupted(stream)) == []  # a stream that ended has nothing more
    with pytest.raises(StopIteration):
        next(stream)


@pytest.mark.parametrize("via", ["restore_stream", "restore_jobs"])
def test_an_interrupt_right_after_a_result_leaves_the_queue_still_names_it(tmp_path: Path, tiny_checkpoint: Path, via: str,
                                                                          monkeypatch):
    """A signal handled just as the stream takes a finished write off its queue (the
    moment its file appears on disk, when a user presses Ctrl-C): the result is still
    named. It was lost when the stream took it off before handing it over (a file on
    disk that stdout never named: the SIGINT and SIGTERM interrupt tests failed so twice
    on a loaded machine)."""
    from restore_core.engine import runner
    from restore_core.engine.runner import finish_interrupted

    class SignalAfterFirstResult(runner.deque):
        """The queues of the stream; the first result taken off raises KeyboardInterrupt
        right after, as Python runs a signal handler once the C call has returned."""
        signalled = False

        def popleft(self):
            item = super().popleft()
            if not isinstance(item, tuple) and not SignalAfterFirstResult.signalled:  # a result, not a (job, read)
                SignalAfterFirstResult.signalled = True
                raise KeyboardInterrupt
            return item

    monkeypatch.setattr(runner, "deque", SignalAfterFirstResult)
    stream, out = _stream_of_random_images(tmp_path, tiny_checkpoint, via, count=4, side=64, seed=4)
    reported = []
    with pytest.raises(KeyboardInterrupt):
        for result in stream:  # as the command's loop: report each, and on an interrupt the writes that finished
            reported.append(result)
    reported += finish_interrupted(stream)
    assert SignalAfterFirstResult.signalled
    written = sorted(p.name for p in out.iterdir())
    assert written and sorted(r.output.name for r in reported) == written


def test_permission_error_is_reported_with_its_cause(tmp_path: Path, monkeypatch):
    """Runs as root too (where chmod 0 does not stop reads): the OS error is simulated."""
    from restore_core.io.images import ImageError, read_image

    path = tmp_path / "locked.png"
    path.write_bytes(b"x")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(ImageError, match=r"locked\.png: Permission denied"):
        read_image(path)


# Makes every output write but those of 00.png and 01.png fail as a full disk does
# (mkstemp succeeds, the bytes do not fit), whatever order the writer threads run in;
# other files (caches of a fresh environment) are left alone. Loaded by the CLI
# subprocess through PYTHONPATH.
FULL_DISK_HOOK = '''
import errno, os, tempfile
_real_mkstemp, _real_fdopen, _full = tempfile.mkstemp, os.fdopen, set()
def _mkstemp(*args, **kwargs):
    fd, name = _real_mkstemp(*args, **kwargs)
    if kwargs.get("suffix") == ".part" and not os.path.basename(name).startswith((".00.png.", ".01.png.")):
        _full.add(fd)
    return fd, name
def _fdopen(fd, mode="r", *args, **kwargs):
    handle = _real_fdopen(fd, mode, *args, **kwargs)
    if fd in _full:
        _full.discard(fd)
        real_write = handle.write
        def write(data):
            real_write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        handle.write = write
    return handle
tempfile.mkstemp, os.fdopen = _mkstemp, _fdopen
'''


def test_a_full_disk_stops_the_batch_and_leaves_only_complete_files(tmp_path: Path, tiny_checkpoint: Path):
    """The third image's write meets ENOSPC: that image is an error, the rest are reported
    as not restored without running the model on all of them, one line says why, exit 1."""
    folder = tmp_path / "in"
    write_random_pngs(folder, 30, 32, 32, seed=3)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FULL_DISK_HOOK)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{hook}{os.pathsep}{Path(__file__).resolve().parent.parent}"}
    run = subprocess.run([sys.executable, "-m", "cli.main", "derain", str(folder), str(out), "--model", str(tiny_checkpoint), "--json"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(lines) == 30  # every input has its line
    assert [line["status"] for line in lines[:2]] == ["ok", "ok"]
    assert lines[2]["status"] == "error" and "No space left on device" in lines[2]["error"]
    not_restored = [line for line in lines if line["error"] and line["error"].startswith("not restored")]
    assert len(not_restored) >= 15 and lines[-1] in not_restored  # the model stopped well before the end
    assert sorted(p.name for p in out.iterdir()) == ["00.png", "01.png"]  # no partial or temporary file
    stopped = [line for line in run.stderr.splitlines() if "stopped:" in line]
    assert len(stopped) == 1 and f"{len(not_restored)} image(s) not restored" in stopped[0] and "--skip-existing" in stopped[0]
    assert not any(line.count("not restored: an earlier output") for line in run.stderr.splitlines())  # one line, not one per image
