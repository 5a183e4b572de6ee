"""The explicit table of model presets, and how ``--model`` is resolved.

A preset names an architecture, its config, the task it is for and (when this
project has trained one) a weight file in ``weights/`` with its sha256, checked
on load. ``--model`` takes a preset name or a path to a ``.safetensors`` file.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from restore_core.configs import did_you_mean
from restore_core.tasks import TASK_DEGRADATION

# The table below is plain data, and the CLI reads it to write its help: the
# loaders import torch and the models when called, so that `restore --help`
# does not wait a second for torch.
if TYPE_CHECKING:
    from restore_core.checkpoint import ModelDescriptor


@dataclass(frozen=True)
class Preset:
    name: str
    task: str
    architecture: str
    config: dict[str, Any]
    description: str
    weights: str | None = None  # file name in the weights folder
    sha256: str | None = None

    def parameters(self) -> int:
        from restore_core.models import build_skeleton, count_parameters

        return count_parameters(build_skeleton(self.architecture, self.config))

    def macs(self) -> int:
        """Multiply-accumulates of one forward pass on a 256 x 256 image (:mod:`restore_core.models.complexity`)."""
        from restore_core.models.complexity import architecture_macs

        return architecture_macs(self.architecture, self.config)


# Named model configs, used by the presets below and by the training recipes.
UNET_S = {"width": 16, "levels": 4, "blocks_per_level": [1, 1, 1, 2], "bottleneck_blocks": 2}
TAYLOR_UNET = {
    "mapping_architecture": "unet",
    "mapping": UNET_S,
    "derivative": {"image_channels": 3, "hidden_channels": 16},
    "order": 3,
    "eq17_term": False,
}
# The deraining model: rain streaks and the veil of heavy rain only add light, so its
# output is projected onto min(O, y) (models/taylor.py; no weights, no training change).
TAYLOR_DERAIN = {**TAYLOR_UNET, "darken_only": True}

# Golf Optimizer (SPEC §2.4). The paper's Table 1 networks, and this project's
# fast design for CPUs: F = the compact U-Net (its downsamplings give the large
# receptive field long blur kernels need), G = a 145k-parameter U-Net tapped 3 times.
GOLF_PAPER = {"first_architecture": "golf-net", "first": {"filters": 32}, "step_architecture": "golf-net", "step": {"filters": 16}, "iterations": 3}
GOLF_FAST = {
    "first_architecture": "unet",
    "first": UNET_S,
    "step_architecture": "unet",
    "step": {"width": 8, "levels": 3, "blocks_per_level": [1, 1, 1], "bottleneck_blocks": 1},
    "iterations": 3,
}

# Information-flow generator (SPEC §2.2). The paper's UNet-5 + InfoAccum-15 +
# SubPixUpsamp (17.0M parameters, batch norm, pix2pix tanh output), and this
# project's CPU design: 3 levels (Table I: denoising needs 2-3), a 4-layer
# InfoAccum, no normalisation, residual output (starts at the identity).
INFOFLOW_PAPER: dict[str, Any] = {"levels": 5, "info_accum": {"layers": 15, "growth": 4}, "subpixel_top": True}
INFOFLOW_S: dict[str, Any] = {
    "levels": 3,
    "base_filters": 32,
    "max_filters": 128,
    "info_accum": {"layers": 4, "growth": 4},
    "subpixel_top": True,
    "norm": "none",
    "residual": True,
}
# The dehazer: 5 levels (Table I: dehazing needs 4-5) and its output rebuilt from the
# input by the scattering model (models/scattering.py; no weights, radius and eps
# chosen on validation).
INFOFLOW_DEHAZE: dict[str, Any] = {
    **INFOFLOW_S, "levels": 5, "max_filters": 256,
    "recompose": {"radius": 40, "eps": 1e-3, "airlight": 1.0, "min_transmission": 0.1},
}
# The shipped denoiser: infoflow-s plus three full-resolution refinement heads in
# cascade (24, 48 and 64 channels) and a noise-level input (estimated, told ``--sigma`` or
# blind), each grown onto the previous weights by ``restore train --init``.
INFOFLOW_DENOISE: dict[str, Any] = {**INFOFLOW_S, "refine": 24, "noise_level": True, "refine_more": [48, 64]}

PRESETS: dict[str, Preset] = {
    "taylor-derain": Preset(
        name="taylor-derain",
        task="derain",
        architecture="taylor",
        config=TAYLOR_DERAIN,
        description="Taylor framework (order 3) around the compact U-Net, trained for rain removal; output never brighter than the input",
        weights="taylor-derain.safetensors",
        sha256="655988c7dfb18899c55434725c62281dadcbbab492d8fbcbc469dc492d70be6b",
    ),
    "unet-s": Preset(
        name="unet-s",
        task="any",
        architecture="unet",
        config=UNET_S,
        description="compact residual U-Net (16 channels, 4 downsamplings), the bare mapping network",
    ),
    "taylor-unet-s": Preset(
        name="taylor-unet-s",
        task="any",
        architecture="taylor",
        config=TAYLOR_UNET,
        description="Taylor framework, order 3, around unet-s (untrained architecture preset)",
    ),
    "golf-deblur": Preset(
        name="golf-deblur",
        task="deblur",
        architecture="golf",
        config={**GOLF_FAST, "iterations": 0},
        description="Golf Optimizer (golf-fast: U-Net F and G) trained for camera-shake motion blur; default N = 0 taps (see its card)",
        weights="golf-deblur.safetensors",
        sha256="4c4cb82a5792f08777fe48393b7d5325428124b097963632eaa35baa02965b0c",
    ),
    "golf-paper": Preset(
        name="golf-paper",
        task="deblur",
        architecture="golf",
        config=GOLF_PAPER,
        description="Golf Optimizer exactly as the paper's Table 1 (F 466,348 + G 120,188 parameters; untrained architecture preset)",
    ),
    "golf-fast": Preset(
        name="golf-fast",
        task="deblur",
        architecture="golf",
        config=GOLF_FAST,
        description="Golf Optimizer with U-Net F and G, this project's CPU design (untrained architecture preset)",
    ),
    "infoflow-denoise": Preset(
        name="infoflow-denoise",
        task="denoise",
        architecture="infoflow",
        config=INFOFLOW_DENOISE,
        description="infoflow-s + three full-resolution refinement heads, trained (L1, then MSE, then MSE + SSIM; CPU, then GPU) for Gaussian denoising, sigma 0-50: estimates each image's level in two looks (--sigma auto), or told it, or blind; above CBM3D on McMaster by default, on CBSD68 (float protocol) with --self-ensemble; 0.05 dB under DnCNN on BSD68 (infoflow-denoise-grey is for grey photos); see its card",
        weights="infoflow-denoise.safetensors",
        sha256="f2ee5ccd4c42ce6cf86c0249ad11133e9805df95dd04895b7ce2099a45e02f60",
    ),
    # The same shape fine-tuned on grey patches only (Train400, DnCNN-S's training set):
    # for greyscale photographs, where it is ahead of infoflow-denoise in SSIM
    # (and 5 dB behind it on colour ones).
    "infoflow-denoise-grey": Preset(
        name="infoflow-denoise-grey",
        task="denoise",
        architecture="infoflow",
        config=INFOFLOW_DENOISE,
        description="infoflow-denoise fine-tuned on grey patches only (MSE, then MSE + SSIM), for greyscale photographs (colour ones: infoflow-denoise, 5 dB better there); BSD68 with --self-ensemble, blind or told: above DnCNN in PSNR and SSIM; see its card",
        weights="infoflow-denoise-grey.safetensors",
        sha256="f12736659b531c874bbeda11a33c39ea2992d5511fdadd8fe59aa14f8ce35cc4",
    ),
    "infoflow-dehaze": Preset(
        name="infoflow-dehaze",
        task="dehaze",
        architecture="infoflow",
        config=INFOFLOW_DEHAZE,
        description="5-level information-flow generator trained (L1, then L1 + SSIM) on synthetic haze, its output recomposed by the scattering model; SOTS indoor: ahead of AOD-Net and DCP on all four numbers (DCP by 0.0013 in SSIM Y); see its card",
        weights="infoflow-dehaze.safetensors",
        sha256="55885de16842b539c1ebe6dbd9ef0dae50395555b9e00da8b0fa2e5a25204647",
    ),
    "adms": Preset(
        name="adms",
        task="all",
        architecture="adms",
        config={"base_architecture": "unet", "base": UNET_S},
        description="ADMS all-in-one (rain, blur, noise, haze) around unet-s: above its unified model, below the single-task models, see its card",
        weights="adms.safetensors",
        sha256="8cff1d9d057b0fe5b43fe22363824c5f064f94f884f2f3e8f3bc7aa05f0bfa4d",
    ),
    "infoflow-paper": Preset(
        name="infoflow-paper",
        task="any",
        architecture="infoflow",
        config=INFOFLOW_PAPER,
        description="UNet-5 + InfoAccum-15 + SubPixUpsamp as the paper's best model (untrained architecture preset)",
    ),
    "infoflow-s": Preset(
        name="infoflow-s",
        task="any",
        architecture="infoflow",
        config=INFOFLOW_S,
        description="UNet-3 + InfoAccum-4 + SubPixUpsamp, residual, this project's CPU design (untrained architecture preset)",
    ),
}

DEFAULT_MODEL_FOR_TASK: dict[str, str] = {
    "derain": "taylor-derain",
    "deblur": "golf-deblur",
    "denoise": "infoflow-denoise",
    "dehaze": "infoflow-dehaze",
    "auto": "adms",
}


def declared_task(spec: str) -> str | None:
    """The task model ``spec`` declares, read without loading it (nor importing torch):
    a preset's from the table, a checkpoint's from the metadata in its safetensors header
    (8 bytes of length, then JSON). None where it cannot be read: loading says why."""
    if spec in PRESETS:
        return PRESETS[spec].task
    try:
        with open(spec, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 2 <= length <= 100 * 2**20:
                return None
            header = json.loads(handle.read(length))
        task = header.get("__metadata__", {}).get("task")
    except (OSError, ValueError, AttributeError):
        return None
    return task if isinstance(task, str) else None


def weights_dirs() -> list[Path]:
    """Where shipped weights are looked up, in order."""
    dirs = []
    if os.environ.get("RESTORE_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["RESTORE_WEIGHTS_DIR"]))
    dirs.append(Path(__file__).resolve().parent.parent / "weights")  # source checkout / editable install
    dirs.append(Path(sys.prefix) / "share" / "restore" / "weights")  # regular install
    return dirs


def find_weights(file_name: str) -> Path | None:
    for folder in weights_dirs():
        candidate = folder / file_name
        if candidate.is_file():
            return candidate
    return None


def resolve_model(spec: str | None, task: str | None, device: str = "cpu") -> ModelDescriptor:
    """Load the model named by ``spec`` (preset name or file), or the task's default."""
    from restore_core.checkpoint import CheckpointError, file_sha256, load_checkpoint

    name = spec or DEFAULT_MODEL_FOR_TASK.get(task or "")
    if name is None:
        if task is None:
            raise CheckpointError("model", f"name a model (a preset: {', '.join(PRESETS)}; or a .safetensors file) or a task ({', '.join(DEFAULT_MODEL_FOR_TASK)})")
        raise CheckpointError(task, f"no default model for task {task!r}; pass --model")
    if name in PRESETS:
        preset = PRESETS[name]
        if preset.weights is None:
            raise CheckpointError(
                name, f"preset {name!r} is an architecture without trained weights; train one with 'restore train' and pass --model FILE"
            )
        path = find_weights(preset.weights)
        if path is None:
            searched = ", ".join(str(d) for d in weights_dirs())
            raise CheckpointError(preset.weights, f"weights of preset {name!r} not found (searched {searched})")
        if preset.sha256 and file_sha256(path) != preset.sha256:
            raise CheckpointError(path, "sha256 does not match the preset table: the file is corrupted or was replaced")
        return load_checkpoint(path, device, name=name)
    path = Path(name)
    if not path.exists() and not path.suffix:
        raise CheckpointError(name, f"unknown model{did_you_mean(name, PRESETS)}; presets: {', '.join(PRESETS)}, or a path to a .safetensors file")
    if not path.exists() and path.parent == Path(".") and (shipped := _preset_of_weights(path.name)):
        raise CheckpointError(name, f"no such checkpoint file here; the shipped weights of that name are the preset: --model {shipped}")
    return load_checkpoint(path, device)


def _preset_of_weights(file_name: str) -> str | None:
    """The preset whose shipped weight file is called ``file_name``, if any."""
    return next((name for name, preset in PRESETS.items() if preset.weights == file_name), None)


def load_for_task(spec: str | None, task: str | None, device: str = "cpu") -> ModelDescriptor:
    """:func:`resolve_model`, then point an all-in-one model at ``task``: a task
    command (``restore derain``) forces its degradation; ``auto`` (or no task, from
    the Python API) lets the model detect it per image, and ``auto`` needs a model that can."""
    from restore_core.checkpoint import CheckpointError

    descriptor = resolve_model(spec, task, device)
    all_in_one = hasattr(descriptor.model, "set_degradation")
    if task == "auto" and not all_in_one:
        raise CheckpointError(descriptor.name, f"restore auto needs an all-in-one model that detects the degradation (adms); this one restores {descriptor.task} only")
    if all_in_one:
        descriptor.model.set_degradation(TASK_DEGRADATION.get(task or "auto"))
    return descriptor


@dataclass
class WeightInfo:
    name: str
    path: Path
    task: str
    architecture: str
    parameters: int
    metrics: dict[str, Any]
    sha256: str | None = None  # what the preset table expects; checked on load
    size_multiple: int = 1  # inputs are padded to a multiple of this
    card: Path | None = None  # the model card beside the file (weights/<name>.md)


def shipped_weights() -> list[WeightInfo]:
    """Every preset whose weight file is present, with its metadata."""
    from restore_core.checkpoint import read_metadata
    from restore_core.models import build_skeleton, count_parameters

    found = []
    for preset in PRESETS.values():
        if preset.weights is None:
            continue
        path = find_weights(preset.weights)
        if path is None:
            continue
        meta = read_metadata(path)
        # Counted from the file's own config: an ADMS file's kept filters are decided by its training.
        model = build_skeleton(meta["architecture"], meta["config"])
        card = path.with_suffix(".md")
        found.append(WeightInfo(
            preset.name, path, meta["task"], meta["architecture"], count_parameters(model), meta["metrics"],
            preset.sha256, int(getattr(model, "size_multiple", 1)), card if card.is_file() else None,
        ))
    return found


def model_details(spec: str) -> dict[str, Any]:
    """What a model is, for ``restore models MODEL``: a preset with weights or a
    checkpoint file, loaded (so every tensor is checked) on the CPU, described by its
    file, its run-time properties (spandrel's descriptor: size multiple, half precision;
    the CPU memory a pixel costs, measured as the engine does before it tiles) and the
    metadata it carries: config, training recipe, measured metrics."""
    import torch

    from restore_core.models.activation_memory import model_activation_bytes_per_pixel
    from restore_core.models import count_parameters
    from restore_core.models.complexity import count_macs, macs_input_side

    descriptor = resolve_model(spec, None, "cpu")
    assert descriptor.path is not None
    card = descriptor.path.with_suffix(".md")
    side = macs_input_side(descriptor.size_multiple)
    model = descriptor.model.eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        activations = model_activation_bytes_per_pixel(model, max(1, descriptor.size_multiple))
    return {
        "name": descriptor.name, "path": str(descriptor.path), "sha256": descriptor.sha256, "task": descriptor.task,
        "architecture": descriptor.architecture, "parameters": count_parameters(descriptor.model),
        "macs": count_macs(descriptor.model.eval(), side), "macs_input": [side, side],
        # What restore measures before it tiles (engine.memory adds its pipeline's copies): fp32 on the CPU.
        "activation_bytes_per_pixel": round(activations),
        "size_multiple": descriptor.size_multiple, "supports_half": descriptor.supports_half,
        "grey_only": descriptor.grey_only, "card": str(card) if card.is_file() else None,
        "config": descriptor.config, "recipe": descriptor.recipe, "metrics": descriptor.metrics,
    }
