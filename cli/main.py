"""The ``restore`` Typer app: one sub-command per job, all over restore_core."""

from __future__ import annotations

import atexit
import gc
import os
import sys

import typer

from cli.attribute_cmd import attribute_filters
from cli.benchmark_cmd import benchmark
from cli.console import OUTPUT_CLOSED_STATUS, OutputClosed
from cli.convert_cmd import convert
from cli.export_cmd import export
from cli.models_cmd import models
from cli.options import Command
from cli.pairs_cmd import make_pairs_command
from cli.restore_cmd import make_restore_command
from cli.train_cmd import train

app = typer.Typer(
    name="restore",
    help="Deep-learning image restoration for folders of photos: derain, deblur, denoise, dehaze or detect (auto); train and benchmark models.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    """The version, and what a bug report needs beside it: Python, torch (its build says
    CPU or CUDA) and OpenCV, and the formats this install reads and writes."""
    if value:
        import platform
        from importlib.metadata import PackageNotFoundError, version

        from restore_core.io.animations import ANIMATION_FORMATS
        from restore_core.io.images import READ_AS_PNG_EXTENSIONS, READ_ONLY_EXTENSIONS, SUPPORTED_EXTENSIONS
        from restore_core.io.video import DEEP_ENCODER, READ_ONLY_VIDEO_EXTENSIONS, WRITABLE_VIDEO_EXTENSIONS, encoder_available, pyav_available

        def installed(package: str) -> str:
            try:
                return version(package)
            except PackageNotFoundError:
                return "not installed"

        print(f"restore {installed('restore')}")
        print(f"python {platform.python_version()}, torch {installed('torch')}, opencv {installed('opencv-python-headless')}")
        images = " ".join(ext.lstrip(".") for ext in SUPPORTED_EXTENSIONS)
        images += " (read only, written as png: " + " ".join(ext.lstrip(".") for ext in READ_AS_PNG_EXTENSIONS) + ")"
        if ".heic" not in SUPPORTED_EXTENSIONS:
            images += " (heic: pip install 'restore[heic]')"
        if ".jxl" not in SUPPORTED_EXTENSIONS:
            images += " (jxl: pip install 'restore[jxl]')"
        if READ_ONLY_EXTENSIONS:
            images += f" (read only, developed by LibRaw, rawpy {installed('rawpy')}: camera raw, " + " ".join(ext.lstrip(".") for ext in READ_ONLY_EXTENSIONS) + ")"
        else:
            images += " (camera raw: pip install 'restore[raw]')"
        print(f"images: {images}")
        print("many pictures in one file, restored each: multi-page tif tiff; animated "
              + " ".join(ext.lstrip(".") for ext in ANIMATION_FORMATS))
        videos = " ".join(ext.lstrip(".") for ext in WRITABLE_VIDEO_EXTENSIONS)
        videos += " (read only: " + " ".join(ext.lstrip(".") for ext in READ_ONLY_VIDEO_EXTENSIONS) + ")"
        if pyav_available():
            deep = "10-bit HEVC" if encoder_available(DEEP_ENCODER) else f"8 bits only: no {DEEP_ENCODER}"
            print(f"videos: {videos} (PyAV {installed('av')}; videos of 10 bits and more written as {deep})")
        else:
            print("videos: none (pip install 'restore[video]')")
        onnx, runtime = installed("onnx"), installed("onnxruntime")
        print("export: " + (f"ONNX (onnx {onnx}, checked by onnxruntime {runtime})" if onnx != "not installed" and runtime != "not installed"
                            else f"ONNX, unchecked (onnx {onnx}; pip install onnxruntime)" if onnx != "not installed"
                            else "none (pip install 'restore[onnx]')"))
        board = installed("tensorboard")
        print("training logs: log.csv" + (f", TensorBoard {board}" if board != "not installed" else " (TensorBoard: pip install 'restore[tensorboard]')"))
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version, those of Python, torch and OpenCV, the image and video formats this install handles, and its optional exports and training logs; exit."),
) -> None:
    """Deep-learning image restoration for folders of photos."""


app.command("derain", cls=Command)(make_restore_command("derain", "Remove rain streaks from"))
app.command("deblur", cls=Command)(make_restore_command("deblur", "Remove motion blur from"))
app.command("denoise", cls=Command)(make_restore_command("denoise", "Remove noise from"))
app.command("dehaze", cls=Command)(make_restore_command("dehaze", "Remove haze from"))
app.command("auto", cls=Command)(make_restore_command("auto", "Detect the degradation of each image (rain, blur, noise, haze) and restore"))
app.command("train", cls=Command)(train)
app.command("models", cls=Command)(models)
app.command("benchmark", cls=Command)(benchmark)
app.command("make-pairs", cls=Command)(make_pairs_command)
app.command("convert", cls=Command)(convert)
app.command("export", cls=Command)(export)
app.command("attribute-filters", cls=Command)(attribute_filters)


def open_closed_standard_streams() -> None:
    """A standard stream closed by the caller (`restore derain - out/ <&-`, a daemon's
    `>&-`) is opened on /dev/null: Python leaves ``sys.stdin`` None (reading it was an
    AttributeError traceback), and a file opened later would take the free number 0, 1
    or 2, where a child process (FFmpeg) or a library would then write."""
    for number, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(number)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # takes the lowest free number: this one, the lower ones being open by now
        if getattr(sys, name) is None:
            setattr(sys, name, open(number, "r" if number == 0 else "w", closefd=False))


def skip_the_last_garbage_collection() -> None:
    """Run at exit, after every other exit handler (it is registered before them): the
    garbage collector stops and sets aside what it tracks (``gc.freeze``), so that
    Python's finalization no longer walks torch's hundreds of thousands of objects for
    reference cycles. Files are still closed, handlers and threads still finish, each
    object is still released by its count; the memory of cycles goes back to the
    system with the process. Measured: half a second at the end of every command."""
    gc.disable()
    gc.freeze()


def main() -> None:
    atexit.register(skip_the_last_garbage_collection)
    open_closed_standard_streams()
    try:
        app()
    except OutputClosed:  # stdout or stderr met a closed pipe outside the batch loop (--dry-run, --json, the summary)
        sys.exit(OUTPUT_CLOSED_STATUS)


if __name__ == "__main__":
    main()
