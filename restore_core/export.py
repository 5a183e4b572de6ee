"""Export a model to ONNX, for onnxruntime, TensorRT, OpenCV's DNN module, chaiNNer.

The exported graph does what ``restore`` does to one whole image, so that it takes any
size: it pads the image at the bottom and right by reflection to the model's size
multiple, runs the network, crops back, and runs the model's whole-image step where it
has one (a dehazer's scattering-model recomposition). Its input ``image`` is N x 3 x H x
W float32 RGB in [0, 1]; its output ``restored`` the same. A denoiser that takes a noise
level gets a second input, ``noise_level`` (N,), on the 0-255 scale, NaN for its blind
path: the per-image estimate of ``--sigma auto`` reads values while it runs, which a
graph cannot. An all-in-one ADMS model chooses its filters per image by its classifier
and is not exported.

The file is written by PyTorch's TorchScript-based exporter (fast, and dynamic in batch,
height and width), with the model's name, task, architecture, config and source sha256
in its metadata, and checked with onnxruntime when it is installed: the graph against
the PyTorch model on images of two sizes. Exports need the ``onnx`` package
(``pip install 'restore[onnx]'``, which brings onnxruntime too).
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from restore_core.checkpoint import ModelDescriptor
from restore_core.engine.tiling import pad_to_multiple
from restore_core.io.files import atomic_write_bytes

ONNX_MISSING = "exporting to ONNX needs the onnx package: pip install 'restore[onnx]'"
DEFAULT_OPSET = 17
CHECK_SIZES = ((1, 67, 101), (2, 40, 64))  # (batch, height, width) the graph is checked on: odd sizes, padded
CHECK_TOLERANCE = 1e-3  # largest difference from PyTorch allowed, on the [0, 1] scale (fp32 graphs agree to ~1e-6)


class ExportError(Exception):
    """A model that cannot be exported, or an export that failed its check: one line."""


def onnx_available() -> bool:
    return importlib.util.find_spec("onnx") is not None


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


class WholeImage(nn.Module):
    """``model`` as ``restore`` runs it on one whole image: reflection-padded to
    ``multiple``, cropped back, then its whole-image step (``finish``) if it has one;
    with ``takes_noise_level``, the level is a second input."""

    def __init__(self, model: nn.Module, multiple: int, takes_noise_level: bool) -> None:
        super().__init__()
        self.model = model
        self.multiple = multiple
        self.takes_noise_level = takes_noise_level
        self.finishes = hasattr(model, "finish")
        if self.finishes:
            model.finish_in_forward = False  # once, on the cropped whole image, as the engine does

    def forward(self, image: torch.Tensor, noise_level: torch.Tensor | None = None) -> torch.Tensor:
        padded, (height, width) = pad_to_multiple(image, self.multiple)  # traced as the example needs it: by reflection
        out = self.model(padded, noise_level) if self.takes_noise_level else self.model(padded)
        out = out[..., :height, :width]
        return self.model.finish(image, out) if self.finishes else out


@dataclass
class ExportReport:
    path: Path
    inputs: list[str]
    opset: int
    max_difference: float | None  # against PyTorch on CHECK_SIZES; None: onnxruntime is not installed
    bytes: int


def _exportable(descriptor: ModelDescriptor) -> tuple[nn.Module, bool]:
    """A copy of the model to trace (the descriptor's own stays as it runs), and whether
    it takes a noise level; an ADMS model is refused."""
    if hasattr(descriptor.model, "set_degradation"):
        raise ExportError(f"{descriptor.name}: an all-in-one ADMS model picks its filters per image by its classifier, "
                          "which an ONNX graph cannot follow; export the single-task models instead")
    model = copy.deepcopy(descriptor.model).float().cpu().eval()
    takes_noise_level = bool(getattr(model, "takes_noise_level", False))
    if takes_noise_level:
        model.set_sigma("blind")  # the graph's noise_level input decides; no estimate inside
    return model, takes_noise_level


def _example(batch: int, height: int, width: int, takes_noise_level: bool) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(batch * 1000 + height + width)
    image = torch.rand(batch, 3, height, width, generator=generator)
    return (image, torch.full((batch,), 25.0)) if takes_noise_level else (image,)


def _reference(graph: nn.Module, args: tuple[torch.Tensor, ...]) -> np.ndarray:
    with torch.no_grad():
        return graph(*args).numpy()


def _metadata(descriptor: ModelDescriptor, inputs: list[str]) -> dict[str, str]:
    return {
        "restore_model": descriptor.name, "task": descriptor.task, "architecture": descriptor.architecture,
        "config": json.dumps(descriptor.config), "source_sha256": descriptor.sha256,
        "inputs": ("image: N x 3 x H x W float32 RGB in [0, 1]"
                   + ("; noise_level: N float32, 0-255 scale, NaN = blind" if "noise_level" in inputs else "")),
        "output": "restored: N x 3 x H x W float32 RGB in [0, 1]",
        "size_multiple": str(descriptor.size_multiple),
        "minimum_side": str(minimum_side(descriptor.size_multiple)),
        "settings": json.dumps({name: value for name, value in descriptor.settings.items() if name != "sigma"}),
    }


def max_difference(encoded: bytes, graph: nn.Module, inputs: list[str], takes_noise_level: bool) -> float:
    """The largest difference between onnxruntime's run of the ``encoded`` ONNX model and
    the PyTorch ``graph``, over :data:`CHECK_SIZES`."""
    import onnxruntime

    session = onnxruntime.InferenceSession(encoded, providers=["CPUExecutionProvider"])
    worst = 0.0
    for size in CHECK_SIZES:
        args = _example(*size, takes_noise_level)
        out = session.run(None, {name: value.numpy() for name, value in zip(inputs, args)})[0]
        worst = max(worst, float(np.abs(out - _reference(graph, args)).max()))
    return worst


def export_onnx(descriptor: ModelDescriptor, out: os.PathLike | str, opset: int = DEFAULT_OPSET) -> ExportReport:
    """Write ``descriptor``'s model to ``out`` as ONNX (module docstring), atomically, and
    check it where onnxruntime is installed; a graph that disagrees is not written."""
    if not onnx_available():
        raise ExportError(ONNX_MISSING)
    import onnx

    out = Path(out)
    model, takes_noise_level = _exportable(descriptor)
    graph = WholeImage(model, max(1, descriptor.size_multiple), takes_noise_level).eval()
    inputs = ["image", "noise_level"] if takes_noise_level else ["image"]
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, "restored": {0: "batch", 2: "height", 3: "width"}}
    if takes_noise_level:
        axes["noise_level"] = {0: "batch"}
    try:
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes read as Python numbers: the check below runs other sizes
            torch.onnx.export(graph, _example(*CHECK_SIZES[0], takes_noise_level), buffer, dynamo=False,
                              opset_version=opset, input_names=inputs, output_names=["restored"], dynamic_axes=axes)
        proto = onnx.load_from_string(buffer.getvalue())
    except Exception as exc:  # noqa: BLE001 - the exporter's failures are many kinds; the user gets one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ExportError(f"{descriptor.name}: the ONNX export failed ({type(exc).__name__}: {first})") from exc
    for key, value in _metadata(descriptor, inputs).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"restore's {descriptor.name} ({descriptor.task}), exported whole-image: pad, network, crop"
    encoded = proto.SerializeToString()
    difference = max_difference(encoded, graph, inputs, takes_noise_level) if onnxruntime_available() else None
    if difference is not None and not difference <= CHECK_TOLERANCE:
        raise ExportError(f"{descriptor.name}: the exported graph differs from the PyTorch model by {difference:.3g} "
                          f"(more than {CHECK_TOLERANCE:g}); not written")
    atomic_write_bytes(out, encoded)
    return ExportReport(out, inputs, opset, difference, len(encoded))


def minimum_side(multiple: int) -> int:
    """The smallest image side the graph takes: reflection pads by less than the side,
    and a side s under the multiple m is padded by m - s."""
    return multiple // 2 + 1 if multiple > 1 else 1
