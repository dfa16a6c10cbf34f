"""Bits per character over a whole split, state carried from start to end."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .data import eval_columns


def _nats(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Summed in float64: a split has ~10^5-10^6 terms, and BPC is reported to four decimals."""
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="none")
    return losses.double().sum().item()


@torch.no_grad()
def split_nats(model, data: torch.Tensor, batch_size: int = 32, chunk: int = 256, device="cpu") -> tuple[float, int]:
    """(total nats, number of predicted characters). Every character after the first is predicted exactly once,
    with the state carried across the whole of its column (see `eval_columns`)."""
    was_training = model.training
    model.eval()
    inputs, targets, tail_inputs, tail_targets = eval_columns(data, batch_size)
    state = model.initial_state(inputs.shape[1], device)
    total, count = 0.0, 0
    for start in range(0, inputs.shape[0], chunk):
        x = inputs[start:start + chunk].to(device)
        y = targets[start:start + chunk].to(device)
        out = model(x, state, with_synthetic_gradient=False)
        total += _nats(out.logits, y)
        count += y.numel()
        state = out.state
    if len(tail_inputs):
        out = model(tail_inputs.view(-1, 1).to(device), state[-1:], with_synthetic_gradient=False)
        total += _nats(out.logits, tail_targets.to(device))
        count += len(tail_targets)
    model.train(was_training)
    return total, count


def bits_per_character(nats: float, count: int) -> float:
    return nats / (math.log(2) * count)


def split_bpc(model, data, batch_size: int = 32, device="cpu") -> float:
    return bits_per_character(*split_nats(model, data, batch_size, device=device))
