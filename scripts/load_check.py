"""Load time and memory of a 100M-character corpus (data=text8 / data=enwik8): the real file if given, else a
generated file of the same size and shape (text8: a-z and space; enwik8: UTF-8 XML bytes).

    python scripts/load_check.py text8 enwik8 [--root DIR] [--eval-hidden 256]   # seconds, peak RSS, symbols

Each data set is loaded in a fresh process, so the peak RSS is that of one load (Python and torch included).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def generate(name: str, path: Path, size: int = 100_000_000) -> None:
    import numpy as np

    if name == "text8":
        letters = np.random.default_rng(0).integers(0, 27, size, dtype=np.uint8)
        data = np.where(letters == 26, 32, letters + 97).astype(np.uint8).tobytes()
    else:
        page = ('<page>\n  <title>Æsop</title>\n  <text xml:space="preserve">Ελληνικά, 日本語 &amp; naïve '
                '[[links]] {{cite}}\t</text>\n</page>\n').encode("utf-8")
        data = (page * (size // len(page) + 1))[:size]
    path.write_bytes(data)


def peak_rss_mb() -> float:
    """VmHWM: this process's peak resident memory (getrusage's ru_maxrss would carry the parent's across exec)."""
    from lmdni.metrics import process_memory_mb

    value = process_memory_mb("VmHWM")
    if value is None:
        raise RuntimeError("no VmHWM in /proc/self/status")
    return value


def measure(name: str, root: Path, pin: bool, hidden: int = 0) -> None:
    from lmdni.data import wikipedia
    from lmdni.data.files import file_hash

    if pin:  # a generated file: its own checksum stands in for the published one
        algorithm = wikipedia.DATASETS[name]["hash"][0]
        digest = file_hash(root / name, algorithm)
        wikipedia.DATASETS[name] = {**wikipedia.DATASETS[name], "hash": (algorithm, digest)}
    before = peak_rss_mb()  # Python, torch and numpy imported
    start = time.perf_counter()
    vocab, train, valid, test = wikipedia.load_bytes_corpus(name, root, download=False)
    seconds = time.perf_counter() - start
    rss = peak_rss_mb()
    print(f"| {name} | {'generated' if pin else 'real'} | {len(train):,} / {len(valid):,} / {len(test):,} | "
          f"{len(vocab)} | {seconds:.2f} | {rss:,.0f} | {rss - before:,.0f} |", flush=True)
    if hidden:
        import torch

        from lmdni.evaluate import split_nats
        from lmdni.model import LSTMCore

        torch.manual_seed(0)
        model = LSTMCore(len(vocab), hidden)
        for columns in (64, 1):
            start = time.perf_counter()
            split_nats(model, valid, columns)
            seconds = time.perf_counter() - start
            print(f"  valid pass, hidden {hidden}, {columns} column(s): {seconds:.1f} s "
                  f"({len(valid) / seconds:,.0f} chars/s, {torch.get_num_threads()} threads)", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", choices=("text8", "enwik8"))
    parser.add_argument("--root", type=Path, help="a folder holding the real files (checked against their checksums)")
    parser.add_argument("--eval-hidden", type=int, default=0,
                        help="also time a validation pass (5M characters) of an LSTM this wide, in 64 columns "
                             "and whole")
    parser.add_argument("--measure", choices=("real", "generated"), help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        measure(args.names[0], args.root, pin=args.measure == "generated", hidden=args.eval_hidden)
        return
    print("| data | file | train / valid / test characters | symbols | load seconds (checksum included) | "
          "peak RSS MB | of which the load |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name in args.names:
        with tempfile.TemporaryDirectory() as scratch:
            root, kind = args.root, "real"
            if root is None:
                root, kind = Path(scratch), "generated"
                generate(name, root / name)
            subprocess.run([sys.executable, __file__, name, "--measure", kind, "--root", str(root),
                            "--eval-hidden", str(args.eval_hidden)], check=True)


if __name__ == "__main__":
    main()
