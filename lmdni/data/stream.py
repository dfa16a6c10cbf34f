"""How a character stream is batched for truncated training and for evaluation.

Training: the stream is cut into `batch_size` contiguous columns, read top to bottom in windows of `unroll` steps.
Column b continues across windows, so the hidden state of column b is carried from one window to the next (detached);
it is reset only where the stream restarts (a new pass over the data).

    stream:  a b c d e f g h i j k l m n o p q r s t u v w x ...
                        ┌ col 0 ┐ ┌ col 1 ┐ ┌ col 2 ┐
    window 0 (unroll 3):  a b c     i j k     q r s       inputs; targets are the next symbols
    window 1:             d e f     l m n     t u v       state carried from window 0, column by column
"""
from __future__ import annotations

import torch

from ..errors import ConfigError


def _columns(data: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets as (length, batch) matrices; targets are inputs shifted by one symbol."""
    length = (len(data) - 1) // batch_size
    if length < 1:
        raise ConfigError(f"batch size {batch_size} is larger than the stream allows "
                          f"({len(data)} symbols give at most {len(data) - 1} columns)")
    inputs = data[: batch_size * length].view(batch_size, length).t().contiguous()
    targets = data[1: batch_size * length + 1].view(batch_size, length).t().contiguous()
    return inputs, targets


class TrainStream:
    """Windows of at most `unroll` steps over the training columns, pass after pass.

    `position` (the next row) and `epoch` are the whole state of the stream: together with the carried hidden state
    they are what an exact resume needs.
    """

    def __init__(self, data: torch.Tensor, batch_size: int, unroll: int, columns: slice = slice(None)):
        """`columns`: the share of the `batch_size` columns this process reads (data-parallel training)."""
        if unroll < 1:
            raise ConfigError(f"trainer.unroll must be >= 1, got {unroll}")
        inputs, targets = _columns(data, batch_size)
        self.inputs, self.targets = inputs[:, columns].contiguous(), targets[:, columns].contiguous()
        self.unroll = unroll
        self.position = 0
        self.epoch = 0

    @property
    def length(self) -> int:
        return self.inputs.shape[0]

    def to(self, device) -> "TrainStream":
        """Keep the columns on the training device: no host-to-device copy per window."""
        self.inputs, self.targets = self.inputs.to(device), self.targets.to(device)
        return self

    def next_window(self):
        """(inputs, targets, starts_pass, ends_pass, mask). `starts_pass`: reset the state before this window;
        `ends_pass`: nothing follows this window's last step, so there is no future gradient to inject; `mask`:
        which targets count in the loss (None: all of them)."""
        start = self.position
        stop = min(start + self.unroll, self.length)
        x, y = self.inputs[start:stop].long(), self.targets[start:stop].long()  # large corpora are stored as uint8
        starts_pass = start == 0
        ends_pass = stop == self.length
        self.position = 0 if ends_pass else stop
        if ends_pass:
            self.epoch += 1
        return x, y, starts_pass, ends_pass, None

    def state_dict(self) -> dict:
        return {"position": self.position, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.position, self.epoch = int(state["position"]), int(state["epoch"])


def eval_columns(data: torch.Tensor, batch_size: int):
    """Every symbol after the first is predicted exactly once.

    The len-1 predictions are cut into `batch_size` columns of equal length; the few left over continue the last
    column (they follow it in the stream), so they are evaluated afterwards from that column's final state.
    Returns (inputs, targets, tail_inputs, tail_targets); tails are 1-D and may be empty.
    """
    batch_size = max(1, min(batch_size, len(data) - 1))
    inputs, targets = _columns(data, batch_size)
    used = inputs.numel()
    return inputs, targets, data[used: len(data) - 1], data[used + 1:]
