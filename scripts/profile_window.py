"""Where one training window's time goes: torch.profiler over lmdni windows, per method, CPU or CUDA.

    python scripts/profile_window.py --hidden 256 --batch 64 --unroll 4 --windows 200 --methods bptt dni dni_aux

Prints, per method, chars/s of the profiled block and the top operators by self time (Markdown), so the cost DNI
adds over BPTT can be read operator by operator.
"""
from __future__ import annotations

import time

import torch
from torch.profiler import ProfilerActivity, profile

from lmdni.benchmark import bench_trainer, memory_corpus, shape_arguments


def main():
    parser = shape_arguments(__doc__)
    parser.add_argument("--methods", nargs="+", default=["bptt", "dni", "dni_aux"])
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    data = torch.randint(50, (2_000_000,), generator=torch.Generator().manual_seed(0))
    corpus = memory_corpus(data, 50)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
    print(f"hidden {args.hidden}, batch {args.batch}, unroll {args.unroll}, device {args.device}, "
          f"threads {torch.get_num_threads()}, torch {torch.__version__}")
    for method in args.methods:
        trainer = bench_trainer(method, args.hidden, args.batch, args.unroll, args.device, corpus, args.overrides)
        for _ in range(max(10, args.windows // 10)):
            trainer.train_window()
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            for _ in range(args.windows):
                trainer.train_window()
            seconds = time.perf_counter() - start
        total = sum(e.self_cpu_time_total for e in prof.key_averages())
        print(f"\n### {method}: {args.windows * args.batch * args.unroll / seconds:,.0f} chars/s under the profiler, "
              f"{seconds / args.windows * 1e3:.2f} ms per window\n")
        print("| operator | calls per window | self ms per window | share |")
        print("|---|---:|---:|---:|")
        rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:args.top]
        for e in rows:
            print(f"| {e.key} | {e.count / args.windows:.1f} | {e.self_cpu_time_total / args.windows / 1e3:.3f} | "
                  f"{e.self_cpu_time_total / total:.1%} |")


if __name__ == "__main__":
    main()
