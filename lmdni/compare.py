"""`lmdni-compare RUN_DIR... [--target BPC] [--out DIR]`: BPC curves and a table across runs.

Accepts run directories or sweep directories (every sub-directory holding a metrics.jsonl is a run). Writes
`valid_bpc_vs_chars.png` and `valid_bpc_vs_seconds.png` (matplotlib, the `plot` extra) and prints a Markdown table:
final and best valid BPC, test BPC, chars/s, peak GPU memory, and characters / seconds to reach `--target`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .metrics import read_metrics


def find_runs(paths: list[Path]) -> list[Path]:
    runs = []
    for path in paths:
        if (path / "metrics.jsonl").is_file():
            runs.append(path)
        elif path.is_dir():
            runs.extend(sorted(p.parent for p in path.rglob("metrics.jsonl")))
    return runs


def describe(run: Path) -> dict:
    records = read_metrics(run / "metrics.jsonl")
    results = json.loads((run / "results.json").read_text()) if (run / "results.json").is_file() else {}
    config = {}
    if (run / ".hydra" / "config.yaml").is_file():
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(OmegaConf.load(run / ".hydra" / "config.yaml"))
    method = results.get("method") or config.get("method", "?")
    unroll = results.get("unroll") or config.get("trainer", {}).get("unroll", "?")
    return {"run": run, "label": f"{method} T={unroll} ({run.name})", "method": method, "unroll": unroll,
            "records": records, "results": results}


def first_reaching(records: list[dict], target: float, key: str):
    for r in records:
        if r.get("valid_bpc", float("inf")) <= target:
            return r[key]
    return None


def table(runs: list[dict], target: float | None) -> str:
    head = "| run | method | unroll | final valid BPC | best valid BPC | test BPC | chars | chars/s | peak MB |"
    rule = "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    if target is not None:
        head += f" chars to {target} | seconds to {target} |"
        rule += "---:|---:|"
    lines = [head, rule]
    fmt = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
    for run in sorted(runs, key=lambda r: (str(r["method"]), str(r["unroll"]), str(r["run"]))):
        recs, res = [r for r in run["records"] if "valid_bpc" in r], run["results"]
        if not recs:
            continue
        last = recs[-1]
        peak = max((r.get("peak_memory_mb", 0) for r in recs), default=0) or None
        line = (f"| {run['run'].name} | {run['method']} | {run['unroll']} | {last['valid_bpc']:.4f} | "
                f"{min(r['valid_bpc'] for r in recs):.4f} | {fmt(res.get('test_bpc'), '.4f')} | {last['chars']:,} | "
                f"{last['chars_per_sec']:,.0f} | {fmt(peak, ',.0f')} |")
        if target is not None:
            line += (f" {fmt(first_reaching(recs, target, 'chars'), ',')} |"
                     f" {fmt(first_reaching(recs, target, 'seconds'), ',.0f')} |")
        lines.append(line)
    return "\n".join(lines)


def pivot(runs: list[dict]) -> str:
    """The paper's Table 1 shape: best valid BPC (or longest solved length for copy tasks), method × unroll."""
    def value(run):
        if "solved" in run["results"]:
            return str(run["results"]["solved"])
        recs = [r["valid_bpc"] for r in run["records"] if "valid_bpc" in r]
        return f"{min(recs):.4f}" if recs else ""

    unrolls = sorted({r["unroll"] for r in runs}, key=lambda u: (not isinstance(u, int), u))
    methods = sorted({r["method"] for r in runs})
    cells = {(r["method"], r["unroll"]): value(r) for r in runs}
    lines = ["| method | " + " | ".join(f"T={u}" for u in unrolls) + " |",
             "|---|" + "---:|" * len(unrolls)]
    for method in methods:
        lines.append(f"| {method} | " + " | ".join(cells.get((method, u), "") for u in unrolls) + " |")
    return "\n".join(lines)


def plot(runs: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for key, xlabel, name in (("chars", "training characters", "valid_bpc_vs_chars.png"),
                              ("seconds", "training seconds", "valid_bpc_vs_seconds.png")):
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
        for run in runs:
            recs = [r for r in run["records"] if "valid_bpc" in r]
            if recs:
                ax.plot([r[key] for r in recs], [r["valid_bpc"] for r in recs], marker=".", label=run["label"])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation BPC")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / name)
        plt.close(fig)
        written.append(out / name)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="lmdni-compare", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories or sweep directories")
    parser.add_argument("--target", type=float, default=None, help="report characters/seconds to reach this BPC")
    parser.add_argument("--out", type=Path, default=Path("."), help="where the PNGs go")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--pivot", action="store_true", help="also print method × unroll (the paper's Table 1)")
    args = parser.parse_args(argv)
    runs = [describe(run) for run in find_runs(args.runs)]
    if not runs:
        print("lmdni-compare: error: no runs (directories with metrics.jsonl) under the given paths", file=sys.stderr)
        sys.exit(2)
    print(table(runs, args.target))
    if args.pivot:
        print()
        print(pivot(runs))
    if not args.no_plot:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            for path in plot(runs, args.out):
                print(f"wrote {path}", file=sys.stderr)
        except ImportError:
            print("lmdni-compare: matplotlib is not installed (pip install 'lmdni[plot]'); table only",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
