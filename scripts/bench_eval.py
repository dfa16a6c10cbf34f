"""Whole-split evaluation speed: characters per second of the final evaluation's whole-split reading (the valid and
test splits, each from one zero state) on a fresh model of a shape, with random symbols (the weights and the text do
not change the time). Prints one line per repeat and the median.

    python scripts/bench_eval.py                                   # the two-timescale preset's model
    python scripts/bench_eval.py --model lstm --threads 2
    PYTHONPATH=/path/to/other/checkout python scripts/bench_eval.py   # another checkout's evaluation, for before/after

`--floor` also times only the matrix products of a two-timescale tick at the evaluation's batch (2: the splits side by
side), with no other operator: what no step loop written in torch operators can beat on this machine.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from lmdni import evaluate


def build(kind: str, vocab: int):
    if kind == "hierarchical":
        from lmdni.hierarchical import HierarchicalCore
        return HierarchicalCore(vocab, 256, 256, 4, 64)
    from lmdni.model import LSTMCore
    return LSTMCore(vocab, 256)


def read_whole(model, splits) -> None:
    if hasattr(evaluate, "whole_splits_nats"):
        evaluate.whole_splits_nats(model, splits)
    else:  # checkouts before the splits were read side by side: one after the other
        for split in splits:
            evaluate.split_nats(model, split, 1)


def floor(chars: int) -> None:
    """A tick's products at batch 2: the fast core's four steps, the slow core's h (context and recurrence), the
    message and the slow core's input."""
    batch, h, m = 2, torch.randn(2, 256), torch.randn(2, 64)
    fast, slow_h, message, slow_in = (torch.randn(256, 1024), torch.randn(256, 2048), torch.randn(256, 64),
                                      torch.randn(64, 1024))
    bias = torch.randn(batch, 1024)
    with torch.no_grad():
        for _ in range(0, chars, 4):
            torch.mm(h, slow_h)
            for _ in range(4):
                torch.addmm(bias, h, fast)
            torch.mm(h, message)
            torch.addmm(bias, m, slow_in)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["hierarchical", "lstm"], default="hierarchical")
    parser.add_argument("--chars", type=int, default=20_000, help="characters per split (two splits)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--floor", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build(args.model, 50).eval()
    splits = [torch.randint(0, 50, (args.chars,)), torch.randint(0, 50, (args.chars * 9 // 8,))]
    total = sum(len(s) - 1 for s in splits)
    results = {"evaluation": []}
    if args.floor:
        results["products only"] = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        read_whole(model, splits)
        results["evaluation"].append(total / (time.perf_counter() - start))
        if args.floor:
            start = time.perf_counter()
            floor(len(splits[1]))
            results["products only"].append(total / (time.perf_counter() - start))
    for name, speeds in results.items():
        print(f"{args.model}, {args.threads} thread(s), {name}: median {statistics.median(speeds):,.0f} chars/s "
              f"({', '.join(f'{s:,.0f}' for s in speeds)})", flush=True)


if __name__ == "__main__":
    main()
