"""Run a grid of lmdni-train jobs as parallel processes on one machine and collect their results in one file.

    python scripts/grid.py --jobs 8 --out grid_dir --common "trainer.max_chars=10000000" \
        --run "bptt=method=bptt" --run "dni_s01=method=dni dni.scale=0.1"

Each --run is NAME=OVERRIDES. Hydra multirun (`lmdni-train -m ...`) runs jobs one after another; this runs them side
by side, which is what a GPU with small models (or a many-core CPU) wants. Writes OUT/summary.json (results and
metrics of every run) and prints a table sorted by best validation BPC.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def run_one(name, overrides, common, out, python):
    run_dir = out / name
    cmd = [python, "-m", "lmdni", *shlex.split(common), *shlex.split(overrides), f"hydra.run.dir={run_dir}",
           "trainer.progress=false"]
    start = time.time()
    with open(out / f"{name}.log", "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    record = {"name": name, "overrides": overrides, "returncode": code, "wall_seconds": time.time() - start}
    if (run_dir / "results.json").exists():
        record["results"] = json.loads((run_dir / "results.json").read_text())
    if (run_dir / "metrics.jsonl").exists():
        record["metrics"] = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="NAME=OVERRIDES")
    parser.add_argument("--common", default="", help="overrides for every run")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = [spec.split("=", 1) for spec in args.run]
    records = []

    def job(spec):
        record = run_one(spec[0], spec[1], args.common, args.out, sys.executable)
        records.append(record)  # written as each run ends, so a killed grid still leaves what finished
        (args.out / "summary.json").write_text(json.dumps(records, indent=1))
        return record

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(job, runs))
    print("| run | overrides | best valid BPC | test BPC | copy: solved | chars | chars/s | exit |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in sorted(records, key=lambda r: (r.get("results", {}).get("best_valid_bpc", 99), r["name"])):
        res = r.get("results", {})
        print(f"| {r['name']} | {r['overrides']} | {res.get('best_valid_bpc', float('nan')):.4f} | "
              f"{res.get('test_bpc', float('nan')):.4f} | {res.get('solved', '')} | {res.get('chars', 0):,} | "
              f"{res.get('chars_per_sec', 0):,.0f} | {r['returncode']} |")


if __name__ == "__main__":
    main()
