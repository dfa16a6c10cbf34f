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
    if columns == WHOLE_SPLIT:
        return whole_splits_nats(model, [data], device, progress, chunk)[0]
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


@torch.no_grad()
def whole_splits_nats(model, splits: list, device="cpu", progress: str | None = None,
                      chunk: int | None = None) -> list[tuple[float, int]]:
    """`split_nats(model, data)` (the whole split, the state carried from one zero state) for several splits at
    once: each split is a column of one batch, so on hardware where a step at batch 1 costs what it costs at batch
    2 or 3 (a CPU reading weights per step), the valid and test splits take the time of the longer one. A column
    leaves the batch when its split ends; every column starts at the same character index, so the two-timescale
    model's ticks fall alike in all of them. Each split's result is what it gets read alone, to rounding. `chunk`,
    `progress`: as `split_nats`'s."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    order = sorted(range(len(splits)), key=lambda i: -len(splits[i]))  # the active columns: always a prefix
    ends = [len(splits[i]) - 1 for i in order]  # predictions in each column
    totals = [0.0] * len(splits)
    state = model.initial_state(len(splits), device)
    bar = tqdm(total=sum(ends), unit="char", unit_scale=True, desc=progress, disable=None if progress else True,
               leave=False, dynamic_ncols=True)
    position, active = 0, len(order)
    while active and ends[active - 1] == 0:  # a split of one character predicts nothing
        active -= 1
    state = state[:active]
    while active:
        stop = min(position + (chunk or max(256, 65536 // active)), ends[active - 1])  # never past a column's end
        columns = [splits[i] for i in order[:active]]
        x = torch.stack([data[position:stop] for data in columns], 1).to(device).long()
        y = torch.stack([data[position + 1:stop + 1] for data in columns], 1).to(device).long()
        out = model(x, state, with_synthetic_gradient=False)
        losses = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]).float(), y.reshape(-1),
                                 reduction="none").double().view(y.shape).sum(0)
        for column, nats in zip(order[:active], losses.tolist()):
            totals[column] += nats
        bar.update((stop - position) * active)
        position, state = stop, out.state
        while active and ends[active - 1] == position:
            active -= 1
        state = state[:active]
    bar.close()
    model.train(was_training)
    return [(totals[i], len(splits[i]) - 1) for i in range(len(splits))]


def bits_per_character(nats: float, count: int) -> float:
    return nats / (math.log(2) * count)


def split_bpc(model, data, columns: int = WHOLE_SPLIT, device="cpu") -> float:
    return bits_per_character(*split_nats(model, data, columns, device=device))
