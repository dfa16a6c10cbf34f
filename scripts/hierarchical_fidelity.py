"""How well do a two-timescale run's heads predict their targets? (model=hierarchical, method=dni)

    python scripts/hierarchical_fidelity.py RUN_DIR [RUN_DIR ...] --slow-windows 20

Runs the saved model (best.pt) through the training procedure on the validation split, without updating anything,
and compares each head's prediction with the target the procedure forms for it: the fast head's (gradient reaching
the fast window's start), the slow head's (reaching the slow window's start) and the interface head's (each
message's gradient from later windows through the slow core). At `model.interface_scale=0` the interface head is
neither used nor trained (it stays at zero); its targets are still formed here, so the target's size says what
there would be to inject. Per head: mean per-row cosine, RMS norm ratio |prediction| / |target|, explained fraction
1 - |prediction - target|² / |target|², and β = <prediction, target> / |prediction|² (lmdni.fidelity's meanings).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F


def agreement(pairs: list) -> dict:
    prediction = torch.cat([p for p, _ in pairs]).double()
    target = torch.cat([t for _, t in pairs]).double()
    return {"cosine": F.cosine_similarity(prediction, target, dim=1, eps=1e-12).mean().item(),
            "norm ratio": (prediction.norm() / target.norm().clamp_min(1e-30)).item(),
            "explained": (1 - (prediction - target).pow(2).sum() / target.pow(2).sum().clamp_min(1e-30)).item(),
            "beta": ((prediction * target).sum() / prediction.pow(2).sum().clamp_min(1e-30)).item()}


def probe(run: Path, slow_windows: int) -> dict:
    from lmdni.data import TrainStream, load_corpus
    from lmdni.boundary import Boundary
    from lmdni.hierarchical_training import two_timescale_window
    from lmdni.run import load_run

    cfg, model, _ = load_run(run, "best", device="cpu")
    if cfg.model.get("name") != "hierarchical" or model.synthetic_gradient is None:
        raise SystemExit(f"hierarchical_fidelity.py: error: {run} is not a model=hierarchical method=dni run")
    corpus = load_corpus(cfg.data)
    stream = TrainStream(corpus.valid, cfg.trainer.batch_size, cfg.trainer.unroll)
    procedure = two_timescale_window(cfg, model, Boundary.from_config(cfg, torch.device("cpu"), None))
    heads = {"fast": [], "slow": [], "interface": []}
    procedure.observe = lambda name, prediction, target: heads[name].append((prediction, target))
    procedure.learn_heads = False
    state = model.initial_state(cfg.trainer.batch_size)
    for window in range(slow_windows * int(cfg.model.slow_windows)):
        x, y, starts_pass, ends_pass, mask = stream.next_window()
        if starts_pass and window > 0:  # the split is read once
            break
        model.zero_grad(set_to_none=True)  # the cores' gradients are filled, never applied: nothing is updated
        state = procedure(x.long(), y.long(), mask, state, ends_pass).state
    return {name: agreement(pairs) for name, pairs in heads.items() if pairs}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--slow-windows", type=int, default=20, help="slow windows of the validation split to read")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print("| run | head | cosine | norm ratio | explained | β |")
    print("|---|---|---:|---:|---:|---:|")
    for run in args.runs:
        try:
            results = probe(run, args.slow_windows)
        except Exception as exc:  # a one-line error per run, the others still measured
            print(f"hierarchical_fidelity.py: error: {run}: {str(exc).splitlines()[0]}", file=sys.stderr)
            continue
        for head, r in results.items():
            print(f"| {run.name} | {head} | {r['cosine']:.3f} | {r['norm ratio']:.3f} | {r['explained']:.3f} | "
                  f"{r['beta']:.3f} |")


if __name__ == "__main__":
    main()
