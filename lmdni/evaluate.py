"""Bits per character over a split.

Two ways to read a split, both predicting every character after the first exactly once:

* `columns=1` (what `results.json` and `lmdni-eval` report): the state is carried across the whole split from one
  zero state, as published character-level numbers are computed. Sequential: one step at a time over the split.
* `columns=N` (validation during training, `trainer.eval_batch_size`): the split is cut into N contiguous columns
  read side by side, each from a zero state, so every column's start is read without context. Faster by about N
  on parallel hardware, and a little pessimistic (docs/results/eval-modes has the difference on PTB).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .data import eval_columns

WHOLE_SPLIT = 1  # columns: one, so the state is carried across the whole split


def _nats(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Summed in float64: a split has ~10^5-10^6 terms, and BPC is reported to four decimals."""
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="none")
    return losses.double().sum().item()


@torch.no_grad()
def split_nats(model, data: torch.Tensor, columns: int = WHOLE_SPLIT, chunk: int | None = None,
               device="cpu", progress: str | None = None) -> tuple[float, int]:
    """(total nats, number of predicted characters), reading the split as `columns` side-by-side columns with the
    state carried down each (see `eval_columns`). `chunk`: steps per forward call; by default about 64k
    predictions per call, so a single column is not read in thousands of tiny calls. `progress`: a bar with this
    name (on a terminal)."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    inputs, targets, tail_inputs, tail_targets = eval_columns(data, columns)
    chunk = chunk or max(256, 65536 // inputs.shape[1])
    state = model.initial_state(inputs.shape[1], device)
    total, count = 0.0, 0
    bar = tqdm(total=len(data), unit="char", unit_scale=True, desc=progress, disable=None if progress else True,
               leave=False, dynamic_ncols=True)
    for start in range(0, inputs.shape[0], chunk):
        bar.update(min(chunk, inputs.shape[0] - start) * inputs.shape[1])
        x = inputs[start:start + chunk].to(device).long()  # large corpora are stored as uint8
        y = targets[start:start + chunk].to(device).long()
        out = model(x, state, with_synthetic_gradient=False)
        total += _nats(out.logits, y)
        count += y.numel()
        state = out.state
    if len(tail_inputs):
        out = model(tail_inputs.view(-1, 1).to(device).long(), state[-1:], with_synthetic_gradient=False)
        total += _nats(out.logits, tail_targets.to(device).long())
        count += len(tail_targets)
    bar.close()
    model.train(was_training)
    return total, count


def bits_per_character(nats: float, count: int) -> float:
    return nats / (math.log(2) * count)


def split_bpc(model, data, columns: int = WHOLE_SPLIT, device="cpu") -> float:
    return bits_per_character(*split_nats(model, data, columns, device=device))
