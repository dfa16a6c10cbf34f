"""A hand-written BPTT window, whole, with and without torch.compile: does compiling it cut a window's fixed cost?

    python scripts/bench_compiled_window.py --unroll 2 40 --batch 16 --hidden 256

The loop is `scripts/bench.py`'s bare loop (embedding, LSTM, decoder, cross-entropy, backward, clipping, fused
Adam, detach), in four forms timed in turn block by block (drift cancels in their ratios):

* `native`: nn.LSTM (oneDNN on CPU), eager;
* `eager_steps`: the LSTM written as a step loop of torch operators (the input products for all steps in one);
* `compiled`: that step loop, the decoder and the loss compiled as one graph (inductor; the backward too, through
  AOTAutograd), clipping and Adam eager;
* `compiled_all`: the same, clipping and Adam compiled too.

Fitting milliseconds per window against the unroll over two unrolls gives each form's fixed cost and cost per step.
Not lmdni's trainer: the experiment behind docs/results/speed's "compiling the whole window".
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from lmdni.benchmark import time_interleaved

KINDS = ("native", "eager_steps", "compiled", "compiled_all")


def bptt_loop(kind: str, hidden: int, batch: int, unroll: int, vocab: int, data: torch.Tensor):
    torch.manual_seed(0)
    embedding, lstm, decoder = nn.Embedding(vocab, 128), nn.LSTM(128, hidden), nn.Linear(hidden, vocab)
    params = [*embedding.parameters(), *lstm.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=2e-3, fused=True)
    length = (len(data) - 1) // batch
    inputs = data[: batch * length].view(batch, length).t().contiguous()
    targets = data[1: batch * length + 1].view(batch, length).t().contiguous()
    # dynamo will not trace into nn.LSTM: the step loop reads its weights as plain parameters
    w_ih, w_hh, b_ih, b_hh = lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0

    def step_loop(x, y, h, c):
        gates_in = F.linear(embedding(x), w_ih, b_ih + b_hh)
        outputs = []
        for t in range(x.shape[0]):
            i, f, g, o = (gates_in[t] + h @ w_hh.T).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        logits = decoder(torch.stack(outputs))
        return F.cross_entropy(logits.view(-1, vocab), y.reshape(-1)), h, c

    def native(x, y, h, c):
        output, (h, c) = lstm(embedding(x), (h[None], c[None]))
        return F.cross_entropy(decoder(output).view(-1, vocab), y.reshape(-1)), h[0], c[0]

    def update():
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    forward = {"native": native, "eager_steps": step_loop}.get(kind) or torch.compile(step_loop, fullgraph=True,
                                                                                        dynamic=False)
    update_step = torch.compile(update) if kind == "compiled_all" else update
    state = {"at": 0, "h": torch.zeros(batch, hidden), "c": torch.zeros(batch, hidden)}

    def window():
        at = state["at"] if state["at"] + unroll <= length else 0
        optimizer.zero_grad(set_to_none=True)
        loss, h, c = forward(inputs[at:at + unroll], targets[at:at + unroll], state["h"], state["c"])
        loss.backward()
        update_step()
        state.update(at=at + unroll, h=h.detach(), c=c.detach())

    return window


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--unroll", type=int, nargs="+", default=[2, 40])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    vocab, data = 50, torch.randint(50, (200_000,), generator=torch.Generator().manual_seed(0))
    print(f"hidden {args.hidden}, batch {args.batch}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    print("| unroll | loop | ms per window | chars/s | first 5 windows (compile), s |")
    print("|---:|---|---:|---:|---:|")
    per_window = {}
    for unroll in args.unroll:
        loops, warm = {}, {}
        for kind in args.kinds:
            start = time.perf_counter()
            loops[kind] = bptt_loop(kind, args.hidden, args.batch, unroll, vocab, data)
            for _ in range(5):
                loops[kind]()
            warm[kind] = time.perf_counter() - start
        rates = time_interleaved(loops, args.windows, args.repeats, args.batch * unroll, "cpu")
        for kind in args.kinds:
            per_window[kind, unroll] = ms = args.batch * unroll / rates[kind] * 1e3
            print(f"| {unroll} | {kind} | {ms:.2f} | {rates[kind]:,.0f} | {warm[kind]:.1f} |", flush=True)
    if len(args.unroll) >= 2:
        low, high = min(args.unroll), max(args.unroll)
        print(f"\nfitted between unroll {low} and {high}:\n\n| loop | fixed ms per window | ms per step |\n|---|---:|---:|")
        for kind in args.kinds:
            slope = (per_window[kind, high] - per_window[kind, low]) / (high - low)
            print(f"| {kind} | {per_window[kind, low] - slope * low:.2f} | {slope:.3f} |")


if __name__ == "__main__":
    main()
