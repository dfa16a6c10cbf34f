"""Training throughput: the lmdni trainer (bptt, dni) against a minimal hand-written nn.LSTM TBPTT loop.

    python scripts/bench.py --hidden 256 --batch 64 --unroll 4 --windows 400

Same model shape, optimizer, clipping and data layout in all three; chars/s are medians of --repeats timed blocks.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from lmdni.data import Corpus, TrainStream
from lmdni.run import build_model
from lmdni.trainer import Trainer


def config(method, args):
    from hydra import compose, initialize_config_dir

    from lmdni.cli import config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        return compose("train", [f"method={method}", f"model.hidden_size={args.hidden}",
                                 f"trainer.batch_size={args.batch}", f"trainer.unroll={args.unroll}",
                                 f"device={args.device}", "trainer.progress=false", *args.overrides])


def time_blocks(step, windows, repeats, chars_per_window, device):
    for _ in range(max(10, windows // 10)):  # warm-up
        step()
    rates = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(windows):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(windows * chars_per_window / (time.perf_counter() - start))
    return statistics.median(rates)


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


def shape_arguments(description: str) -> argparse.ArgumentParser:
    """The model shape and timing options every throughput script takes."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--unroll", type=int, default=4)
    parser.add_argument("--windows", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for the lmdni runs, e.g. dni.fused=on")
    return parser


def main():
    args = shape_arguments(__doc__).parse_args()
    device = torch.device(args.device)
    vocab = 50
    data = torch.randint(vocab, (2_000_000,), generator=torch.Generator().manual_seed(0))
    corpus = Corpus([str(i) for i in range(vocab)], data, data[:1000], data[:1000])
    chars = args.batch * args.unroll
    rates = {"bare nn.LSTM loop": time_blocks(bare_loop(args, data, vocab, device), args.windows, args.repeats,
                                              chars, device)}
    for method in ("bptt", "dni"):
        cfg = config(method, args)
        torch.manual_seed(0)
        model = build_model(cfg, vocab).to(device)
        trainer = Trainer(cfg, model, corpus, TrainStream(data, args.batch, args.unroll), "/tmp", device)
        rates[f"lmdni {method}"] = time_blocks(trainer.train_window, args.windows, args.repeats, chars, device)
    print(f"hidden {args.hidden}, batch {args.batch}, unroll {args.unroll}, device {args.device}, "
          f"threads {torch.get_num_threads()}")
    print("| loop | chars/s | ratio |")
    print("|---|---:|---:|")
    base = rates["bare nn.LSTM loop"]
    for name, rate in rates.items():
        ref = rates["lmdni bptt"] if name == "lmdni dni" else base
        label = "vs bptt" if name == "lmdni dni" else "vs bare"
        print(f"| {name} | {rate:,.0f} | {rate / ref:.2f} {label} |")


if __name__ == "__main__":
    main()
