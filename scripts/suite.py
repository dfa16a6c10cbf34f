"""The robustness suite: every method (and any candidate setting) on corpora of different structure, several seeds.

    python scripts/suite.py --out runs/suite                       # the full suite (about 50 min on 2 cores)
    python scripts/suite.py --out runs/suite --setting "dni_lr1e-4=method=dni dni.lr=1e-4"   # plus a candidate
    python scripts/suite.py --quick --out /tmp/suite               # a smoke run (CI)

Corpora: PTB characters; `lag` and `nested` (generated, lmdni.data.generated: spans of 2x/4x/8x an unroll of 4,
nested brackets and quotes, a counter); `code` (the running Python's standard-library sources) and `prose` (the
Python reference manual's text as shipped in pydoc_data, then the standard library's docstrings), neither written
for lmdni; Copy and Repeat-Copy. One size for all: hidden 256, batch 64, unroll 4 (or `--hidden`, `--batch`,
`--unroll`; the smaller hidden 128, batch 32 takes half the time but misranks settings on PTB and code). Each run is
an ordinary lmdni run (built with `build_trainer`) in OUT/runs/CORPUS/SETTING_T<unroll>[_H<hidden>_B<batch>]_seedS
(the size tag on every size but hidden 128, batch 32); a run whose results.json exists is not run again, so an
interrupted suite resumes.

Prints one Markdown table and writes it to --table (and OUT/summary.json): per corpus and setting, the whole-split
valid BPC of each seed (copy tasks: longest length solved), the gain over BPTT with the same seed (and, on BPTT's
row, its seed-to-seed spread), chars/s, and the SG-fidelity probe at K = 16 windows ahead (lmdni.fidelity): the
mean per-column cosine and the calibration β (1: the SG is the expected future gradient; 0: it is noise).
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import statistics
import sys
import sysconfig
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

TEXT_CORPORA = ("ptb", "lag", "nested", "code", "prose")
TASKS = ("copy", "repeat_copy")
METHODS = {"bptt": "method=bptt", "dni": "method=dni", "dni_aux": "method=dni_aux"}
FULL = {"hidden": 256, "batch": 64, "unroll": 4, "text_chars": 2_000_000, "task_chars": 4_000_000,
        "corpus_chars": 2_400_000, "seeds": [1, 2], "boundaries": 8}
QUICK = {"hidden": 16, "batch": 8, "unroll": 4, "text_chars": 6_000, "task_chars": 6_000,
         "corpus_chars": 30_000, "seeds": [1], "boundaries": 2}


def write_corpus(name: str, path: Path, chars: int) -> None:
    """The text corpora that are not PTB, as files (data=text reads them)."""
    from lmdni.data.generated import lag_text, nested_text

    if name == "lag":
        text = lag_text(chars, seed=0)
    elif name == "nested":
        text = nested_text(chars, seed=0)
    elif name == "code":
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        text = "".join(p.read_text(encoding="utf-8", errors="replace") for p in sorted(stdlib.glob("*.py")))
    elif name == "prose":
        text = python_prose()
    else:
        raise ValueError(name)
    path.write_text(text[:chars], encoding="utf-8")


def python_prose() -> str:
    """English technical prose: the reference manual's topics (pydoc_data) and the standard library's docstrings."""
    import ast

    from pydoc_data.topics import topics

    parts = [topics[key] for key in sorted(topics)]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.rglob("*.py")):
        where = path.relative_to(stdlib).parts
        if where[0] in ("site-packages", "dist-packages", "test", "idlelib", "lib2to3") or "tests" in where:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    parts.append(doc)
    return "\n\n".join(parts)


def corpus_overrides(name: str, out: Path, size: dict) -> list[str]:
    if name == "ptb":
        return ["data=ptb", f"trainer.max_chars={size['text_chars']}"]
    if name in TASKS:  # the protocol of the copy records in docs/results: a higher learning rate
        return [f"data={name}", "trainer.lr=2e-3", f"trainer.max_chars={size['task_chars']}"]
    path = out / "corpora" / f"{name}.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_corpus(name, path, size["corpus_chars"])
    return ["data=text", f"data.path={path}", "data.valid_fraction=0.05", "data.test_fraction=0.05",
            f"trainer.max_chars={size['text_chars']}"]


def run_one(job: dict) -> dict:
    """One lmdni run in a worker process: compose the config, build, train, probe."""
    from lmdni.errors import ConfigError
    from lmdni.fidelity import probe_run
    from lmdni.metrics import MetricsLog
    from lmdni.run import build_trainer, compose_config

    logging.basicConfig(level=logging.WARNING)
    run_dir = Path(job["run_dir"])
    results = run_dir / "results.json"
    if not results.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("metrics.jsonl", "last.pt", "best.pt"):  # an unfinished run starts again
            (run_dir / stale).unlink(missing_ok=True)
        (run_dir / "overrides.json").write_text(json.dumps(job["overrides"]))
        try:
            cfg = compose_config(job["overrides"])
        except Exception as exc:  # Hydra's override errors: the first line names the key
            raise ConfigError(f"bad override for {job['setting']}: {str(exc).splitlines()[0]}") from None
        trainer = build_trainer(cfg, run_dir)
        trainer.train(MetricsLog(run_dir / "metrics.jsonl"))
    record = {**job, "results": json.loads(results.read_text())}
    if job["probe"]:
        probe = run_dir / "fidelity.json"
        if not probe.exists():
            probe.write_text(json.dumps(probe_run(run_dir, boundaries=job["boundaries"], columns=16)))
        record["fidelity"] = json.loads(probe.read_text())
    return record


def metric(record: dict) -> float:
    """Lower is better for both: valid BPC, or minus the longest length solved."""
    results = record["results"]
    return -results["solved"] if "solved" in results else results["valid_bpc"]


def table(records: list[dict], settings: list[str]) -> str:
    lines = ["| corpus | setting | valid BPC (copy: solved) per seed | gain over bptt per seed (bptt: spread) | "
             "mean gain | share of best gain | chars/s | SG cosine, β at K=16 |", "|---|---|---|---|---:|---:|---:|---|"]
    by_key = {(r["corpus"], r["setting"], r["seed"]): r for r in records}
    for corpus in dict.fromkeys(r["corpus"] for r in records):
        seeds = sorted({r["seed"] for r in records if r["corpus"] == corpus})
        gains = {}
        for setting in settings:
            if setting != "bptt" and all((corpus, s, seed) in by_key for s in (setting, "bptt") for seed in seeds):
                gains[setting] = [metric(by_key[corpus, "bptt", seed]) - metric(by_key[corpus, setting, seed])
                                  for seed in seeds]
        best = max((statistics.mean(g) for g in gains.values()), default=0.0)
        for setting in settings:
            runs = [by_key.get((corpus, setting, seed)) for seed in seeds]
            if not all(runs):
                continue
            task = "solved" in runs[0]["results"]
            values = " / ".join(str(r["results"]["solved"]) if task else f"{r['results']['valid_bpc']:.4f}"
                                for r in runs)
            gain = gains.get(setting)
            per_seed = " / ".join(f"{g:+.0f}" if task else f"{g:+.4f}" for g in gain) if gain else "—"
            if setting == "bptt" and len(runs) > 1:
                spread = max(metric(r) for r in runs) - min(metric(r) for r in runs)
                per_seed = f"spread {spread:.0f}" if task else f"spread {spread:.4f}"
            mean = (f"{statistics.mean(gain):+.2f}" if task else f"{statistics.mean(gain):+.4f}") if gain else "—"
            share = f"{max(statistics.mean(gain), 0) / best:.0%}" if gain and best > 0 else "—"
            speed = statistics.mean(r["results"]["chars_per_sec"] for r in runs)
            cosines = "—"
            if all(r.get("fidelity") for r in runs):
                at = lambda key: statistics.mean(next(f[key] for f in r["fidelity"] if f["horizon"] == 16)  # noqa: E731
                                                 for r in runs)
                cosines = f"{at('cosine'):.3f}, {at('calibration'):.2f}"
            lines.append(f"| {corpus} | {setting} | {values} | {per_seed} | {mean} | {share} | {speed:,.0f} | "
                         f"{cosines} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="where runs and generated corpora go")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and budgets: a smoke test (CI)")
    parser.add_argument("--corpora", nargs="+", default=[*TEXT_CORPORA, *TASKS])
    parser.add_argument("--methods", nargs="*", default=list(METHODS), help="of bptt, dni, dni_aux")
    parser.add_argument("--setting", action="append", default=[], help="a candidate: NAME=OVERRIDES")
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--unroll", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=None, help="hidden size (default 256: with batch 64 it "
                        "ranks candidates as PTB at 10M characters does, 128 does not: docs/results/suite)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 64)")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (each gets one thread)")
    parser.add_argument("--no-probe", dest="probe", action="store_false")
    parser.add_argument("--table", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    size = dict(QUICK if args.quick else FULL)
    if args.seeds:
        size["seeds"] = args.seeds
    unroll = args.unroll or size["unroll"]
    # each size gets its own run directories: a finished run is reused only at the size it was made at. Hidden 128,
    # batch 32 carries no tag (nor does the quick mode's size): docs/results/suite cites its runs by those names
    hidden, batch = args.hidden or size["hidden"], args.batch or size["batch"]
    untagged = (QUICK["hidden"], QUICK["batch"]) if args.quick else (128, 32)
    tag = "" if (hidden, batch) == untagged else f"_H{hidden}_B{batch}"
    size["hidden"], size["batch"] = hidden, batch
    unknown = set(args.corpora) - {*TEXT_CORPORA, *TASKS}
    if unknown or set(args.methods) - set(METHODS):
        parser.error(f"unknown corpus or method: {sorted(unknown | (set(args.methods) - set(METHODS)))}")
    settings = {m: METHODS[m] for m in args.methods}
    for spec in args.setting:
        name, _, overrides = spec.partition("=")
        if not overrides:
            parser.error(f"--setting wants NAME=OVERRIDES, got {spec!r}")
        settings[name] = overrides
    if "bptt" not in settings:
        settings = {"bptt": METHODS["bptt"], **settings}  # the reference every gain is measured against
    common = [f"model.hidden_size={size['hidden']}", f"trainer.batch_size={size['batch']}",
              f"trainer.unroll={unroll}", "trainer.patience=1000", "trainer.progress=false", "device=cpu",
              f"threads={1 if args.jobs > 1 else 2}"]
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for corpus in args.corpora:
        data = corpus_overrides(corpus, args.out, size)
        budget = int(next(o for o in data if o.startswith("trainer.max_chars=")).split("=")[1])
        for seed in size["seeds"]:
            for name, overrides in settings.items():
                jobs.append({"corpus": corpus, "setting": name, "seed": seed, "boundaries": size["boundaries"],
                             "probe": args.probe and "method=bptt" not in overrides,
                             "run_dir": str(args.out / "runs" / corpus / f"{name}_T{unroll}{tag}_seed{seed}"),
                             "overrides": [*common, *data, f"trainer.eval_every={budget // 4}", f"seed={seed}",
                                           *shlex.split(overrides)]})
    from lmdni.errors import LmdniError

    started = time.time()
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        records = []
        try:
            for record in pool.map(run_one, jobs):
                records.append(record)
                print(f"[{time.time() - started:6.0f} s] {record['corpus']} {record['setting']} seed "
                      f"{record['seed']}: {-metric(record) if 'solved' in record['results'] else metric(record):.4f}",
                      file=sys.stderr)
        except LmdniError as exc:  # bad data or settings: one line; finished runs are kept and reused next time
            pool.shutdown(cancel_futures=True)
            print(f"suite: error: {exc}", file=sys.stderr)
            sys.exit(2)
    (args.out / "summary.json").write_text(json.dumps(records, indent=1))
    text = table(records, list(settings))
    print(text)
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(text + "\n")


if __name__ == "__main__":
    main()
