"""The measured effect of the optional speed settings: trainer.precision=bf16, trainer.tf32, trainer.compile.

    python scripts/bench_speed_settings.py --hidden 256 --batch 64 --unroll 4 --windows 300 [--device cuda]

For bptt and dni, times the lmdni training window with each setting (fp32 eager, TF32, bf16, compile, bf16 + compile)
and prints chars/s, the ratio to fp32 eager, and the mean training loss (bits/char) over the timed windows, so that a
setting that is faster but learns differently shows. Same data and seed for every row.
"""
from __future__ import annotations


import torch

from lmdni.benchmark import bench_trainer, memory_corpus, shape_arguments, time_blocks

SETTINGS = {"fp32": [], "tf32": ["trainer.tf32=true"], "bf16": ["trainer.precision=bf16"],
            "compile": ["trainer.compile=true"], "bf16+compile": ["trainer.precision=bf16", "trainer.compile=true"]}


def main():
    parser = shape_arguments(__doc__)
    parser.add_argument("--methods", default="bptt,dni")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated: " + ", ".join(SETTINGS))
    args = parser.parse_args()
    device = torch.device(args.device)
    vocab = 50
    # a learnable stream (a noisy periodic sequence), so that the training loss means something
    g = torch.Generator().manual_seed(0)
    data = (torch.arange(2_000_000) * 7 % 23 + torch.randint(3, (2_000_000,), generator=g)) % vocab
    corpus = memory_corpus(data, vocab)
    chars = args.batch * args.unroll
    print(f"hidden {args.hidden}, batch {args.batch}, unroll {args.unroll}, device {args.device}, "
          f"threads {torch.get_num_threads()}, torch {torch.__version__}")
    print("| method | setting | chars/s | vs fp32 | train bits/char |")
    print("|---|---|---:|---:|---:|")
    for method in args.methods.split(","):
        base = None
        for name in args.settings.split(","):
            torch.backends.cuda.matmul.allow_tf32 = False  # torch's defaults: trainer.tf32 sets them process-wide
            torch.backends.cudnn.allow_tf32 = True
            trainer = bench_trainer(method, args.hidden, args.batch, args.unroll, args.device, corpus,
                                    [*args.overrides, *SETTINGS[name]])
            rate = time_blocks(trainer.train_window, args.windows, args.repeats, chars, device)
            bits = trainer.interval.bpc()
            base = base or rate
            print(f"| {method} | {name} | {rate:,.0f} | {rate / base:.2f}x | {bits:.4f} |", flush=True)


if __name__ == "__main__":
    main()
