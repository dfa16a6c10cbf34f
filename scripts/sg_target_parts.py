"""What the SG's bootstrapped target is made of, and what pushes the core, for saved runs.

    python scripts/sg_target_parts.py runs/dni_aux_repeat_copy runs/dni_aux_repeat_copy:last_10M --level 5 4

For each RUN_DIR[:CHECKPOINT] (default `last`), over fresh windows of its data (lmdni.fidelity.probe_stream: text
runs read their validation split; copy tasks their task at the level reached, or at --level LENGTH REPEATS, so that
checkpoints of one run are compared on the same episodes), prints one Markdown row:

* the RMS per state element, in the SG's units (per sequence, summed loss), of the target's two parts: the
  in-window gradient at the window's start and the injected SG pulled back through the window (scale · Jᵀ SG(final));
  and of the SG the head predicts for the start state;
* the norms of the core's gradient (the mean-loss units the optimizer sees) from the window's loss, from the
  injected SG and from DNI+Aux's aux loss (at its weight), all before clipping;
* the norms of the SG head's and the aux head's output weights and of the LSTM's recurrent weights.

BPTT runs get the in-window gradient, the loss's gradient and the LSTM's weights (nan for the rest).
"""
from __future__ import annotations

import argparse
import sys

import torch


def parts(run: str, windows: int, columns: int, level, warmup: int = 32) -> dict:
    from lmdni.boundary import aux_loss
    from lmdni.fidelity import probe_stream
    from lmdni.run import load_run
    from lmdni.window import summed_loss

    run_dir, _, which = run.partition(":")
    cfg, model, payload = load_run(run_dir, which or "last", "cpu")
    has_head = model.synthetic_gradient is not None  # BPTT runs: the in-window part and the weights only
    torch.manual_seed(0)
    stream = probe_stream(cfg, payload, columns, level=level)
    scale, aux_weight = float(cfg.dni.scale), float(cfg.dni.aux_weight)
    core = [p for n, p in model.named_parameters() if not n.startswith(("synthetic", "aux_synthetic"))]
    sums = dict.fromkeys(("in_window", "pulled_back", "sg", "grad_loss", "grad_sg", "grad_aux"), 0.0)
    state, counted = None, 0
    for i in range(warmup + windows):
        x, y, starts, _, mask = stream.next_window()
        if state is None or starts:
            state = model.initial_state(x.shape[1])
        start = state.detach().requires_grad_(True)
        out = model(x, start, with_synthetic_gradient=has_head)
        state = out.state.detach()
        if i < warmup:
            continue
        loss_sum, n = summed_loss(out.logits, y, mask), y.numel()
        sums["in_window"] += torch.autograd.grad(loss_sum, start, retain_graph=True)[0].pow(2).mean().item()
        terms = {"grad_loss": loss_sum / n}
        if has_head:
            future = scale * out.final_synthetic_gradient.detach()
            pulled = torch.autograd.grad(out.state, start, future, retain_graph=True)[0]
            sums["pulled_back"] += pulled.pow(2).mean().item()
            sums["sg"] += out.start_synthetic_gradient.detach().pow(2).mean().item()
            terms["grad_sg"] = (future * out.state).sum() / n
        if out.aux_prediction is not None:
            terms["grad_aux"] = aux_weight * aux_loss(out.aux_prediction, out.final_synthetic_gradient)
        for key, term in terms.items():
            grads = torch.autograd.grad(term, core, retain_graph=True, allow_unused=True)
            sums[key] += sum(g.pow(2).sum() for g in grads if g is not None).item() ** 0.5
        counted += 1
    row = {k: (v / counted) ** 0.5 if k in ("in_window", "pulled_back", "sg") else v / counted
           for k, v in sums.items()}
    if not has_head:
        row.update(pulled_back=float("nan"), sg=float("nan"), grad_sg=float("nan"))
    if model.aux_synthetic_gradient is None:
        row["grad_aux"] = float("nan")
    params = dict(model.named_parameters())
    for key, name in (("sg_head", "synthetic_gradient.output.weight"), ("aux_head", "aux_synthetic_gradient.weight"),
                      ("lstm_hh", "lstm.weight_hh_l0")):
        row[key] = params[name].norm().item() if name in params else float("nan")
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="RUN_DIR or RUN_DIR:CHECKPOINT (e.g. last, best, last_10M)")
    parser.add_argument("--windows", type=int, default=300)
    parser.add_argument("--columns", type=int, default=32)
    parser.add_argument("--level", nargs=2, type=int, metavar=("LENGTH", "REPEATS"), help="copy tasks' level")
    args = parser.parse_args(argv)
    print("| run | in-window | pulled back | SG | core grad: loss | SG | aux | weight norm: SG head | aux head | LSTM hh |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in args.runs:
        try:
            r = parts(run, args.windows, args.columns, tuple(args.level) if args.level else None)
        except Exception as exc:  # a bad run dir or checkpoint: one line, not a traceback
            print(f"sg_target_parts: error: {run}: {str(exc).splitlines()[0]}", file=sys.stderr)
            sys.exit(2)
        print(f"| {run} | {r['in_window']:.3f} | {r['pulled_back']:.3f} | {r['sg']:.3f} | {r['grad_loss']:.3f} | "
              f"{r['grad_sg']:.3f} | {r['grad_aux']:.3f} | {r['sg_head']:.1f} | {r['aux_head']:.1f} | "
              f"{r['lstm_hh']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
