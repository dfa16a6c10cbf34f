"""metrics.jsonl: one JSON object per evaluation, appended and flushed at once so a crash loses nothing.

It is the source of truth; a live view (`logger=tensorboard`) receives each record after it is written.
"""
from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path


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
