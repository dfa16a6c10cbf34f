"""`lmdni-compare RUN_DIR... [--target BPC|RUN] [--reference RUN] [--out DIR] [--per-run]`: a table and BPC curves.

Accepts run directories or sweep directories (every sub-directory holding a metrics.jsonl is a run). Runs that
differ only in their seed (or budget, threads, device, display) are one *arm*: one table row, with the mean over its
seeds and their range, and one curve, the mean with a min–max band (`--per-run`: a row and a curve per run). The table:
best and final valid BPC, test BPC, chars/s, peak memory (GPU: most allocated; CPU: peak RSS), characters and seconds
to reach `--target` and, with `--reference`, their ratios to that run's. The figures (lmdni.plots):
`valid_bpc_vs_chars.png` and `valid_bpc_vs_seconds.png`, written to `--out`, by default the compared folder.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .metrics import read_metrics
from .rundir import RESUME_MAY_CHANGE, flatten


def fail(message: str) -> None:
    print(f"lmdni-compare: error: {message}", file=sys.stderr)
    sys.exit(2)


def find_runs(paths: list[Path]) -> list[Path]:
    """Every run under the paths; a path that does not exist, or holds no run, is an error."""
    runs = []
    for path in paths:
        if not path.exists():
            fail(f"{path} does not exist")
        found = [path] if (path / "metrics.jsonl").is_file() else \
            sorted(p.parent for p in path.rglob("metrics.jsonl")) if path.is_dir() else []
        if not found:
            fail(f"{path} holds no run (no metrics.jsonl in it or below it)")
        runs.extend(found)
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
            "results": results, "config": flatten(config), "corpus": (config.get("data") or {}).get("name"),
            "hidden": (config.get("model") or {}).get("hidden_size"),
            "batch": (config.get("trainer") or {}).get("batch_size")}


# settings that leave a run's trajectory alone, and the seed: runs that differ only in these are one arm
NOT_THE_ARM = ("seed", *RESUME_MAY_CHANGE, "trainer.eval_every", "trainer.eval_batch_size")
SHOWN_ALREADY = ("method", "trainer.unroll", "model.name")


def arms(runs: list[dict]) -> list[dict]:
    """Runs grouped into arms (runs that differ only in `NOT_THE_ARM`). An arm's label is its method and unroll,
    plus the settings that set it apart from the other arms."""
    def setting(run):  # BPTT reads no dni.* key: its arm does not depend on them
        return tuple(sorted((k, str(v)) for k, v in run["config"].items() if k not in NOT_THE_ARM and
                            not (run["method"] == "bptt" and k.startswith("dni."))))

    groups: dict = {}
    for run in runs:
        groups.setdefault((run["system"], str(run["unroll"]), setting(run)), []).append(run)
    keys = {k for *_, items in groups for k, _ in items}
    absent = object()  # a key one arm's config has and another's lacks sets them apart too (BPTT's dni.*: never)
    varying = sorted(k for k in keys if k not in SHOWN_ALREADY and
                     len({dict(items).get(k, absent) for system, _, items in groups
                          if not (system.startswith("bptt") and k.startswith("dni."))}) > 1)
    result = []
    for (system, unroll, items), members in groups.items():
        extra = " ".join(f"{k}={dict(items)[k]}" for k in varying if k in dict(items))
        result.append({"system": system, "unroll": members[0]["unroll"], "runs": members,
                       "label": f"{system} T={unroll}" + (f" {extra}" if extra else ""),
                       "colour_key": f"{system} {extra}".strip()})
    return sorted(result, key=lambda a: (a["system"], str(a["unroll"]), a["label"]))


def spread(values: list, spec: str) -> str:
    """The mean, and with several seeds their range: `1.6510 (1.6508–1.6514)`."""
    values = [v for v in values if v is not None]
    if not values:
        return ""
    mean = sum(values) / len(values)
    if isinstance(values[0], int) and spec.endswith("d") or spec == ",":
        mean = round(mean)
    if min(values) == max(values):
        return format(mean, spec)
    return f"{format(mean, spec)} ({format(min(values), spec)}–{format(max(values), spec)})"


def arm_table(groups: list[dict], target: float | None, reference: dict | None = None) -> str:
    """One row per arm: the mean over its seeds and (with several) the lowest and highest seed in brackets;
    characters and seconds to the target over the seeds that reach it (`k of n` when not all do)."""
    head = "| arm | seeds | best valid BPC | final valid BPC | test BPC | chars | chars/s | peak MB |"
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|"
    if target is not None:
        head += f" chars to {target:.4f} | seconds to {target:.4f} |"
        rule += "---:|---:|"
        if reference is not None:
            head += f" chars ratio to {reference['run'].name} | seconds ratio |"
            rule += "---:|---:|"
    lines = [head, rule]
    if reference is not None and target is not None:
        ref_chars, ref_seconds = (reaching(reference["records"], target, key) for key in ("chars", "seconds"))
    for arm in groups:
        runs = [run for run in arm["runs"] if any("valid_bpc" in r for r in run["records"])]
        if not runs:
            continue
        recs = [[r for r in run["records"] if "valid_bpc" in r] for run in runs]
        peaks = [max((r.get("peak_memory_mb", r.get("peak_rss_mb", 0)) for r in rs), default=0) or None for rs in recs]
        line = (f"| {arm['label']} | {len(runs)} | {spread([min(r['valid_bpc'] for r in rs) for rs in recs], '.4f')} | "
                f"{spread([rs[-1]['valid_bpc'] for rs in recs], '.4f')} | "
                f"{spread([run['results'].get('test_bpc') for run in runs], '.4f')} | "
                f"{spread([rs[-1]['chars'] for rs in recs], ',')} | "
                f"{spread([rs[-1]['chars_per_sec'] for rs in recs], ',.0f')} | {spread(peaks, ',.0f')} |")
        if target is not None:
            chars = [reaching(rs, target, "chars") for rs in recs]
            seconds = [reaching(rs, target, "seconds") for rs in recs]
            reached = sum(c is not None for c in chars)
            some = f" ({reached} of {len(runs)})" if 0 < reached < len(runs) else ""
            line += f" {spread(chars, ',')}{some} | {spread(seconds, ',.0f')} |"
            if reference is not None:
                ratios = [c / ref_chars if c is not None and ref_chars else None for c in chars]
                seconds_ratios = [t / ref_seconds if t is not None and ref_seconds else None for t in seconds]
                line += f" {spread(ratios, '.2f')} | {spread(seconds_ratios, '.2f')} |"
        lines.append(line)
    return "\n".join(lines)


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
    parser.add_argument("--out", type=Path, default=None,
                        help="where the PNGs go (default: the compared folder, or the folders' common parent)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--per-run", action="store_true", help="a row and a curve per run, not per arm")
    parser.add_argument("--pivot", action="store_true", help="also print method × unroll (the paper's Table 1)")
    args = parser.parse_args(argv)
    runs = [describe(run) for run in find_runs(args.runs)]
    groups = arms(runs)
    target = resolve_target(runs, args.target)
    reference = select(runs, args.reference) if args.reference is not None else None
    if reference is not None and target is None:
        parser.error("--reference needs --target")
    print(f"lmdni-compare: {len(runs)} runs in {len(groups)} arms", file=sys.stderr)
    print(table(runs, target, reference) if args.per_run else arm_table(groups, target, reference))
    warn_environments(runs)
    if args.pivot:
        print()
        print(pivot(runs))
    if not args.no_plot:
        out = args.out or Path(os.path.commonpath([str(p.resolve()) for p in args.runs]))
        if out.is_file():
            out = out.parent
        curves = [{"label": f"{run['run'].name}: {run['label']}", "colour_key": str(run["run"]),
                   "unroll": run["unroll"], "runs": [run]} for run in runs] if args.per_run else groups
        try:
            from .plots import plot

            out.mkdir(parents=True, exist_ok=True)
            for path in plot(curves, out, target):
                print(f"lmdni-compare: wrote {path}", file=sys.stderr)
        except ImportError:
            print("lmdni-compare: matplotlib is not installed (pip install 'lmdni[plot]'); table only",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
