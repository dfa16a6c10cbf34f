"""`lmdni-compare RUN_DIR... [--target BPC|RUN] [--reference RUN] [--out DIR] [--per-run]`: a table and BPC curves.

Accepts run directories or sweep directories (every sub-directory holding a metrics.jsonl is a run). Runs that
differ only in their seed (or budget, threads, device, display) are one *arm*: one table row, with the mean over its
seeds and their range, and one curve, the mean with a min–max band (`--per-run`: a row and a curve per run). The table:
best and final valid BPC, test BPC, chars/s, peak memory (GPU: most allocated; CPU: peak RSS), characters and seconds
to reach `--target` and, with `--reference`, their ratios to that run's (lmdni.tables). The figures (lmdni.plots):
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
from .tables import arm_table, best_valid, pivot, reaching, table  # noqa: F401  (reaching: scripts, tests)


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
