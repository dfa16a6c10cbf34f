"""The LSTM alone, forward and backward: nn.LSTM against lmdni.lstm's step loop, by window length.

    python scripts/bench_lstm.py --hidden 256 --batch 16 64 --steps 1 2 4 8 --repeats 15

The recurrence alone, not a training window (`scripts/bench.py --variant model.lstm_kernel=stepwise` times those).
One layer, embedding 128, gradients for the input, the start state and the weights; milliseconds per call are
medians of --repeats blocks, the two recurrences timed in turn block by block so that the machine's drift cancels
in their ratio.
"""
from __future__ import annotations

import argparse

import torch

from lmdni.benchmark import time_interleaved
from lmdni.lstm import run_lstm


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--embedding", type=int, default=128)
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--calls", type=int, default=20, help="calls per timed block")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(args.embedding, args.hidden)
    print(f"hidden {args.hidden}, embedding {args.embedding}, threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}")
    print("| batch | steps | nn.LSTM ms | step loop ms | step loop speed-up |")
    print("|---:|---:|---:|---:|---:|")
    for batch in args.batch:
        for steps in args.steps:
            x = torch.randn(steps, batch, args.embedding, requires_grad=True)
            h, c = (torch.zeros(1, batch, args.hidden, requires_grad=True) for _ in range(2))

            def call(kernel):
                def step():
                    output, (_, c_last) = run_lstm(lstm, x, h, c, kernel)
                    (output.sum() + c_last.sum()).backward()
                return step

            rates = time_interleaved({k: call(k) for k in ("torch", "stepwise")}, args.calls, args.repeats, 1, "cpu")
            ms = {k: 1e3 / v for k, v in rates.items()}
            print(f"| {batch} | {steps} | {ms['torch']:.2f} | {ms['stepwise']:.2f} | "
                  f"{ms['torch'] / ms['stepwise']:.2f}x |")


if __name__ == "__main__":
    main()
