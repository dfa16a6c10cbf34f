"""Training throughput: the lmdni trainer (bptt, dni) against a minimal hand-written nn.LSTM TBPTT loop.

    python scripts/bench.py --hidden 256 --batch 64 --unroll 4 --windows 400
    python scripts/bench.py --batch 16 --unroll 8 --methods bptt dni_aux --variant model.lstm_kernel=torch

`--variant OVERRIDE` (repeatable) times every lmdni method once more with that override, in the same interleaved
blocks: a before/after in one process, where a noisy machine's drift cancels.

Same model shape, optimizer, clipping and data layout in all; chars/s are medians of --repeats timed blocks, the
loops timed in turn block by block so that drift of the machine's speed cancels in the ratios.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lmdni.benchmark import bench_trainer, memory_corpus, shape_arguments, time_interleaved


def bare_loop(args, data, vocab, device):
    """What a researcher would write by hand: embedding, nn.LSTM, linear decoder, Adam, clipping, detach."""
    torch.manual_seed(0)
    emb, lstm, dec = nn.Embedding(vocab, 128), nn.LSTM(128, args.hidden), nn.Linear(args.hidden, vocab)
    params = [*emb.parameters(), *lstm.parameters(), *dec.parameters()]
    for module in (emb, lstm, dec):
        module.to(device)
    opt = torch.optim.Adam(params, lr=2e-3)
    length = (len(data) - 1) // args.batch
    cols = data[: args.batch * length].view(args.batch, length).t().contiguous()
    tgts = data[1: args.batch * length + 1].view(args.batch, length).t().contiguous()
    state = {"pos": 0, "hc": None}

    def step():
        p = state["pos"]
        if p + args.unroll > length:
            p, state["hc"] = 0, None
        x, y = cols[p:p + args.unroll].to(device), tgts[p:p + args.unroll].to(device)
        out, hc = lstm(emb(x), state["hc"])
        loss = F.cross_entropy(dec(out).view(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        state["hc"] = tuple(h.detach() for h in hc)
        state["pos"] = p + args.unroll

    return step


def main():
    parser = shape_arguments(__doc__)
    parser.add_argument("--methods", nargs="+", default=["bptt", "dni"], help="of bptt, dni, dni_aux")
    parser.add_argument("--variant", action="append", default=[], help="an override to time every method with too")
    args = parser.parse_args()
    device = torch.device(args.device)
    vocab = 50
    data = torch.randint(vocab, (2_000_000,), generator=torch.Generator().manual_seed(0))
    corpus = memory_corpus(data, vocab)
    chars = args.batch * args.unroll
    steps = {"bare nn.LSTM loop": bare_loop(args, data, vocab, device)}
    for variant in ["", *args.variant]:
        for method in args.methods:
            overrides = [*args.overrides, *([variant] if variant else [])]
            trainer = bench_trainer(method, args.hidden, args.batch, args.unroll, args.device, corpus, overrides)
            steps[f"lmdni {method}" + (f" [{variant}]" if variant else "")] = trainer.train_window
    rates = time_interleaved(steps, args.windows, args.repeats, chars, device)  # blocks in turn: drift cancels
    print(f"hidden {args.hidden}, batch {args.batch}, unroll {args.unroll}, device {args.device}, "
          f"threads {torch.get_num_threads()}")
    print("| loop | chars/s | ratio |")
    print("|---|---:|---:|")
    base = rates["bare nn.LSTM loop"]
    for name, rate in rates.items():
        variant = name[name.index(" ["):] if " [" in name else ""
        bptt = f"lmdni bptt{variant}"
        versus_bptt = name.startswith("lmdni dni") and bptt in rates
        ref, label = (rates[bptt], "vs bptt") if versus_bptt else (base, "vs bare")
        print(f"| {name} | {rate:,.0f} | {rate / ref:.2f} {label} |")


if __name__ == "__main__":
    main()
