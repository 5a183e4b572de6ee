"""Import a third-party PyTorch state dict into this project's safetensors format.

``torch.load(weights_only=True)`` is the only pickle reader used anywhere in the
project: it rebuilds tensors and plain containers and refuses every other
object, so a malicious ``.pth`` cannot run code. The tensors must then fit an
architecture of :data:`restore_core.models.ARCHITECTURES` exactly (every name
and shape); the result is an ordinary checkpoint with metadata saying where it
came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from restore_core.checkpoint import CheckpointError, describe_key_mismatch, file_sha256, save_checkpoint
from restore_core.configs import ConfigError
from restore_core.models import build_model

# Containers other tools wrap a state dict in (BasicSR: params / params_ema; Lightning: state_dict).
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "generator")
# Prefixes added by DataParallel / DDP / torch.compile / Lightning modules.
PREFIXES = ("module.", "_orig_mod.", "model.", "net.")


def read_foreign_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth``/``.pt``/``.ckpt`` file, read safely, unwrapped and de-prefixed."""
    try:
        obj: Any = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # the safe unpickler refuses anything that is not plain data
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(path, f"not loadable as plain tensors (weights_only=True refused it: {first})") from None
    for key in WRAPPER_KEYS:
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(path, "expected a state dict (names -> tensors)")
    state = dict(obj)
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def convert(source: os.PathLike | str, out: os.PathLike | str, architecture: str, config: dict[str, Any], task: str) -> Path:
    """Write ``out`` (.safetensors) from the state dict in ``source`` for ``architecture``/``config``."""
    source, out = Path(source), Path(out)
    if not source.is_file():
        raise CheckpointError(source, "no such file")
    try:
        model = build_model(architecture, config)
    except (ConfigError, ValueError, TypeError) as exc:
        raise CheckpointError(source, f"invalid architecture config: {exc}") from None
    state = read_foreign_state_dict(source)
    expected = model.state_dict()
    mismatch = describe_key_mismatch(set(expected), set(state))
    if mismatch:
        raise CheckpointError(source, f"does not fit {architecture}: {mismatch}")
    for key, reference in expected.items():
        if tuple(state[key].shape) != tuple(reference.shape):
            raise CheckpointError(source, f"does not fit {architecture}: {key} has shape {tuple(state[key].shape)}, expected {tuple(reference.shape)}")
    model.load_state_dict({k: state[k].to(reference.dtype) for k, reference in expected.items()})
    origin = {"converted_from": source.name, "source_sha256": file_sha256(source)}
    return save_checkpoint(out, model, architecture, config, task, recipe=origin)
