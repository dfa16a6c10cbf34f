"""lmdni-compare's tables: per arm (runs that differ only in seed; the mean and the seeds' range), per run, and the
paper's method × unroll pivot; and what they are made of (the best valid BPC, the interpolated crossing of a target).
"""
from __future__ import annotations


def header(head: str, rule: str, target: float | None, reference: dict | None) -> list[str]:
    """A table's first two lines, with the target's and the reference's columns when asked for."""
    if target is not None:
        head += f" chars to {target:.4f} | seconds to {target:.4f} |"
        rule += "---:|---:|"
        if reference is not None:
            head += f" chars ratio to {reference['run'].name} | seconds ratio |"
            rule += "---:|---:|"
    return [head, rule]


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
    lines = header("| arm | seeds | best valid BPC | final valid BPC | test BPC | chars | chars/s | peak MB |",
                   "|---|---:|---:|---:|---:|---:|---:|---:|", target, reference)
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


def table(runs: list[dict], target: float | None, reference: dict | None = None) -> str:
    lines = header("| run | method | unroll | final valid BPC | best valid BPC | test BPC | chars | chars/s | peak MB |",
                   "|---|---|---:|---:|---:|---:|---:|---:|---:|", target, reference)
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
