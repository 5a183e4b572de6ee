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
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from restore_core.checkpoint import CheckpointError, describe_key_mismatch, file_sha256, save_checkpoint
from restore_core.configs import ConfigError
from restore_core.models import build_model

# Containers other tools wrap a state dict in (BasicSR: params / params_ema; Lightning: state_dict).
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "generator")
# Prefixes added by DataParallel / DDP / torch.compile / Lightning modules.
PREFIXES = ("module.", "_orig_mod.", "model.", "net.")


NOT_TORCH = "not a PyTorch file (neither torch.save's zip archive nor its older pickle format)"


def refusal_cause(exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one line: the class a pickled
    object needs (a whole ``torch.save(model)``, a training script's own objects), a damaged
    or foreign file, else the first line of torch's message without its colour codes."""
    message = str(exc)
    needed = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
    if needed:
        return (f"it holds a pickled object ({needed.group(1)}), not only tensors, and unpickling it could run code; "
                "if you trust the file, load it in Python with torch.load(weights_only=False) and torch.save its "
                "state_dict(), then convert that")
    if "Weights only load failed" in message:
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", message)
        return ("a pickle holding more than tensors and plain containers, refused unread: unpickling it could run code"
                + (f" ({detail.group(1).strip()})" if detail else ""))
    if "PytorchStreamReader failed" in message:
        return "a damaged PyTorch file: its zip archive is truncated or corrupt"
    if isinstance(exc, KeyError) or "invalid load key" in message:  # the legacy reader's magic number is missing
        return NOT_TORCH
    first = re.sub(r"\x1b\[[0-9;]*m", "", message).strip().splitlines()
    return f"not loadable as plain tensors ({first[0] if first else type(exc).__name__})"


def read_foreign_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth``/``.pt``/``.ckpt`` file (read safely) or of a bare
    ``.safetensors`` file, unwrapped and de-prefixed."""
    with path.open("rb") as handle:
        head = handle.read(2)
    if not head:
        raise CheckpointError(path, "empty file (0 bytes)")
    if path.suffix.lower() == ".safetensors":
        try:
            obj: Any = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(path, f"not a valid safetensors file ({str(exc).splitlines()[0]})") from None
    elif head != b"PK" and head[:1] != b"\x80":  # torch.save writes a zip archive, or (before 1.6) a protocol-2 pickle
        raise CheckpointError(path, NOT_TORCH)
    else:
        try:
            with warnings.catch_warnings():  # torch's notes on pickle protocols: the refusal below says what matters
                warnings.simplefilter("ignore")
                obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # the safe unpickler refuses anything that is not plain data
            raise CheckpointError(path, refusal_cause(exc)) from None
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
