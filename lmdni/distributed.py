"""Data parallel over processes started by torchrun (DDP semantics, explicit all-reduce).

Each rank reads its own contiguous share of the `batch_size` stream columns, so `torchrun --nproc_per_node=N` with
batch B trains the same model as one process with batch B: the per-rank mean losses are averaged by averaging the
gradients (core and SG head alike), the SG stays in per-sequence units, and every rank applies the same update.
We all-reduce explicitly after each backward instead of wrapping the model in DistributedDataParallel because DNI
runs two backward passes per window (the window with its injected SG, then the head's regression) and DDP's hooks
assume one. Only rank 0 writes logs, metrics and checkpoints.

    torchrun --nproc_per_node=2 -m lmdni method=dni trainer.batch_size=128          # one node, 2 processes
    torchrun --nnodes=2 --node_rank=R --nproc_per_node=8 --rdzv_backend=c10d \\
             --rdzv_endpoint=HOST:29500 -m lmdni method=dni trainer.batch_size=1024   # two nodes
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from .errors import ConfigError


def sum_over_ranks_(*tensors: torch.Tensor) -> None:
    """In place, each tensor becomes its sum over the data-parallel ranks; nothing happens in a single process. For
    code that holds no `Distributed` (the SG head's running sums, `lmdni.boundary`)."""
    if dist.is_available() and dist.is_initialized():
        for tensor in tensors:
            dist.all_reduce(tensor)


class Distributed:
    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def init(self, device: torch.device) -> torch.device:
        if not self.enabled:
            return device
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return device

    def columns(self, batch_size: int) -> slice:
        if batch_size % self.world:
            raise ConfigError(f"trainer.batch_size={batch_size} must be divisible by the {self.world} processes")
        share = batch_size // self.world
        return slice(self.rank * share, (self.rank + 1) * share)

    def average_gradients(self, params) -> None:
        if not self.enabled:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])  # one all-reduce for all of them
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            values = values.clone()
            dist.all_reduce(values)
        return values

    def any(self, flag: bool, device) -> bool:
        """True on every rank if it is true on any: ranks must stop at the same window or they deadlock."""
        if not self.enabled:
            return flag
        return bool(self.sum(torch.tensor([float(flag)], device=device)).item() > 0)

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """The carried state of every rank's columns, in column order (for checkpoints)."""
        if not self.enabled:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, 0)

    def gather_objects(self, obj) -> list:
        if not self.enabled:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj):
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
