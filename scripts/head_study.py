"""Why does a run's online SG head miss what a linear head could predict? (lmdni-probe's gap, docs/results/probe)

    python scripts/head_study.py RUN_DIR --checkpoint last --windows 3000 --lrs 3e-3 1e-3 3e-4 1e-4

The run's core is frozen. Two sets of rows, from different streams:

* evaluation: lmdni-probe's rows (`lmdni.probe.collect`) at --boundaries boundaries: the head's features and the
  true discounted future gradient G_K (K = --horizon), scored, as the probe does, on the second half;
* training: --windows consecutive windows of --columns columns, the run's own stream (text: the train split; copy
  tasks: fresh episodes at the level reached), with at each boundary the head's features, the in-window gradient
  d(window loss)/ds and the bootstrapped target training forms, that plus the next boundary's SG (the run's head)
  pulled back through the window, scaled by dni.scale.

Each candidate head is scored by the fraction of G_K's variance it explains on the evaluation rows' second half:
the run's head; ridge fitted to G_K on the first half (the probe's ceiling); ridge fitted to the training stream's
bootstrapped targets, and to its in-window gradients alone (what the targets carry, fitted as well as can be); and a
fresh zero-initialised linear head trained online on the training stream in order, one Adam step per window on the
mean squared error, as training does, for each learning rate in --lrs: at its last weights and at the average of
its weights over the stream's second half. Online near ridge-on-targets at some rate, far below it at the run's:
the optimizer's noise is the gap. Ridge-on-targets far below the ceiling: the targets are.
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lmdni.fidelity import probe_stream
from lmdni.head import zero_linear
from lmdni.probe import collect, explained, fit_ridge
from lmdni.run import load_run
from lmdni.window import summed_loss


def targets_along(model, stream, scale: float, windows: int, warmup: int = 32):
    """Per boundary of `windows` consecutive windows: (head features, in-window gradient, bootstrapped target)."""
    state, rows = None, []
    batches = [stream.next_window() for _ in range(warmup + windows + 1)]
    for n, (x, y, starts, _, mask) in enumerate(tqdm(batches[:-1], desc="windows")):
        if state is None or starts:
            state = model.initial_state(x.shape[1])
        if n < warmup:
            with torch.no_grad():
                state = model(x, state, with_synthetic_gradient=False).state
            continue
        start = state.detach().requires_grad_(True)
        out = model(x, start, with_synthetic_gradient=False)
        in_window = torch.autograd.grad(summed_loss(out.logits, y, mask), start, retain_graph=True)[0]
        with torch.no_grad():
            next_sg = model.injected_synthetic_gradient(out.state)
            features = model.head_input(start)
        pulled = torch.autograd.grad((out.state * next_sg).sum(), start)[0]
        rows.append((features, in_window, in_window + scale * pulled))
        state = out.state.detach()
    return [torch.cat(column) for column in zip(*rows)]


def online_head(features, targets, lr: float, rows_per_step: int, start=None):
    """A linear head trained as the run's is: Adam on the MSE, one step per window, in order, from zero (or from
    `start`'s weights, with a fresh Adam). Returns its last weights' predictor and the predictor of its weights
    averaged over the second half."""
    head = zero_linear(features.shape[1], targets.shape[1])
    if start is not None:
        head.load_state_dict(start.state_dict())
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    steps = len(features) // rows_per_step
    average, counted = [torch.zeros_like(p) for p in head.parameters()], 0
    for step in range(steps):
        rows = slice(step * rows_per_step, (step + 1) * rows_per_step)
        optimizer.zero_grad()
        F.mse_loss(head(features[rows]), targets[rows]).backward()
        optimizer.step()
        if step >= steps // 2:
            counted += 1
            for a, p in zip(average, head.parameters()):
                a.add_(p.detach())
    weight, bias = (a / counted for a in average)
    last = {k: v.detach().clone() for k, v in head.state_dict().items()}
    return (lambda x: F.linear(x, last["weight"], last["bias"]).double(),
            lambda x: F.linear(x, weight, bias).double())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best")
    parser.add_argument("--horizon", type=int, default=16)
    parser.add_argument("--boundaries", type=int, default=256)
    parser.add_argument("--windows", type=int, default=3000)
    parser.add_argument("--columns", type=int, default=None, help="training-stream columns (default: the run's batch)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-3, 1e-3, 3e-4, 1e-4])
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg, model, payload = load_run(args.run_dir, args.checkpoint, "cpu")
    model.eval()
    scale = float(cfg.dni.scale)
    columns = args.columns or cfg.trainer.batch_size
    eval_stream = probe_stream(cfg, payload, 32, args.horizon)
    features, head_sg, gradients, index = collect(model, eval_stream, scale, (args.horizon,), args.boundaries, 2,
                                                  torch.device("cpu"), progress=True)
    true = gradients[args.horizon]
    fit, report = index < args.boundaries // 2, index >= args.boundaries // 2
    mean, target = true[fit].double().mean(0), true[report]
    score = lambda predict: explained(predict(features[report]), target, mean)  # noqa: E731
    holdout = max(1, int(fit.sum()) // 4)
    results = {"run_dir": args.run_dir, "scale": scale, "k": args.horizon, "dni_lr": float(cfg.dni.lr),
               "head": explained(head_sg[report].double(), target, mean),
               "ceiling (ridge on G_K)": score(fit_ridge(features[fit], true[fit], holdout))}
    # the run's own kind of data apart from the evaluation rows: text's train split, or other copy episodes
    stream = probe_stream(cfg, payload, columns, args.horizon, split="train", seed_offset=1000)
    train_x, in_window, bootstrapped = targets_along(model, stream, scale, args.windows)
    holdout = len(train_x) // 4
    results["ridge on bootstrapped targets"] = score(fit_ridge(train_x, bootstrapped, holdout))
    results["ridge on in-window gradients"] = score(fit_ridge(train_x, in_window, holdout))
    for lr in args.lrs:
        last, averaged = online_head(train_x, bootstrapped, lr, columns)
        results[f"online Adam lr {lr:g}, last"] = score(last)
        results[f"online Adam lr {lr:g}, averaged"] = score(averaged)
    if model.synthetic_gradient.is_linear:  # the run's head, trained on: does it move to where a fresh one goes?
        last, averaged = online_head(train_x, bootstrapped, float(cfg.dni.lr), columns, model.synthetic_gradient.output)
        results["the run's head trained on at its lr, last"] = score(last)
        results["the run's head trained on at its lr, averaged"] = score(averaged)
    width = max(map(len, results))
    for name, value in results.items():
        print(f"{name:<{width}}  {value if isinstance(value, str) else f'{value:.4g}'}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
