"""Boundary-op latency, fused Triton kernel vs torch reference, and end-to-end DNI vs BPTT throughput.

    python scripts/bench_boundary.py                 # on a CUDA machine
    python scripts/bench_boundary.py --e2e-only      # just the end-to-end table

The boundary op is everything DNI adds at a truncation boundary for the linear head: the SG predictions for both
boundaries of the window (shared by both paths), the squared error against the bootstrapped target, and the head's
weight and bias gradients. "kernel alone" times the Triton launch by itself (no autograd, no predictions): the gap
between it and "fused" is host overhead, which CUDA-graph capture of the window would remove.

    python scripts/bench_boundary.py --e2e-only --tf32   # end to end with trainer.tf32=true (TF32 for the head too)
"""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F



def boundary_step(start, final, target, weight, bias, fused):
    from lmdni.boundary import regress_synthetic_gradient

    with torch.no_grad():  # as the model does for a linear head: both predictions are constants
        start_sg, final_sg = F.linear(torch.cat([start, final]), weight, bias).chunk(2)

    class Head:  # the attributes regress_synthetic_gradient reads
        output, down = type("Linear", (), {"weight": weight, "bias": bias}), None

    weight.grad = bias.grad = None
    regress_synthetic_gradient(Head, start, start_sg, target, 1.0, fused)
    return final_sg


def bench_boundary(batches, states, dtype):
    import triton.testing

    from lmdni.kernels import regression_launch

    rows = []
    for batch in batches:
        for state in states:
            g = torch.Generator(device="cuda").manual_seed(0)
            start, final, target = (torch.randn(batch, state, device="cuda", generator=g, dtype=dtype)
                                    for _ in range(3))
            weight = (0.01 * torch.randn(state, state, device="cuda", generator=g)).requires_grad_()
            bias = torch.zeros(state, device="cuda", requires_grad=True)
            times = {}
            for fused in (False, True):
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                    times[fused] = triton.testing.do_bench(
                        lambda: boundary_step(start, final, target, weight, bias, fused), warmup=25, rep=100,
                        return_mode="median")
            prediction = F.linear(start, weight.detach().to(dtype), bias.detach().to(dtype))
            kernel = triton.testing.do_bench(lambda: regression_launch(prediction, target, start), warmup=25,
                                             rep=100, return_mode="median")
            rows.append((batch, state, times[False] * 1e3, times[True] * 1e3, kernel * 1e3,
                         times[False] / times[True]))
    print(f"\nBoundary op latency ({str(dtype).replace('torch.', '')} inputs), median of do_bench, microseconds")
    print("| batch | state | reference | fused | kernel alone | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|")
    for batch, state, ref, fused, kernel, ratio in rows:
        print(f"| {batch} | {state} | {ref:.1f} | {fused:.1f} | {kernel:.1f} | {ratio:.2f}x |")


def bench_end_to_end(hidden, batch, unrolls, windows, extra=()):
    from lmdni.benchmark import bench_trainer, memory_corpus, time_blocks

    device = torch.device("cuda")
    vocab = 50
    data = torch.randint(vocab, (4_000_000,), generator=torch.Generator().manual_seed(0))
    corpus = memory_corpus(data, vocab)
    print(f"\nEnd to end, hidden {hidden}, batch {batch} {' '.join(extra)}: training chars/s "
          f"(median of 3 blocks of {windows} windows)")
    print("| unroll | bptt | dni fused | dni reference | dni fused / bptt | extra time per char |")
    print("|---:|---:|---:|---:|---:|---:|")
    for unroll in unrolls:
        rates = {}
        for name, method, fused in (("bptt", "bptt", "off"), ("fused", "dni", "on"), ("ref", "dni", "off")):
            trainer = bench_trainer(method, hidden, batch, unroll, "cuda", corpus, [f"dni.fused={fused}", *extra])
            rates[name] = time_blocks(trainer.train_window, windows, 3, batch * unroll, device)
        ratio = rates["fused"] / rates["bptt"]
        print(f"| {unroll} | {rates['bptt']:,.0f} | {rates['fused']:,.0f} | {rates['ref']:,.0f} | {ratio:.3f} | "
              f"{(1 / ratio - 1) * 100:+.1f}% |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 256, 1024])
    parser.add_argument("--states", type=int, nargs="+", default=[512, 2048, 4096])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--unrolls", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--e2e-only", action="store_true")
    parser.add_argument("--tf32", action="store_true", help="end to end with trainer.tf32=true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_boundary.py: error: needs a CUDA device")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    if not args.e2e_only:
        bench_boundary(args.batches, args.states, torch.float32)
        bench_boundary(args.batches, args.states, torch.bfloat16)
    bench_end_to_end(args.hidden, args.batch, args.unrolls, args.windows, ["trainer.tf32=true"] if args.tf32 else [])


if __name__ == "__main__":
    main()
