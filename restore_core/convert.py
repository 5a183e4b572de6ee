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
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from restore_core.checkpoint import CheckpointError, describe_key_mismatch, file_sha256, save_checkpoint
from restore_core.configs import ConfigError
from restore_core.models import build_model

# Containers other tools wrap a state dict in (BasicSR: params / params_ema; Lightning:
# state_dict; GAN training scripts: net_g, g_ema), the averaged weights first.
WRAPPER_KEYS = ("params_ema", "params", "state_dict_ema", "state_dict", "model_ema", "model", "net_g_ema", "net_g", "g_ema",
                "net", "generator")
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


class ForeignStateDict(NamedTuple):
    tensors: dict[str, torch.Tensor]  # de-prefixed names -> tensors
    entry: str | None  # the entry of the file's dict they were taken from (params_ema, net_g, ...); None: the file itself


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


def _entries_in_words(obj: dict) -> str:
    names = [str(k) for k in obj][:12]
    return ", ".join(names) + (", ..." if len(obj) > len(names) else "")


def _unwrap(obj: Any, path: Path, key: str | None) -> tuple[dict, str | None]:
    """The state dict inside what ``torch.load`` returned, and the entry it sits under:
    ``key`` when given; else the file itself, the first of :data:`WRAPPER_KEYS` it has,
    or its only entry that is a state dict (a training script's own name for it). Several
    candidates and no ``key`` is a refusal naming them: which network is wanted (a GAN's
    generator, not its discriminator) is the user's to say."""
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            held = f" (its entries: {_entries_in_words(obj)})" if isinstance(obj, dict) and obj else ""
            raise CheckpointError(path, f"has no entry {key!r} for --key{held}")
        if not _is_state_dict(obj[key]):
            raise CheckpointError(path, f"its entry {key!r} is not a state dict (names -> tensors)")
        return obj[key], key
    if _is_state_dict(obj):
        return obj, None
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"expected a state dict (names -> tensors), found a {type(obj).__name__}")
    for wrapper in WRAPPER_KEYS:
        if _is_state_dict(obj.get(wrapper)):
            return obj[wrapper], wrapper
    candidates = [k for k, v in obj.items() if _is_state_dict(v)]
    if len(candidates) == 1:
        return obj[candidates[0]], str(candidates[0])
    if candidates:
        raise CheckpointError(path, f"holds several state dicts ({', '.join(map(str, candidates))}): pick one with --key")
    held = f"; its entries: {_entries_in_words(obj)}" if obj else ""
    raise CheckpointError(path, f"expected a state dict (names -> tensors){held}")


def read_foreign_state_dict(path: Path, key: str | None = None) -> ForeignStateDict:
    """The tensors of a ``.pth``/``.pt``/``.ckpt`` file (read safely) or of a bare
    ``.safetensors`` file, unwrapped (:func:`_unwrap`, ``key``: the entry to take) and
    de-prefixed."""
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
    obj, entry = _unwrap(obj, path, key)
    state = dict(obj)
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return ForeignStateDict(state, entry)


def convert(source: os.PathLike | str, out: os.PathLike | str, architecture: str, config: dict[str, Any], task: str,
            key: str | None = None) -> Path:
    """Write ``out`` (.safetensors) from the state dict in ``source`` (its entry ``key``,
    else the one :func:`_unwrap` finds) for ``architecture``/``config``; the checkpoint's
    recipe records the file, its sha256 and the entry taken."""
    source, out = Path(source), Path(out)
    if not source.is_file():
        raise CheckpointError(source, "no such file")
    try:
        model = build_model(architecture, config)
    except (ConfigError, ValueError, TypeError) as exc:
        raise CheckpointError(source, f"invalid architecture config: {exc}") from None
    state, entry = read_foreign_state_dict(source, key)
    expected = model.state_dict()
    mismatch = describe_key_mismatch(set(expected), set(state))
    if mismatch:
        raise CheckpointError(source, f"does not fit {architecture}: {mismatch}")
    for key, reference in expected.items():
        if tuple(state[key].shape) != tuple(reference.shape):
            raise CheckpointError(source, f"does not fit {architecture}: {key} has shape {tuple(state[key].shape)}, expected {tuple(reference.shape)}")
    model.load_state_dict({k: state[k].to(reference.dtype) for k, reference in expected.items()})
    origin = {"converted_from": source.name, "source_sha256": file_sha256(source)}
    if entry is not None:
        origin["source_entry"] = entry
    return save_checkpoint(out, model, architecture, config, task, recipe=origin)
