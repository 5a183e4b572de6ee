"""Training state on disk and in memory: the EMA of the weights, and the
resumable ``state.safetensors`` (weights, EMA, optimiser moments, step).

Everything is safetensors: a run folder never holds a pickle.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from restore_core.checkpoint import atomic_save_file
from restore_core.training.errors import TrainingError


# What a run writes at the top of its folder (ADMS runs: the last two too); a fresh run
# replaces any of them, so a folder holding one is refused rather than overwritten.
RUN_FILES = ("state.safetensors", "recipe.json", "last.safetensors", "best.safetensors", "model.safetensors", "log.csv", "data.json",
             "filters.json", "classifier.safetensors")


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run (``--resume`` continues it; a fresh one may not start there)."""
    return (run_dir / "state.safetensors").exists() or (run_dir / "recipe.json").exists()


def files_a_run_would_replace(run_dir: Path) -> list[str]:
    """The names of :data:`RUN_FILES` already in ``run_dir``: a fresh run there would
    replace them (a model someone keeps there as ``model.safetensors``, a ``log.csv``)."""
    return [name for name in RUN_FILES if (run_dir / name).exists()]


def lock_run(run_dir: Path) -> int | None:
    """Hold ``run_dir/.lock`` for as long as this process lives (released however it ends):
    a second ``restore train`` into the same run folder, fresh or ``--resume``, would
    interleave its checkpoints with this one's. Raises :class:`TrainingError` naming the
    process that holds it; None where file locks are unavailable (Windows, some network
    file systems)."""
    try:
        import fcntl
    except ImportError:
        return None
    handle = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):  # a file system without locks
            os.close(handle)
            return None
        holder = os.read(handle, 32).decode(errors="replace").strip() or "another process"
        os.close(handle)
        raise TrainingError(f"{run_dir}: a restore train is running in this folder now (process {holder}); "
                            "wait for it, stop it, or use another --out") from None
    os.ftruncate(handle, 0)
    os.write(handle, str(os.getpid()).encode())
    return handle


def ema_decay_at(decay: float, updates: int) -> float:
    """Warmed-up EMA decay ``min(decay, (1 + t) / (10 + t))`` after ``t`` updates.

    Without the warm-up, a short run's average keeps a large share of the random
    initial weights (0.999^750 = 47 % after 750 steps), which makes early
    validation and short runs meaningless.
    """
    return min(decay, (1.0 + updates) / (10.0 + updates))


class EMA:
    """Exponential moving average of a model's floating-point state (warmed up, see :func:`ema_decay_at`)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, updates: int) -> None:
        """Fold in ``model`` after ``updates`` previous updates (counted from the
        start of the current training stage, so a newly trained part starts fresh)."""
        decay = ema_decay_at(self.decay, updates)
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[key].lerp_(value.detach(), 1.0 - decay)
            else:
                self.shadow[key].copy_(value)


def save_state(
    path: Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    ema: EMA | None,
    step: int,
    extra: dict,
) -> None:
    """Everything needed to resume: each module's weights under ``<name>.``, each
    optimiser's moments under ``<name>.<param index>.``, the EMA under ``ema.``."""
    tensors = {}
    for name, module in modules.items():
        tensors.update({f"{name}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()})
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.shadow.items()})
    metadata = {"step": str(step), "extra": json.dumps(extra, default=str)}
    for name, optimizer in optimizers.items():
        opt_state = optimizer.state_dict()
        for index, state in opt_state["state"].items():
            for key, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"{name}.{index}.{key}"] = value.detach().cpu().contiguous().reshape(value.shape)
        metadata["param_groups" if name == "optim" else f"param_groups.{name}"] = json.dumps(opt_state["param_groups"])
    atomic_save_file(tensors, path, metadata)


def load_state(
    path: Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    ema: EMA | None,
    device: torch.device,
) -> tuple[int, dict]:
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        keys = list(handle.keys())
        for name, module in modules.items():
            prefix = f"{name}."
            module.load_state_dict({k[len(prefix):]: handle.get_tensor(k) for k in keys if k.startswith(prefix)})
        if ema is not None and any(k.startswith("ema.") for k in keys):
            ema.shadow = {k[4:]: handle.get_tensor(k).to(device) for k in keys if k.startswith("ema.")}
        states: dict[str, dict[int, dict]] = {name: {} for name in optimizers}
        for key in keys:
            name, _, rest = key.partition(".")
            if name in optimizers:
                index, key_name = rest.split(".", 1)
                states[name].setdefault(int(index), {})[key_name] = handle.get_tensor(key).to(device)
    for name, optimizer in optimizers.items():
        for s in states[name].values():
            if "step" in s:
                s["step"] = s["step"].cpu()
        groups = meta["param_groups" if name == "optim" else f"param_groups.{name}"]
        optimizer.load_state_dict({"state": states[name], "param_groups": json.loads(groups)})
    return int(meta["step"]), json.loads(meta.get("extra", "{}"))
