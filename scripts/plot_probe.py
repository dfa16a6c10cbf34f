"""The probe's ceilings against the horizon K, one panel per corpus (docs/results/probe).

    python scripts/plot_probe.py docs/results/probe/*.json --out docs/results/probe/ceilings.png

Each JSON is one `lmdni-probe RUN --json` output; its file name (without .json) labels it. Per run: the linear
ceiling (solid) and the MLP ceiling (dashed), as the fraction of the true future gradient's variance each explains
on the reported half of the boundaries, on one scale for all panels (the run's own head, often far below 0, is in
the panel's title).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(4, len(args.reports))
    rows = math.ceil(len(args.reports) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False, sharex=True,
                                sharey=True)
    for ax, path in zip(axes.flat, args.reports):
        report = json.loads(path.read_text())
        ks = [h["k"] for h in report["horizons"]]
        ax.plot(ks, [h["linear_r2"] for h in report["horizons"]], "o-", color="C0", label="linear (ridge)")
        ax.plot(ks, [h["mlp_r2"] for h in report["horizons"]], "s--", color="C1", label="MLP")
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{path.stem}\nits head: {report['horizons'][0]['head_r2']:+.2f} at K=1", fontsize=8)
        ax.set_xlabel("K (windows ahead)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(args.reports):]:
        ax.axis("off")
    axes.flat[0].set_ylabel("variance explained (held-out)", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    figure.suptitle("How much of the future gradient a head could predict (lmdni-probe)", fontsize=10)
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
