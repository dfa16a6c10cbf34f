"""Resident memory stays flat over a long run: the graph of every window is freed.

    python scripts/memory_check.py --windows 20000 --method dni

Prints RSS after 2,000 windows and after --windows windows, and their ratio (exit 1 if it grew more than 5%).
"""
from __future__ import annotations

import argparse
import sys

import torch



def rss_mb() -> float:
    from lmdni.metrics import process_memory_mb

    value = process_memory_mb("VmRSS")
    if value is None:
        raise RuntimeError("no VmRSS in /proc/self/status")
    return value


def main():
    from lmdni.benchmark import bench_trainer, memory_corpus

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=20000)
    parser.add_argument("--method", default="dni")
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args()
    data = torch.randint(50, (200_000,), generator=torch.Generator().manual_seed(0))
    trainer = bench_trainer(args.method, args.hidden, 16, 4, "cpu", memory_corpus(data, 50), ["threads=1"])
    readings = {}
    for window in range(1, args.windows + 1):
        trainer.train_window()
        if window in (2000, args.windows):
            readings[window] = rss_mb()
            print(f"after {window:,} windows: RSS {readings[window]:.1f} MB", flush=True)
    ratio = readings[args.windows] / readings[2000]
    print(f"ratio {ratio:.3f} ({args.method}, hidden {args.hidden}, batch 16, unroll 4)")
    sys.exit(0 if ratio <= 1.05 else 1)


if __name__ == "__main__":
    main()
