"""The calibrated gain (`dni.calibration_decay`) window by window, in blocks: its min, median and max.

    LMDNI_DATA=... python scripts/calibration_trace.py --windows 2000 --blocks 20 seed=2

metrics.jsonl's `sg_gain` is the gain at each evaluation; this shows what it does between them, from the first
window. The run is built the one way (`lmdni.run.build_trainer`) from the suite's PTB shape plus any overrides.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile

from lmdni.run import build_trainer, compose_config

SUITE_PTB = ["data=ptb", "model.hidden_size=256", "trainer.batch_size=64", "trainer.unroll=4", "method=dni_aux",
             "dni.calibration_decay=0.99", "trainer.progress=false"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides after the suite's PTB shape, e.g. seed=2")
    args = parser.parse_args()
    if args.windows < args.blocks or args.blocks < 1:
        parser.error("--windows must be at least --blocks, and --blocks at least 1")
    cfg = compose_config([*SUITE_PTB, *args.overrides])
    with tempfile.TemporaryDirectory() as out:
        trainer = build_trainer(cfg, out)
        head = trainer.model.synthetic_gradient
        if head is None or not head.calibrates:
            parser.error("the run has no calibrated SG head (dni.calibration_decay > 0 with method=dni or dni_aux)")
        gains = []
        for _ in range(args.windows):
            trainer.train_window()
            gains.append(float(head.gain))
    size = args.windows // args.blocks
    print("| windows | min | median | max |\n|---|---:|---:|---:|")
    for first in range(0, size * args.blocks, size):
        block = gains[first:first + size]
        print(f"| {first}-{first + size - 1} | {min(block):.4f} | {statistics.median(block):.4f} | {max(block):.4f} |")


if __name__ == "__main__":
    main()
