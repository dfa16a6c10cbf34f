"""Seconds of a run's final evaluation (whole valid and test splits, and test in the evaluation's columns), through
the task's own `results` as lmdni-train calls it, on a fresh model of each shape (the weights do not change the time).

    LMDNI_DATA=... python scripts/time_final_eval.py                      # the two-timescale preset, the LSTM core
    python scripts/time_final_eval.py --shape "lstm 512=method=dni model.hidden_size=512"
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from lmdni.run import build_trainer, compose_config

SHAPES = ["hierarchical_ptb preset=+experiment=hierarchical_ptb method=dni seed=1",
          "lstm hidden 256=method=dni model.hidden_size=256"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", help="NAME=OVERRIDES (space-separated); default: two shapes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for shape in args.shape or SHAPES:
        name, overrides = shape.split("=", 1)
        cfg = compose_config([*overrides.split(), "device=cpu", "trainer.progress=false", "threads=1"])
        trainer = build_trainer(cfg, tempfile.mkdtemp())
        start = time.perf_counter()
        fields, _ = trainer.task.results(trainer.model, float("inf"), torch.device("cpu"))
        print(f"{name}: {time.perf_counter() - start:.1f} s  valid {fields['valid_bpc']:.6f}  "
              f"test {fields['test_bpc']:.6f}", flush=True)


if __name__ == "__main__":
    main()
