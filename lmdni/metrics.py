"""metrics.jsonl: one JSON object per evaluation, appended and flushed at once so a crash loses nothing.

It is the source of truth; a live view (`logger=tensorboard`) receives each record after it is written.
"""
from __future__ import annotations

import json
import math
import os
import resource
import sys
from pathlib import Path

import torch

from .errors import DivergenceError


def process_memory_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (VmRSS: resident now; VmHWM: peak) in MiB; None without /proc."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return None


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (MiB): on CPU, what a run at this batch and unroll needed. VmHWM
    where there is /proc (getrusage's ru_maxrss carries a parent's peak across exec), ru_maxrss elsewhere."""
    peak = process_memory_mb("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def memory_fields(device: torch.device) -> dict:
    """The run's peak memory so far: the accelerator's allocations on CUDA, the process's resident set elsewhere."""
    if device.type == "cuda":
        return {"peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    return {"peak_rss_mb": peak_rss_mb()}


class MetricsLog:
    def __init__(self, path: Path, views=()):
        """`views`: objects with `write(record)` and `close()` (lmdni.tensorboard), fed each record."""
        self.path = Path(path)
        self.views = list(views)

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        for view in self.views:
            view.write(record)

    def close(self) -> None:
        for view in self.views:
            view.close()

    def truncate_after(self, chars: int) -> None:
        """On resume, drop records written after the checkpoint being resumed from."""
        if not self.path.exists():
            return
        records = read_metrics(self.path)
        kept = [r for r in records if r["chars"] <= chars]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")


def read_metrics(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class Interval:
    """What is gathered between two evaluations (summed on the device, read at evaluation time: no host sync per
    window). A run interrupted mid-interval and resumed logs the same record as one that never stopped, so it is
    part of a checkpoint (`state_dict`)."""

    TOTALS = ("nats", "sg_loss", "sg_cosine", "grad_norm", "aux_loss")
    COUNTS = ("count", "windows", "cosine_samples")
    OLD_NAMES = {f"_{name}": name for name in (*TOTALS, *COUNTS)} | {"_sg_cos": "sg_cosine", "_cos_samples":
                                                                      "cosine_samples"}

    def __init__(self, device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        zero = torch.zeros((), device=self.device)
        for name in self.TOTALS:
            setattr(self, name, zero.clone())
        self.count = self.windows = self.cosine_samples = 0

    def add(self, result, n_tokens: int, grad_norm: torch.Tensor) -> None:
        """One trained window's `WindowResult` (lmdni.window)."""
        self.grad_norm += grad_norm
        self.nats += result.loss_sum
        if result.sg_loss is not None:
            self.sg_loss += result.sg_loss
        if result.aux_loss is not None:
            self.aux_loss += result.aux_loss
        if result.sg_cosine is not None:
            self.sg_cosine += result.sg_cosine
            self.cosine_samples += 1
        self.count += n_tokens
        self.windows += 1

    def bpc(self) -> float:
        return float(self.nats) / (math.log(2) * max(self.count, 1))

    def mean(self, name: str) -> float:
        """A total over the windows it was gathered on."""
        return float(getattr(self, name)) / max(self.cosine_samples if name == "sg_cosine" else self.windows, 1)

    def fields(self, synthetic_gradient: bool, cosine: bool, aux: bool) -> dict:
        """The interval's means for metrics.jsonl: the core's gradient norm before clipping, and where the run has
        them the heads' regression loss, the start SG's cosine to its target, DNI+Aux's loss."""
        names = ["grad_norm"] + ["sg_loss"] * synthetic_gradient + ["sg_cosine"] * (synthetic_gradient and cosine)
        return {name: self.mean(name) for name in names + ["aux_loss"] * aux}

    def check_finite(self, distributed, where: str) -> None:
        """DivergenceError naming the first non-finite loss (`where`: when, and what to fall back on). Every rank
        checks the sums over all ranks: they must agree, or they deadlock."""
        values = distributed.sum(torch.stack([self.nats, self.sg_loss, self.aux_loss]))
        for name, value in zip(("training loss", "synthetic-gradient loss", "auxiliary loss"), values.tolist()):
            if not math.isfinite(value):
                raise DivergenceError(f"non-finite {name} {where}")

    def gather(self, distributed) -> None:
        """Sum over ranks (the head's statistics and the gradient norm are then averaged)."""
        if not distributed.enabled:
            return
        totals = distributed.sum(torch.stack([*(getattr(self, n) for n in self.TOTALS),
                                              torch.tensor(float(self.count), device=self.device)]))
        self.nats = totals[0]
        for index, name in enumerate(self.TOTALS[1:], 1):
            setattr(self, name, totals[index] / distributed.world)
        self.count = int(totals[-1].item())

    def state_dict(self) -> dict:
        return {**{name: getattr(self, name).item() for name in self.TOTALS},
                **{name: getattr(self, name) for name in self.COUNTS}}

    def load_state_dict(self, payload: dict) -> None:
        payload = {self.OLD_NAMES.get(key, key): value for key, value in payload.items()}
        for name in self.TOTALS:
            setattr(self, name, torch.tensor(payload[name], device=self.device))
        for name in self.COUNTS:
            setattr(self, name, int(payload[name]))
