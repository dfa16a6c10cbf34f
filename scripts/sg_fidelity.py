"""The SG-fidelity probe on saved runs: the head's SG at a boundary against the true gradient of the next K windows.

    python scripts/sg_fidelity.py outputs/dni_T4/DATE [more run dirs] --horizons 1 2 4 8 16 --boundaries 8

Prints one Markdown row per run and horizon: mean per-column cosine, RMS norm ratio |SG| / |G_K|, the fraction of
G_K's energy the SG explains, and the calibration β = E<SG, G_K> / E|SG|² (lmdni.fidelity has the definitions).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmdni.errors import LmdniError
from lmdni.fidelity import HORIZONS, probe_run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--horizons", nargs="+", type=int, default=list(HORIZONS))
    parser.add_argument("--boundaries", type=int, default=8)
    parser.add_argument("--columns", type=int, default=32)
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print("| run | K | cosine | norm ratio | explained | calibration β |")
    print("|---|---:|---:|---:|---:|---:|")
    for run in args.runs:
        try:
            rows = probe_run(run, args.horizons, args.boundaries, args.columns, args.device, args.checkpoint)
        except (LmdniError, ValueError) as exc:
            print(f"sg_fidelity: error: {run}: {exc}", file=sys.stderr)
            sys.exit(2)
        for r in rows:
            print(f"| {run} | {r['horizon']} | {r['cosine']:.3f} | {r['norm_ratio']:.3f} | {r['explained']:.3f} | {r['calibration']:.3f} |")


if __name__ == "__main__":
    main()
