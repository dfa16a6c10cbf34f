"""Peak training memory against the unroll: the memory side of DNI's argument (issue: unroll 8 with DNI against BPTT
at unroll 20 and 40). Each configuration trains in its own process, so one run's peak cannot hide another's.

    python scripts/memory_unroll.py --hidden 256 --batch 1024 --runs bptt:8 bptt:20 bptt:40 dni:8 dni_aux:8

For each run: RSS once the trainer is built (weights, data, Python and torch), the peak RSS over --windows training
windows after that, and their difference, the memory training itself takes (activations kept for the backward,
gradients, optimizer state, the SG head's work). The peak is the kernel's high-water mark (VmHWM), reset after
building through /proc/self/clear_refs so the build's own transient peak does not count. Linux only.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def status_mb(field: str) -> float:
    from lmdni.metrics import process_memory_mb

    value = process_memory_mb(field)
    if value is None:
        raise RuntimeError(f"no {field} in /proc/self/status")
    return value


def measure(method: str, unroll: int, hidden: int, batch: int, windows: int) -> dict:
    import torch

    from lmdni.benchmark import bench_trainer, memory_corpus

    torch.set_num_threads(1)
    data = torch.randint(50, (batch * unroll * (windows + 2) + 1,), generator=torch.Generator().manual_seed(0))
    trainer = bench_trainer(method, hidden, batch, unroll, "cpu", memory_corpus(data, 50), ["threads=1"])
    built = status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    for _ in range(windows):
        trainer.train_window()
    peak = status_mb("VmHWM")
    return {"method": method, "unroll": unroll, "built_mb": built, "peak_mb": peak, "training_mb": peak - built}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=["bptt:8", "bptt:20", "bptt:40", "dni:8", "dni_aux:8"],
                        help="METHOD:UNROLL per run; the last BPTT run is the reference of the ratio column")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, unroll = args.child.split(":")
        print(json.dumps(measure(method, int(unroll), args.hidden, args.batch, args.windows)))
        return
    if not Path("/proc/self/clear_refs").exists():
        sys.exit("memory_unroll.py: error: needs Linux's /proc (VmHWM, clear_refs)")
    rows = []
    for spec in args.runs:
        if spec.count(":") != 1 or not spec.split(":")[1].isdigit():
            sys.exit(f"memory_unroll.py: error: run {spec!r} is not METHOD:UNROLL (e.g. dni:8)")
        child = subprocess.run([sys.executable, __file__, "--child", spec, "--hidden", str(args.hidden),
                                "--batch", str(args.batch), "--windows", str(args.windows)],
                               capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"memory_unroll.py: error: {spec} failed: {child.stderr.strip().splitlines()[-1]}")
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    reference = [r for r in rows if r["method"] == "bptt"][-1:] or rows[-1:]
    ref = reference[0]
    print(f"hidden {args.hidden}, batch {args.batch}, {args.windows} windows, one thread; ratio to "
          f"{ref['method']} T={ref['unroll']}")
    print("| method | unroll | RSS built MB | peak RSS MB | training MB | training ratio | peak ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['unroll']} | {r['built_mb']:,.0f} | {r['peak_mb']:,.0f} | "
              f"{r['training_mb']:,.0f} | {r['training_mb'] / ref['training_mb']:.2f} | "
              f"{r['peak_mb'] / ref['peak_mb']:.2f} |")


if __name__ == "__main__":
    main()
