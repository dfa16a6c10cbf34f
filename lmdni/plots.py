"""lmdni-compare's figures: validation BPC against training characters and against training seconds.

One curve per arm (runs that differ only in seed): the mean over its seeds, with a shaded band from the lowest to the
highest seed (`--per-run`: one curve per run). Every arm is told apart by a (colour, dash) pair of its own: the colour
says the method (and whatever else sets the arm apart, e.g. `dni.scale=0.5`), the dash the unroll. The title names the
corpus and the model's size; characters are in millions, seconds in minutes when the runs are long.
"""
from __future__ import annotations

from pathlib import Path

DASHES = ["-", (0, (6, 2)), (0, (1.5, 1.5)), (0, (6, 2, 1.5, 2)), (0, (10, 3)), (0, (3, 1, 1, 1, 1, 1)),
          (0, (1, 3)), (0, (12, 2, 2, 2))]


def styles(arms: list[dict]) -> list[tuple[str, object]]:
    """(colour, dash) per arm, each pair distinct: colours by `colour_key` (method and distinguishing settings),
    dashes by unroll."""
    def unroll_order(unroll):
        text = str(unroll)
        return (not text.isdigit(), int(text) if text.isdigit() else text)

    colour_keys = sorted({arm["colour_key"] for arm in arms})
    unrolls = sorted({arm["unroll"] for arm in arms}, key=unroll_order)
    palette = [f"C{i}" for i in range(10)] + ["#8c564b80", "#17becf80", "#bcbd2280", "#7f7f7f80"]
    return [(palette[colour_keys.index(arm["colour_key"]) % len(palette)],
             DASHES[unrolls.index(arm["unroll"]) % len(DASHES)]) for arm in arms]


def curve(runs: list[dict], key: str):
    """(x, mean, low, high) over the runs' evaluations, aligned by index (the runs of an arm evaluate at the same
    characters; the mean of their seconds is the x of the seconds figure)."""
    series = [[r for r in run["records"] if "valid_bpc" in r] for run in runs]
    length = min(len(s) for s in series)
    x = [sum(s[i][key] for s in series) / len(series) for i in range(length)]
    values = [[s[i]["valid_bpc"] for s in series] for i in range(length)]
    return x, [sum(v) / len(v) for v in values], [min(v) for v in values], [max(v) for v in values]


def title(runs: list[dict]) -> str:
    def values(name):
        return "/".join(sorted({str(run.get(name)) for run in runs if run.get(name) is not None})) or "?"

    return f"{values('corpus')} · {values('model')}, hidden {values('hidden')} · batch {values('batch')}"


def plot(arms: list[dict], out: Path, target: float | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [run for arm in arms for run in arm["runs"]]
    written = []
    longest = max((r["seconds"] for run in runs for r in run["records"] if "seconds" in r), default=0)
    most = max((r["chars"] for run in runs for r in run["records"]), default=0)
    chars_unit, chars_name = (1e6, "millions") if most >= 1e6 else (1e3, "thousands")
    seconds_unit, seconds_name = (60.0, "minutes") if longest > 300 else (1.0, "seconds")
    for key, unit, xlabel, name in (
            ("chars", chars_unit, f"training characters ({chars_name})", "valid_bpc_vs_chars.png"),
            ("seconds", seconds_unit, f"training time ({seconds_name}, evaluation excluded)",
             "valid_bpc_vs_seconds.png")):
        fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120, layout="constrained")
        for arm, (colour, dash) in zip(arms, styles(arms)):
            if not all(any("valid_bpc" in r for r in run["records"]) for run in arm["runs"]):
                continue
            x, mean, low, high = curve(arm["runs"], key)
            x = [value / unit for value in x]
            seeds = len(arm["runs"])
            label = arm["label"] + (f" ({seeds} seeds)" if seeds > 1 else "")
            ax.plot(x, mean, color=colour, linestyle=dash, linewidth=1.6, label=label)
            if seeds > 1:
                ax.fill_between(x, low, high, color=colour, alpha=0.15, linewidth=0)
        if target is not None:
            ax.axhline(target, color="black", linewidth=0.8, alpha=0.6, label=f"target {target:.4f}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation BPC")
        ax.set_title(title(runs), fontsize=10)
        ax.ticklabel_format(axis="x", style="plain", useOffset=False)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, handlelength=4.5)
        fig.savefig(out / name)
        plt.close(fig)
        written.append(out / name)
    return written
