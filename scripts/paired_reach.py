"""Per seed, the characters a run needs to reach its baseline's best valid BPC, as a fraction of the baseline's own;
then the median and range over the seeds that reach it, and how many do.

    python scripts/paired_reach.py docs/results/hierarchical/lag-8seeds --baseline bptt --method dni

Runs are paired by seed (each run's saved config); the baseline's best is its lowest valid BPC, the crossing is
interpolated between evaluations (lmdni.compare.reaching). Prints a Markdown table and one summary line.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from lmdni.compare import best_valid, describe, find_runs, reaching


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--baseline", default="bptt", help="the baseline's method")
    parser.add_argument("--method", default="dni", help="the method compared with it")
    args = parser.parse_args(argv)
    runs = [describe(run) for run in find_runs(args.runs)]
    by_seed: dict = {}
    for run in runs:
        by_seed.setdefault(run["config"].get("seed"), {})[run["method"]] = run
    print(f"| seed | {args.baseline} best valid | at characters | {args.method} best valid | "
          f"{args.method} reaches it at | fraction |")
    print("|---:|---:|---:|---:|---:|---:|")
    fractions, gains, pairs = [], [], 0
    for seed in sorted(s for s in by_seed if s is not None):
        pair = by_seed[seed]
        if args.baseline not in pair or args.method not in pair:
            continue
        pairs += 1
        base, other = pair[args.baseline], pair[args.method]
        target = best_valid(base)
        base_chars = reaching(base["records"], target, "chars")
        chars = reaching(other["records"], target, "chars")
        fraction = chars / base_chars if chars is not None else None
        gains.append(target - best_valid(other))
        if fraction is not None:
            fractions.append(fraction)
        print(f"| {seed} | {target:.4f} | {base_chars:,} | {best_valid(other):.4f} | "
              f"{'never' if chars is None else f'{chars:,}'} | {'' if fraction is None else f'{fraction:.2f}'} |")
    if not pairs:
        print("paired_reach.py: error: no seed has both methods", file=sys.stderr)
        sys.exit(2)
    summary = (f"median {statistics.median(fractions):.2f}, range {min(fractions):.2f}-{max(fractions):.2f}"
               if fractions else "no seed")
    print(f"\n{args.method} reaches {args.baseline}'s best in {summary} of its characters, in {len(fractions)} "
          f"of {pairs} seeds; best valid BPC {args.baseline} minus {args.method}: median "
          f"{statistics.median(gains):+.4f}, range {min(gains):+.4f} to {max(gains):+.4f}")


if __name__ == "__main__":
    main()
