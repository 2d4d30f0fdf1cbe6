"""Data parallelism through PyTorch's own engine: one process per device, launched by
``torchrun``; NCCL between GPUs, gloo on CPUs.

    torchrun --nproc_per_node=4 -m transinr train celeba178 data.root=…

The global batch stays ``train.batch_size``: rank r of W takes slice r of every global
batch, so W processes take exactly the steps one process would (DDP averages the
gradients of equal-sized slices, which is the full batch's mean gradient).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class ProcessGroup:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_process_group(device_type: str) -> ProcessGroup:
    """Join the group torchrun set up (a no-op, world size 1, when not under torchrun)."""
    if not launched_by_torchrun():
        return ProcessGroup()
    group = ProcessGroup(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                         int(os.environ.get("LOCAL_RANK", 0)))
    if group.world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(group.local_rank)
        dist.init_process_group(backend=backend)
    return group


def all_finite(value: torch.Tensor, group: ProcessGroup) -> bool:
    """Whether ``value`` is finite on every rank (so all ranks stop together)."""
    finite = torch.isfinite(value).all().to(torch.float32).reshape(1)
    if group.enabled:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


def barrier(group: ProcessGroup) -> None:
    if group.enabled:
        dist.barrier()


def shutdown(group: ProcessGroup) -> None:
    if group.enabled and dist.is_initialized():
        dist.destroy_process_group()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DistributedDataParallel and/or torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model
