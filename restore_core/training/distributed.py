"""Data-parallel training under ``torchrun`` (one process per device).

``restore train`` runs unchanged with ``torchrun --nproc_per_node N``: every
rank builds the same model from the same seed, draws its own batches (see
:meth:`PatchSampler.batch`), and gradients are averaged across ranks after
each backward pass, so all ranks take identical optimiser steps. Only rank 0
validates, logs and writes checkpoints.

Why an explicit gradient all-reduce rather than wrapping the model in
``DistributedDataParallel``: the Taylor and Golf objectives call sub-networks
directly (``model.expand``, ``model.first``, ``model.step``), and Golf stage 2
freezes F; DDP only synchronises gradients produced through its own
``forward`` and insists that every parameter receives one. A single flattened
all-reduce per step is the same arithmetic (DDP averages too) without those
constraints.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # ranks on this machine

    @property
    def first_on_machine(self) -> int:
        """The global rank of this machine's local rank 0 (torchrun numbers a machine's ranks in a row)."""
        return self.rank - self.local_rank

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment (no-op when
    WORLD_SIZE is unset or 1). NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        # Imported before the process group exists: imported later (the first optimiser
        # does), torch._dynamo keeps 10 references to the default group that outlive
        # destroy_process_group (torch 2.13), so gloo's threads run on into interpreter
        # shutdown, where one releasing a finished collective's tensors aborted the rank
        # ("terminate called without an active exception", 1 run in ~30).
        importlib.import_module("torch._dynamo")
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                    int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def barrier(info: DistInfo) -> None:
    """Wait until every rank gets here (nothing to wait for in a single process)."""
    if info.enabled:
        dist.barrier()


def rank_zeros_choice(value: str, info: DistInfo) -> str:
    """Rank 0's ``value`` on every rank: a decision each rank could take a little
    differently (from the free memory of the moment) must be taken once."""
    if not info.enabled:
        return value
    chosen = [value]
    dist.broadcast_object_list(chosen, src=0)
    return chosen[0]


def average_gradients(module: nn.Module, info: DistInfo) -> None:
    """Average the gradients of ``module`` over all ranks (one flattened all-reduce)."""
    if not info.enabled:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= info.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_parameters(module: nn.Module, info: DistInfo) -> None:
    """Make every rank start from rank 0's weights and buffers."""
    if not info.enabled:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def weights_agree(module: nn.Module, info: DistInfo) -> bool:
    """True when every rank holds bit-identical weights (compares a float64 checksum per tensor)."""
    if not info.enabled:
        return True
    checksum = torch.stack([t.detach().double().sum() + t.detach().double().abs().sum() * 1e-3 for t in module.state_dict().values() if t.is_floating_point()])
    gathered = [torch.zeros_like(checksum) for _ in range(info.world_size)]
    dist.all_gather(gathered, checksum)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def shutdown(info: DistInfo) -> None:
    """Leave the process group once every rank is done.

    The barrier matters: rank 0 writes the final checkpoint after the last
    collective, and a rank that tears down its gloo connections while a peer
    is still working can be aborted (SIGABRT) by gloo's connection checks."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
