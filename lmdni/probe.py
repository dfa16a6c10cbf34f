"""lmdni-probe: how much of the future gradient can any synthetic gradient predict, on a run's own corpus?

A run's head is trained online on a bootstrapped target, so its fit to the true future gradient (lmdni.fidelity)
says what this head learned, not what a head could learn. The probe asks the second question. At N boundaries of a
split it collects the boundary state's head features (what the SG head reads), the head's SG, and the true
discounted future gradient G_K for each horizon K (lmdni.fidelity's `future_gradients`: what the SG's fixed point is
as K grows, in the SG's units). Then, per K, on the first half of the boundaries it fits

* a ridge regression from the features to G_K: the best linear head (the penalty chosen on the fit half's last
  quarter, then refitted on all of it), and
* a small MLP (one hidden ReLU layer, early-stopped on the same quarter),

and on the second half, which neither fit has seen, reports the fraction of G_K's variance (summed over the state,
around the fit half's mean) that each explains: `head_r2` (the run's own head; 0 for a run without one),
`linear_r2`, `mlp_r2`. Also the head's mean per-row cosine to G_K, β = <SG, G_K> / |SG|² and G_K's RMS row norm.

How to read it. The ceilings bound what an SG of that shape could inject: near 0, the future gradient is
unpredictable from the state and any SG is noise by necessity; well above `head_r2`, there is a predictable part the
online head misses. Most of a single G_K is the unpredictable future (which characters come), so even an SG equal
to E[G_K | s] explains only the predictable fraction: that fraction is what the ceilings measure.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from .fidelity import HORIZONS, future_gradients

RIDGE_PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # times the features' mean squared scale
MIN_BOUNDARIES = 4  # two to fit, two to report


# ------------------------------------------------------------------------------------------------ the fits
def ridge_fit(features: torch.Tensor, targets: torch.Tensor, penalty: float):
    """The ridge solution with an unpenalised intercept: (weight (D, out), bias (out,)) minimising
    |targets - features @ weight - bias|² + penalty · |weight|² (float64; penalty 0: least squares)."""
    x, y = features.double(), targets.double()
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc + penalty * torch.eye(x.shape[1], dtype=x.dtype)
    weight = torch.linalg.lstsq(gram, xc.T @ yc).solution
    return weight, y_mean - x_mean @ weight


def fit_ridge(features, targets, holdout: int):
    """The penalty that predicts the last `holdout` rows best from the others, then the fit on all rows."""
    scale = features.double().var(0).mean().item() * len(features) + 1e-30
    train_x, train_y, test_x, test_y = features[:-holdout], targets[:-holdout], features[-holdout:], targets[-holdout:]

    def error(penalty):
        weight, bias = ridge_fit(train_x, train_y, penalty * scale)
        return (test_y.double() - test_x.double() @ weight - bias).pow(2).sum().item()

    best = min(RIDGE_PENALTIES, key=error)
    weight, bias = ridge_fit(features, targets, best * scale)
    return lambda x: x.double() @ weight + bias


def fit_mlp(features, targets, holdout: int, hidden: int = 256, epochs: int = 200, seed: int = 0):
    """One hidden ReLU layer on standardised features and targets (Adam, batches of 256), kept at the epoch that
    predicts the last `holdout` rows best (checked every epoch; 10 epochs without improvement end it)."""
    generator = torch.Generator().manual_seed(seed)
    x_mean, x_std = features.mean(0), features.std(0).clamp_min(1e-8)
    y_mean, y_scale = targets.mean(0), targets.std().clamp_min(1e-30)
    x, y = (features - x_mean) / x_std, (targets - y_mean) / y_scale
    train_x, train_y, test_x, test_y = x[:-holdout], y[:-holdout], x[-holdout:], y[-holdout:]
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, y.shape[1]))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    best, best_state, stale = float("inf"), None, 0
    for _ in range(epochs):
        for batch in torch.randperm(len(train_x), generator=generator).split(256):
            optimizer.zero_grad()
            F.mse_loss(net(train_x[batch]), train_y[batch]).backward()
            optimizer.step()
        with torch.no_grad():
            error = F.mse_loss(net(test_x), test_y).item()
        if error < best:
            best, best_state, stale = error, {k: v.clone() for k, v in net.state_dict().items()}, 0
        else:
            stale += 1
            if stale >= 10:
                break
    net.load_state_dict(best_state)
    net.eval()

    def predict(features):
        with torch.no_grad():
            return (net((features - x_mean) / x_std) * y_scale + y_mean).double()

    return predict


def explained(prediction, target, mean) -> float:
    """1 - |target - prediction|² / |target - mean|², summed over rows and the state (`mean`: the fit half's)."""
    target = target.double()
    return 1 - ((target - prediction.double()).pow(2).sum() / (target - mean.double()).pow(2).sum().clamp_min(1e-30)).item()


def analyse(features, head, gradients: dict, boundary: torch.Tensor, mlp_hidden: int = 256, seed: int = 0) -> list:
    """Per horizon, the fits on the first half of the boundaries and the report on the second (rows: one per
    boundary and column; `boundary`: each row's boundary index; `head`: the run's SGs, or None)."""
    boundaries = int(boundary.max()) + 1
    if boundaries < MIN_BOUNDARIES:
        raise ValueError(f"{boundaries} boundaries are too few: the probe needs at least {MIN_BOUNDARIES}")
    fit, report = boundary < boundaries // 2, boundary >= boundaries // 2
    fit_x, report_x = features[fit], features[report]
    holdout = max(1, int(fit.sum()) // 4)  # the fit half's last quarter of boundaries: choosing the penalty, stopping
    rows = []
    for k, gradient in sorted(gradients.items()):
        fit_y, true = gradient[fit], gradient[report]
        mean = fit_y.double().mean(0)
        linear = fit_ridge(fit_x, fit_y, holdout)
        mlp = fit_mlp(fit_x, fit_y, holdout, mlp_hidden, seed=seed)
        row = {"k": k, "head_r2": 0.0, "linear_r2": explained(linear(report_x), true, mean),
               "mlp_r2": explained(mlp(report_x), true, mean), "head_cos": 0.0, "beta": 0.0,
               "true_norm": true.double().pow(2).sum(1).mean().sqrt().item()}
        if head is not None:
            sg = head[report].double()
            row["head_r2"] = explained(sg, true, mean)
            row["head_cos"] = F.cosine_similarity(sg, true.double(), dim=1, eps=1e-12).mean().item()
            row["beta"] = ((sg * true).sum() / sg.pow(2).sum()).item() if sg.pow(2).sum() > 0 else 0.0
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------ a run
def collect(model, stream, scale: float, horizons, boundaries: int, spacing: int, device, progress=False):
    """The rows `analyse` reads: features, the head's SG (None without a head), {K: G_K}, boundary index."""
    from tqdm.auto import tqdm

    features, heads, gradients, index = [], [], {k: [] for k in horizons}, []
    samples = future_gradients(model, stream, scale, horizons, boundaries, spacing=spacing, device=device)
    for n, (start, true) in enumerate(tqdm(samples, total=boundaries, desc="boundaries", disable=not progress)):
        with torch.no_grad():
            head_input = model.head_input(start)
            features.append(head_input.float().cpu())
            if model.synthetic_gradient is not None:
                heads.append(model.injected_synthetic_gradient(start).float().cpu())
        for k, g in true.items():
            gradients[k].append(g.float().cpu())
        index.append(torch.full((start.shape[0],), n))
    return (torch.cat(features), torch.cat(heads) if heads else None,
            {k: torch.cat(g) for k, g in gradients.items()}, torch.cat(index))


def probe_run(run_dir, split="valid", boundaries=256, columns=32, spacing=2, horizons=HORIZONS, scale=None,
              which="best", device="cpu", seed=0, progress=False) -> dict:
    from .data import TrainStream, load_corpus
    from .errors import ConfigError
    from .fidelity import probe_stream
    from .run import load_run

    cfg, model, payload = load_run(run_dir, which, device)
    if cfg.model.get("name") == "hierarchical":
        raise ConfigError(f"{run_dir} is a model=hierarchical run: the probe reads the LSTM core's boundary "
                          f"(scripts/hierarchical_fidelity.py measures the two-timescale heads)")
    scale = float(cfg.dni.scale) if scale is None else scale
    horizon = max(horizons)
    if payload.get("vocab"):  # text: columns long enough for the warm-up, every boundary and the last future
        data = getattr(load_corpus(cfg.data), split)
        per_column = (32 + boundaries * spacing + horizon) * cfg.trainer.unroll
        if len(data) < per_column:
            raise ConfigError(f"the {split} split ({len(data):,} characters) is too short for {boundaries} boundaries "
                              f"{spacing} windows apart at unroll {cfg.trainer.unroll} (use fewer --boundaries)")
        stream = TrainStream(data, max(1, min(columns, len(data) // per_column)), cfg.trainer.unroll)
    else:
        stream = probe_stream(cfg, payload, columns, horizon)
    torch.manual_seed(seed)
    features, head, gradients, index = collect(model, stream, scale, horizons, boundaries, spacing,
                                               torch.device(device), progress)
    return {"run_dir": str(run_dir), "checkpoint": which, "split": split if payload.get("vocab") else cfg.data.name,
            "method": cfg.method, "scale": scale, "boundaries": boundaries, "rows": len(index),
            "horizons": analyse(features, head, gradients, index, seed=seed)}


def markdown(result: dict) -> str:
    lines = [f"{result['run_dir']} ({result['method']}, {result['split']}, {result['rows']:,} rows from "
             f"{result['boundaries']} boundaries, discount {result['scale']:g})", "",
             "| K | head_r2 | linear_r2 | mlp_r2 | head_cos | beta | true_norm |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["horizons"]:
        lines.append(f"| {r['k']} | {r['head_r2']:.4f} | {r['linear_r2']:.4f} | {r['mlp_r2']:.4f} | "
                     f"{r['head_cos']:.4f} | {r['beta']:.3f} | {r['true_norm']:.4g} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    from .errors import LmdniError

    parser = argparse.ArgumentParser(prog="lmdni-probe", description=__doc__.split("\n\n")[0],
                                     epilog="The fits use the first half of the boundaries, the report the second.")
    parser.add_argument("run_dir", type=Path, help="a run directory written by lmdni-train (method bptt, dni or dni_aux)")
    parser.add_argument("--split", choices=("valid", "test", "train"), default="valid", help="text runs (default valid)")
    parser.add_argument("--boundaries", type=int, default=256, help="boundary states to collect (default 256)")
    parser.add_argument("--columns", type=int, default=32, help="columns read side by side (default 32)")
    parser.add_argument("--spacing", type=int, default=None,
                        help="windows between boundaries (default 2, or 1 when the longest horizon is 1)")
    parser.add_argument("--horizons", type=int, nargs="+", default=list(HORIZONS), help="K, in windows")
    parser.add_argument("--scale", type=float, default=None, help="the discount per window (default: the run's dni.scale)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="the MLP's initialisation and batches")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the Markdown table")
    args = parser.parse_args(argv)
    fail = lambda message: (print(f"lmdni-probe: error: {message}", file=sys.stderr), sys.exit(2))  # noqa: E731
    if args.boundaries < MIN_BOUNDARIES:
        fail(f"--boundaries must be at least {MIN_BOUNDARIES} (half fit, half report), got {args.boundaries}")
    if args.columns < 1 or min(args.horizons) < 1:
        fail("--columns and --horizons must be >= 1")
    if args.spacing is None:
        args.spacing = min(2, max(args.horizons))
    if not 1 <= args.spacing <= max(args.horizons):
        fail(f"--spacing must be between 1 and the longest horizon ({max(args.horizons)}), got {args.spacing}")
    if args.scale is not None and not 0 <= args.scale <= 1:
        fail(f"--scale must be between 0 and 1, got {args.scale}")
    try:
        result = probe_run(args.run_dir, args.split, args.boundaries, args.columns, args.spacing,
                           tuple(sorted(set(args.horizons))), args.scale, args.checkpoint, args.device, args.seed,
                           progress=sys.stderr.isatty())
    except (LmdniError, ValueError) as exc:
        fail(str(exc).splitlines()[0])
    print(json.dumps(result) if args.json else markdown(result))


if __name__ == "__main__":
    main()
