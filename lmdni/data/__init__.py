"""Character corpora: symbols → ids, and the batched stream the truncated trainer reads.

Data never imports the model or the trainer.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..errors import DataError
from .ptb import load_ptb_chars
from .stream import TrainStream, eval_columns
from .generated import lag_text
from .text import load_text_chars, split_text
from .wikipedia import DATASETS as WIKIPEDIA, load_bytes_corpus

log = logging.getLogger(__name__)

UNKNOWN = "<unk>"


@dataclass
class Corpus:
    vocab: list[str]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


def build_corpus(splits: dict[str, list[str]]) -> Corpus:
    """The vocabulary is the sorted set of training symbols. A symbol of valid/test never seen in training maps to
    one extra `<unk>` symbol, added only when needed: the model has never been trained to emit it, so those
    characters cost what the model says they cost (honest, a little pessimistic) and are never silently dropped."""
    if not splits["train"]:
        raise DataError("the training split is empty")
    vocab = sorted(set(splits["train"]))
    known = set(vocab)
    unseen = {split: sum(1 for s in splits[split] if s not in known) for split in ("valid", "test")}
    if any(unseen.values()):
        log.warning("characters unseen in training (mapped to %s): valid %d, test %d", UNKNOWN,
                    unseen["valid"], unseen["test"])
        vocab.append(UNKNOWN)
    index = {s: i for i, s in enumerate(vocab)}
    unk = index.get(UNKNOWN, -1)

    def encode(symbols):
        return torch.tensor([index.get(s, unk) for s in symbols], dtype=torch.long)

    return Corpus(vocab, encode(splits["train"]), encode(splits["valid"]), encode(splits["test"]))


def load_corpus(cfg) -> Corpus:
    """`cfg` is the `data` config node."""
    if cfg.name == "ptb":
        splits = load_ptb_chars(cfg.get("root"), download=cfg.get("download", True))
    elif cfg.name == "text":
        splits = load_text_chars(cfg.get("path"), cfg.valid_fraction, cfg.test_fraction)
    elif cfg.name == "lag":  # generated: dependencies of known spans (lmdni.data.generated)
        text = lag_text(int(cfg.chars), spans=tuple(cfg.spans), density=float(cfg.density), seed=int(cfg.seed))
        splits = split_text(text, cfg.valid_fraction, cfg.test_fraction, "data=lag")
    elif cfg.name in WIKIPEDIA:  # 100M characters: straight to tensors, no lists of symbols
        return Corpus(*load_bytes_corpus(cfg.name, cfg.get("root"), cfg.get("download", True),
                                         int(cfg.valid_chars), int(cfg.test_chars)))
    else:
        raise DataError(f"unknown data set {cfg.name!r}: use data=ptb, text, lag, text8 or enwik8")
    return build_corpus(splits)


__all__ = ["Corpus", "TrainStream", "build_corpus", "eval_columns", "load_corpus"]
