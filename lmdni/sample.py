"""`lmdni-sample RUN_DIR --prime TEXT --length N --temperature X [--top-k K] [--seed S]`: text from a checkpoint.

PTB writes a space as `_`; for a PTB model the prime's spaces are read as `_`, and the text is printed with spaces,
unless --raw asks to print the symbols as the model sees them (display only: the sample is the same)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .errors import CheckpointError, LmdniError

SPACE = "_"  # PTB's symbol for a space between words


@torch.no_grad()
def generate(model, vocab: list[str], prime: str, length: int, temperature: float = 1.0, top_k: int = 0,
             generator: torch.Generator | None = None) -> str:
    """The state is carried through the prime, then symbols are drawn one at a time from the softmax."""
    index = {s: i for i, s in enumerate(vocab)}
    unknown = sorted({c for c in prime if c not in index})
    if unknown:
        raise LmdniError(f"the prime has characters the model never saw: {''.join(unknown)!r}")
    model.eval()
    device = next(model.parameters()).device
    state = model.initial_state(1, device)
    ids = [index[c] for c in prime] or [0]
    out = model(torch.tensor(ids, device=device).view(-1, 1), state, with_synthetic_gradient=False)
    logits, state = out.logits[-1, 0], out.state
    produced = []
    for _ in range(length):
        if temperature <= 0:
            choice = int(logits.argmax())
        else:
            scaled = logits / temperature
            if top_k > 0:
                kth = torch.topk(scaled, min(top_k, scaled.numel())).values[-1]
                scaled = scaled.masked_fill(scaled < kth, float("-inf"))
            choice = int(torch.multinomial(torch.softmax(scaled, -1).cpu(), 1, generator=generator))
        produced.append(vocab[choice])
        out = model(torch.tensor([[choice]], device=device), state, with_synthetic_gradient=False)
        logits, state = out.logits[-1, 0], out.state
    return "".join(produced)


def main(argv=None) -> None:
    from .run import load_run

    parser = argparse.ArgumentParser(prog="lmdni-sample", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--prime", default="")
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--raw", action="store_true", help="PTB: print `_` for spaces (display only)")
    args = parser.parse_args(argv)
    for flag, value, least in (("--length", args.length, 0), ("--temperature", args.temperature, 0),
                               ("--top-k", args.top_k, 0)):
        if value < least:
            parser.error(f"{flag} must be >= {least}, got {value}")
    try:
        cfg, model, payload = load_run(args.run_dir, args.checkpoint, args.device)
        if not payload.get("vocab"):
            raise CheckpointError(f"{args.run_dir} was trained on a generated task ({cfg.data.name}), not text: "
                                  f"nothing to sample")
        ptb = cfg.data.name == "ptb"
        readable = ptb and not args.raw
        prime = args.prime.replace(" ", SPACE) if ptb else args.prime
        text = prime + generate(model, payload["vocab"], prime, args.length, args.temperature, args.top_k,
                                torch.Generator().manual_seed(args.seed))
    except LmdniError as exc:
        print(f"lmdni-sample: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(text.replace(SPACE, " ") if readable else text)


if __name__ == "__main__":
    main()
