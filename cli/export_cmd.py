"""``restore export``: a model as an ONNX file (restore_core.export)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli import completion
from cli.console import fail, os_cause, say, warn


def export(
    model: str = typer.Argument(..., metavar="MODEL", autocompletion=completion.models, help="A preset with weights or a .safetensors file."),
    out: Path = typer.Argument(..., metavar="OUT", help="The .onnx file to write."),
    opset: int = typer.Option(17, "--opset", min=11, help="ONNX opset version."),
    iterations: Optional[int] = typer.Option(None, "--iterations", help="Golf Optimizer: taps of G in the graph (as restore deblur --iterations)."),
    darken_only: Optional[bool] = typer.Option(None, "--darken-only/--no-darken-only", help="Derainers: output never brighter than the input, or not (as restore derain)."),
    recompose_radius: Optional[int] = typer.Option(None, "--recompose-radius", help="Dehazers: scattering-model recomposition radius (as restore dehaze; 0 = off)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Export a model to ONNX, for onnxruntime, TensorRT or OpenCV: any image size, as restore runs it.

    The graph pads each image to the model's size multiple, runs it, crops back (and
    recomposes a dehazer's output): input image N x 3 x H x W float32 RGB in [0, 1];
    a denoiser told a level also takes noise_level (N,), 0-255, NaN for blind. Checked
    against PyTorch with onnxruntime where it is installed.

    Examples:

        restore export taylor-derain derain.onnx

        restore export runs/denoise/best.safetensors denoise.onnx --opset 18

        restore export golf-deblur deblur.onnx --iterations 3
    """
    # The paths first, torch (about 1 s) after: a mistake is answered at once.
    if out.suffix.lower() != ".onnx":
        fail(f"{out}: the output must be an .onnx file", code=2)
    if out.exists() and not overwrite:
        fail(f"{out} already exists; pass --overwrite", code=2)

    from restore_core.checkpoint import CheckpointError
    from restore_core.export import CHECK_SIZES, ONNX_MISSING, ExportError, export_onnx, minimum_side, onnx_available

    if not onnx_available():
        fail(ONNX_MISSING, code=2)
    from restore_core.presets import resolve_model

    settings = {"iterations": iterations, "darken_only": darken_only, "recompose_radius": recompose_radius}
    try:
        descriptor = resolve_model(model, None, "cpu")
        for name, value in settings.items():
            if value is not None and (caution := descriptor.apply_setting(name, value)):
                warn(caution)
    except CheckpointError as exc:
        fail(str(exc), code=2)
    try:
        report = export_onnx(descriptor, out, opset)
    except ExportError as exc:
        fail(str(exc), code=1)
    except OSError as exc:
        fail(f"{out}: cannot write: {os_cause(exc)}", code=1)
    print(report.path)
    sizes = " and ".join(f"{batch} x {height}x{width}" for batch, height, width in CHECK_SIZES)
    checked = (f"onnxruntime agrees with PyTorch to {report.max_difference:.1g} on {sizes}" if report.max_difference is not None
               else "not checked: pip install onnxruntime to compare it with PyTorch")
    say(f"exported {descriptor.name} -> {report.path} ({report.bytes / 2**20:.1f} MiB, opset {report.opset}; inputs: "
        f"{', '.join(report.inputs)}; images of at least {minimum_side(descriptor.size_multiple)} pixels a side); {checked}")
