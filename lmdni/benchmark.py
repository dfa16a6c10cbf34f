"""What the throughput scripts share (scripts/bench*.py, memory_check.py): the shape options, a config for a method,
an in-memory corpus, a trainer built the one way (`build_trainer`), and median-of-blocks timing."""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from .data import Corpus
from .run import build_trainer, compose_config


def shape_arguments(description: str) -> argparse.ArgumentParser:
    """The model shape and timing options every throughput script takes."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--unroll", type=int, default=4)
    parser.add_argument("--windows", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for the lmdni runs, e.g. dni.fused=on")
    return parser


def memory_corpus(data: torch.Tensor, vocab_size: int) -> Corpus:
    """A corpus of ids already in memory (validation and test: its first 1,000), for timing, not for BPC."""
    return Corpus([str(i) for i in range(vocab_size)], data, data[:1000], data[:1000])


def bench_trainer(method: str, hidden: int, batch: int, unroll: int, device: str, corpus: Corpus,
                  overrides=(), out_dir="/tmp"):
    """An ordinary lmdni trainer (model seeded with 0 for every method) on `corpus`."""
    cfg = compose_config([f"method={method}", f"model.hidden_size={hidden}", f"trainer.batch_size={batch}",
                          f"trainer.unroll={unroll}", f"device={device}", "trainer.progress=false", "seed=0",
                          *overrides])
    return build_trainer(cfg, out_dir, corpus=corpus)


def time_blocks(step, windows: int, repeats: int, chars_per_window: int, device) -> float:
    """Median chars/s over `repeats` blocks of `windows` calls of `step`, after a warm-up."""
    return time_interleaved({"step": step}, windows, repeats, chars_per_window, device)["step"]


def time_interleaved(steps: dict, windows: int, repeats: int, chars_per_window: int, device) -> dict:
    """Median chars/s of each of `steps` (name -> callable), timed in turn block by block (A B C A B C ...), so that
    a machine whose speed drifts (a shared CPU, turbo) shifts every entry alike and ratios stay meaningful."""
    device = torch.device(device)

    def block(step, count):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(count):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return count * chars_per_window / (time.perf_counter() - start)

    for step in steps.values():
        block(step, max(10, windows // 10))  # warm-up
    rates = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            rates[name].append(block(step, windows))
    return {name: statistics.median(values) for name, values in rates.items()}
