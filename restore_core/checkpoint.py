"""Safetensors checkpoints with self-describing metadata. Never unpickles.

A checkpoint is one ``.safetensors`` file. Its string metadata holds:

``format``           always ``"restore-checkpoint"``
``format_version``   :data:`FORMAT_VERSION`
``architecture``     a name in :data:`restore_core.models.ARCHITECTURES`
``config``           JSON of the architecture's config dataclass
``task``             ``derain`` / ``deblur`` / ``denoise`` / ``dehaze`` / ...
``recipe``           JSON of the training recipe (may be ``{}``)
``metrics``          JSON of measured metrics (may be ``{}``)

Loading checks all of that and every tensor's name and shape against a freshly
built model before any weight is copied, and fails with a one-line
:class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from restore_core.configs import ConfigError, config_to_dict
from restore_core.io.files import DEFAULT_FILE_MODE
from restore_core.models import ARCHITECTURES, build_model, build_skeleton, parse_config
from restore_core.tasks import check_model_task

FORMAT = "restore-checkpoint"
FORMAT_VERSION = "1"
REQUIRED_KEYS = ("format", "format_version", "architecture", "config", "task")
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".pkl", ".bin")


class CheckpointError(Exception):
    """A checkpoint cannot be used; the message names the file and the cause."""

    def __init__(self, path: os.PathLike | str, cause: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: {cause}")


@dataclass
class ModelDescriptor:
    """A loaded model with everything the engine needs to run it well."""

    model: nn.Module
    architecture: str
    config: dict[str, Any]
    task: str
    name: str
    size_multiple: int = 1
    supports_half: bool = True
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    path: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # run-time settings applied (apply_setting)

    @property
    def grey_only(self) -> bool:
        """Trained on grey images only (its recipe's ``data.colour_fraction`` is 0):
        colour inputs restore worse with it than with a colour-trained model."""
        return (self.recipe.get("data") or {}).get("colour_fraction") == 0

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def task_caution(self, task: str | None) -> str | None:
        """A caution when the model is asked for a task it was not trained for (a dehazer
        run by ``restore derain`` or scored by ``benchmark --task derain``), else None."""
        if task is None or self.task in (task, "any", "all"):
            return None
        return f"model {self.name} was trained for {self.task}, not {task}"

    def apply_setting(self, name: str, value: Any, flag: str | None = None) -> str | None:
        """Apply a run-time setting of the model (``--iterations`` of a Golf
        Optimizer, ``--sigma`` of a non-blind denoiser) through its ``set_<name>``
        method; a model without one refuses it with a clear error. Returns a caution
        to pass on to the user, or None: what the model's ``setting_caution(name,
        value, recipe)`` finds wrong with a value it accepts against the recipe it was
        trained with (more Golf taps than G was trained to take, a noise level beyond
        the trained range). ``flag``: the option that gave the setting, for the messages
        (default ``--name``)."""
        flag = flag or "--" + name.replace("_", "-")
        setter = getattr(self.model, f"set_{name}", None)
        if setter is None:
            raise CheckpointError(self.name, f"{flag} does not apply to this model ({self.architecture})")
        try:
            setter(value)
        except ValueError as exc:
            raise CheckpointError(self.name, f"{flag}: {exc}") from None
        self.settings[name] = value
        caution = getattr(self.model, "setting_caution", None)
        why = caution(name, value, self.recipe) if caution is not None else None
        return f"{flag} {value}: {self.name} {why}" if why else None


def file_sha256(path: os.PathLike | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    path: os.PathLike | str,
    model: nn.Module,
    architecture: str,
    config: Any,
    task: str,
    recipe: Any = None,
    metrics: dict[str, Any] | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` (or an explicit ``state_dict``, e.g. EMA weights) atomically."""
    path = Path(path)
    config_dict = config if isinstance(config, dict) else config_to_dict(config)
    parse_config(architecture, config_dict)  # refuse to write what cannot be read back
    check_model_task(task)
    recipe_dict = {} if recipe is None else (recipe if isinstance(recipe, dict) else config_to_dict(recipe))
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in (state_dict or model.state_dict()).items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "config": json.dumps(config_dict, sort_keys=True),
        "task": task,
        "recipe": json.dumps(recipe_dict, sort_keys=True, default=str),
        "metrics": json.dumps(metrics or {}, sort_keys=True),
    }
    return atomic_save_file(tensors, path, metadata)


def atomic_save_file(tensors: dict[str, torch.Tensor], path: os.PathLike | str, metadata: dict[str, str]) -> Path:
    """``safetensors.torch.save_file`` via a temporary name and a rename: the file at
    ``path`` is always either the old one or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, DEFAULT_FILE_MODE)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# The models a `restore train` run folder holds (restore_core.training.trainer), by name.
RUN_MODELS = (("model.safetensors", "the final model"), ("best.safetensors", "the best validation"),
              ("last.safetensors", "the latest checkpoint"))


def read_metadata(path: os.PathLike | str) -> dict[str, Any]:
    """Parse and validate a checkpoint's metadata without loading tensors."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            path,
            "pickle-based PyTorch files are not loaded (unpickling can run arbitrary code); use a .safetensors "
            f"checkpoint: restore convert {path} {path.with_suffix('.safetensors')} --preset NAME imports a state dict "
            "of an architecture restore knows, reading it safely",
        )
    if path.is_dir():
        # A `restore train` run folder: its models by what each is, the final one first.
        run_models = [f"{path / name} ({what})" for name, what in RUN_MODELS if (path / name).is_file()]
        if (path / "recipe.json").is_file() and run_models:
            raise CheckpointError(path, f"a training run's folder, not a checkpoint file: give one of its models: {', '.join(run_models)}")
        inside = sorted(path.glob("*.safetensors"))
        example = f", e.g. {inside[0]}" if inside else ""
        raise CheckpointError(path, f"a folder, not a checkpoint file: give a .safetensors file{example}")
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(path, f"not a valid safetensors file ({str(exc).splitlines()[0]})") from None
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        bare = " (tensors without metadata: import them with restore convert FILE OUT.safetensors --preset NAME)" if len(missing) == len(REQUIRED_KEYS) else ""
        raise CheckpointError(path, f"missing metadata {', '.join(missing)}; not a restore checkpoint{bare}")
    if raw["format"] != FORMAT:
        raise CheckpointError(path, f"metadata format is {raw['format']!r}, expected {FORMAT!r}")
    if raw["format_version"] != FORMAT_VERSION:
        raise CheckpointError(path, f"format version {raw['format_version']} is not supported (this build reads {FORMAT_VERSION})")
    if raw["architecture"] not in ARCHITECTURES:
        raise CheckpointError(path, f"unknown architecture {raw['architecture']!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    meta: dict[str, Any] = {"architecture": raw["architecture"], "task": raw["task"]}
    for key in ("config", "recipe", "metrics"):
        try:
            meta[key] = json.loads(raw.get(key, "{}"))
        except json.JSONDecodeError:
            raise CheckpointError(path, f"metadata {key!r} is not valid JSON") from None
        if not isinstance(meta[key], dict):
            raise CheckpointError(path, f"metadata {key!r} must be a JSON object")
    return meta


def describe_key_mismatch(expected: set[str], found: set[str]) -> str:
    """``"missing tensors a, b ...; unexpected tensors c"``, or ``""`` when the names agree."""
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    detail = []
    if missing:
        detail.append(f"missing tensors {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
    if unexpected:
        detail.append(f"unexpected tensors {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
    return "; ".join(detail)


def load_checkpoint(path: os.PathLike | str, device: str | torch.device = "cpu", name: str | None = None) -> ModelDescriptor:
    """Build the model a checkpoint describes and load its weights, with full validation."""
    path = Path(path)
    meta = read_metadata(path)
    try:
        expected = build_skeleton(meta["architecture"], meta["config"]).state_dict()  # refused before allocated
    except (ConfigError, ValueError, TypeError) as exc:
        raise CheckpointError(path, f"invalid config: {exc}") from None
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
        mismatch = describe_key_mismatch(set(expected), keys)
        if mismatch:
            raise CheckpointError(path, mismatch)
        state = {}
        for key, reference in expected.items():
            shape = tuple(handle.get_slice(key).get_shape())
            if shape != tuple(reference.shape):
                raise CheckpointError(path, f"tensor {key} has shape {shape}, the architecture expects {tuple(reference.shape)}")
            state[key] = handle.get_tensor(key)
    model = build_model(meta["architecture"], meta["config"])
    model.load_state_dict(state)
    model.eval().to(device)
    return ModelDescriptor(
        model=model,
        architecture=meta["architecture"],
        config=meta["config"],
        task=meta["task"],
        name=name or path.stem,
        size_multiple=int(getattr(model, "size_multiple", 1)),
        recipe=meta["recipe"],
        metrics=meta["metrics"],
        sha256=file_sha256(path),
        path=path,
    )


def update_metrics(path: os.PathLike | str, metrics: dict[str, Any], out: os.PathLike | str | None = None) -> Path:
    """Rewrite a checkpoint (atomically) with ``metrics`` merged into its metadata;
    tensors and the other metadata are copied unchanged."""
    path = Path(path)
    read_metadata(path)  # validate first
    with safe_open(str(path), framework="pt") as handle:
        raw = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    raw["metrics"] = json.dumps({**json.loads(raw.get("metrics", "{}")), **metrics}, sort_keys=True)
    return atomic_save_file(tensors, Path(out) if out else path, raw)


def update_config(path: os.PathLike | str, changes: dict[str, Any], out: os.PathLike | str | None = None) -> Path:
    """Rewrite a checkpoint (atomically) with ``changes`` merged into its architecture
    config: settings measured after training that change no weight (a denoiser's noise
    calibration). The new config must still build the architecture."""
    path = Path(path)
    meta = read_metadata(path)
    config = {**meta["config"], **changes}
    try:
        build_model(meta["architecture"], config)
    except (ConfigError, ValueError, TypeError) as exc:
        raise CheckpointError(path, f"invalid config change: {exc}") from None
    with safe_open(str(path), framework="pt") as handle:
        raw = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    raw["config"] = json.dumps(config, sort_keys=True)
    return atomic_save_file(tensors, Path(out) if out else path, raw)
