"""`lmdni-compare RUN_DIR... [--target BPC|RUN] [--reference RUN] [--out DIR]`: BPC curves and a table across runs.

Accepts run directories or sweep directories (every sub-directory holding a metrics.jsonl is a run). Writes
`valid_bpc_vs_chars.png` and `valid_bpc_vs_seconds.png` (matplotlib, the `plot` extra) drawn as the DNI paper does:
one colour per unroll, one line style per method (BPTT dashed, DNI solid, DNI+Aux dotted), the target as a
horizontal line. Prints a Markdown table: final and best valid BPC, test BPC, chars/s, peak memory (GPU: most
allocated; CPU: the process's peak RSS), characters and seconds to reach the target and, with --reference, their
ratios to that run's.
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
    seed = config.get("seed")
    model = (config.get("model") or {}).get("name", "lstm")
    system = method if model == "lstm" else f"{method} ({model})"
    return {"run": run, "label": f"{system} T={unroll}" + (f" seed {seed}" if seed is not None else ""),
            "method": method, "model": model, "system": system, "unroll": unroll, "records": records,
            "results": results}


def best_valid(run: dict) -> float | None:
    scores = [r["valid_bpc"] for r in run["records"] if "valid_bpc" in r]
    return min(scores) if scores else None


def reaching(records: list[dict], target: float, key: str):
    """Characters (or seconds) at which the validation curve first reaches `target`. Evaluations are spaced
    (trainer.eval_every), so the crossing is interpolated linearly between the evaluation before it and the first at
    or below it; at the first evaluation, or exactly at an evaluation, it is that evaluation's value."""
    before = None
    for r in records:
        if "valid_bpc" not in r:
            continue
        if r["valid_bpc"] <= target:
            if before is None or before["valid_bpc"] == r["valid_bpc"]:
                return r[key]
            fraction = (before["valid_bpc"] - target) / (before["valid_bpc"] - r["valid_bpc"])
            value = before[key] + fraction * (r[key] - before[key])
            return round(value) if isinstance(r[key], int) else value
        before = r
    return None


def select(runs: list[dict], name: str) -> dict:
    """The run named `name`: its directory's path or its directory name; exits with a one-line error otherwise."""
    for run in runs:
        if str(run["run"]) == name or run["run"].name == name or run["run"].resolve() == Path(name).resolve():
            return run
    names = ", ".join(sorted(r["run"].name for r in runs))
    print(f"lmdni-compare: error: no run named {name!r} among the given runs ({names})", file=sys.stderr)
    sys.exit(2)


def resolve_target(runs: list[dict], target: str | None) -> float | None:
    """`--target` is a BPC, or a run whose best valid BPC is the target (e.g. BPTT at the longest unroll)."""
    if target is None:
        return None
    try:
        return float(target)
    except ValueError:
        value = best_valid(select(runs, target))
        if value is None:
            print(f"lmdni-compare: error: run {target!r} has no validation record", file=sys.stderr)
            sys.exit(2)
        return value


def table(runs: list[dict], target: float | None, reference: dict | None = None) -> str:
    head = "| run | method | unroll | final valid BPC | best valid BPC | test BPC | chars | chars/s | peak MB |"
    rule = "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    if target is not None:
        head += f" chars to {target:.4f} | seconds to {target:.4f} |"
        rule += "---:|---:|"
        if reference is not None:
            head += f" chars ratio to {reference['run'].name} | seconds ratio |"
            rule += "---:|---:|"
    lines = [head, rule]
    fmt = lambda v, spec: "" if v is None else format(v, spec)  # noqa: E731
    ratio = lambda v, ref: None if v is None or not ref else v / ref  # noqa: E731
    if reference is not None and target is not None:
        ref_chars, ref_seconds = (reaching(reference["records"], target, key) for key in ("chars", "seconds"))
    for run in sorted(runs, key=lambda r: (str(r["system"]), str(r["unroll"]), str(r["run"]))):
        recs, res = [r for r in run["records"] if "valid_bpc" in r], run["results"]
        if not recs:
            continue
        last = recs[-1]
        peak = max((r.get("peak_memory_mb", r.get("peak_rss_mb", 0)) for r in recs), default=0) or None
        line = (f"| {run['run'].name} | {run['system']} | {run['unroll']} | {last['valid_bpc']:.4f} | "
                f"{min(r['valid_bpc'] for r in recs):.4f} | {fmt(res.get('test_bpc'), '.4f')} | {last['chars']:,} | "
                f"{last['chars_per_sec']:,.0f} | {fmt(peak, ',.0f')} |")
        if target is not None:
            chars, seconds = reaching(recs, target, "chars"), reaching(recs, target, "seconds")
            line += f" {fmt(chars, ',')} | {fmt(seconds, ',.0f')} |"
            if reference is not None:
                line += f" {fmt(ratio(chars, ref_chars), '.2f')} | {fmt(ratio(seconds, ref_seconds), '.2f')} |"
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
    methods = sorted({r["system"] for r in runs})
    cells: dict = {}  # seeds of one cell side by side
    for r in sorted(runs, key=lambda r: str(r["run"])):
        key = (r["system"], r["unroll"])
        cells[key] = f"{cells[key]} / {value(r)}" if key in cells else value(r)
    lines = ["| method | " + " | ".join(f"T={u}" for u in unrolls) + " |",
             "|---|" + "---:|" * len(unrolls)]
    for method in methods:
        lines.append(f"| {method} | " + " | ".join(cells.get((method, u), "") for u in unrolls) + " |")
    return "\n".join(lines)


LINE_STYLES = {"bptt": "--", "dni": "-", "dni_aux": ":"}  # the DNI paper's figures


def styles(runs: list[dict]) -> list[tuple[str, str]]:
    """(colour, line style) per run: the colour says the unroll (and the model, where runs of several models are
    drawn), the style the method; seeds of one setting share both, so a setting's spread reads as a band."""
    def key(run):
        unroll = str(run["unroll"])
        return (run.get("model", "lstm"), not unroll.isdigit(), int(unroll) if unroll.isdigit() else unroll)

    colours = {k: f"C{i % 10}" for i, k in enumerate(sorted({key(r) for r in runs}))}
    return [(colours[key(r)], LINE_STYLES.get(r["method"], "-.")) for r in runs]


def plot(runs: list[dict], out: Path, target: float | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for key, xlabel, name in (("chars", "training characters", "valid_bpc_vs_chars.png"),
                              ("seconds", "training seconds", "valid_bpc_vs_seconds.png")):
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
        for run, (colour, style) in zip(runs, styles(runs)):
            recs = [r for r in run["records"] if "valid_bpc" in r]
            if recs:
                ax.plot([r[key] for r in recs], [r["valid_bpc"] for r in recs], marker=".", label=run["label"],
                        color=colour, linestyle=style)
        if target is not None:
            ax.axhline(target, color="black", linewidth=0.8, alpha=0.6, label=f"target {target:.4f}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation BPC")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / name)
        plt.close(fig)
        written.append(out / name)
    return written


def warn_environments(runs: list[dict]) -> None:
    """Runs made in different environments (lmdni.environment) follow different floating-point trajectories: say so,
    with what differs, so that a reader compares them as distributions over seeds, not run against run."""
    from .environment import differences

    records = [run["results"].get("environment") for run in runs]
    differing = differences(records)
    unrecorded = sum(1 for record in records if not record)
    if differing:
        print(f"lmdni-compare: note: these runs were made in different environments ({'; '.join(differing)}): "
              f"their trajectories differ beyond the seed, compare them over several seeds", file=sys.stderr)
    if unrecorded and unrecorded < len(records):
        print(f"lmdni-compare: note: {unrecorded} of {len(records)} runs record no environment (made before runs "
              f"recorded it)", file=sys.stderr)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="lmdni-compare", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories or sweep directories")
    parser.add_argument("--target", default=None, metavar="BPC|RUN",
                        help="report characters/seconds to reach this BPC, or this run's best valid BPC")
    parser.add_argument("--reference", default=None, metavar="RUN",
                        help="with --target: also the ratios of each run's characters/seconds to this run's")
    parser.add_argument("--out", type=Path, default=Path("."), help="where the PNGs go")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--pivot", action="store_true", help="also print method × unroll (the paper's Table 1)")
    args = parser.parse_args(argv)
    runs = [describe(run) for run in find_runs(args.runs)]
    if not runs:
        print("lmdni-compare: error: no runs (directories with metrics.jsonl) under the given paths", file=sys.stderr)
        sys.exit(2)
    target = resolve_target(runs, args.target)
    reference = select(runs, args.reference) if args.reference is not None else None
    if reference is not None and target is None:
        parser.error("--reference needs --target")
    print(table(runs, target, reference))
    warn_environments(runs)
    if args.pivot:
        print()
        print(pivot(runs))
    if not args.no_plot:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            for path in plot(runs, args.out, target):
                print(f"wrote {path}", file=sys.stderr)
        except ImportError:
            print("lmdni-compare: matplotlib is not installed (pip install 'lmdni[plot]'); table only",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
