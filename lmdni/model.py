"""The recurrent core: an LSTM language model that emits its output and a synthetic gradient in one forward call.

The recurrent state of every layer, (h, c), is handled as one flat (batch, state_size) tensor, laid out as
[h_0 .. h_{L-1}, c_0 .. c_{L-1}] per row. That is what the synthetic-gradient head predicts the gradient for (it
reads it with c squashed by tanh unless told otherwise, see `head_input`), what the trainer carries between windows,
and what a checkpoint stores.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import HEAD_INPUTS, LSTM_KERNELS
from .head import SyntheticGradientHead, zero_linear
from .lstm import run_lstm


class Unrolled(NamedTuple):
    output: torch.Tensor  # (T, B, hidden): the top layer's outputs
    logits: torch.Tensor  # (T, B, vocab)
    state: torch.Tensor  # (B, state_size): the state after the last step
    first_input: torch.Tensor  # (B, embedding): the first step's input as the LSTM read it (dropout applied)


class CoreOutput(NamedTuple):
    logits: torch.Tensor  # (T, B, vocab)
    state: torch.Tensor  # (B, state_size): the state after the window's last step (the next boundary)
    final_synthetic_gradient: torch.Tensor | None  # (B, state_size): predicted d(future loss)/d(final state)
    start_synthetic_gradient: torch.Tensor | None  # (B, state_size): the same prediction for the start state
    aux_prediction: torch.Tensor | None = None  # DNI+Aux: the next boundary's SG, predicted at the window's start
    start_head_input: torch.Tensor | None = None  # linear head: what it read for the start state (its regression)
    final_head_input: torch.Tensor | None = None  # two weight sets (an average, a ridge solution beside the head):
    # what they read for the final state, so the window need not form it again for the other set's SG


class BinaryCode(nn.Module):
    """Symbols as their bits, the encoding of the NTM / DNI Copy tasks (8-bit patterns), for any vocabulary.

    In: the symbol's bit vector through a linear layer (where an embedding would learn one free row per symbol).
    Out: one independent Bernoulli per bit, returned as the log-probability of every symbol's bit pattern,
    log p(v) = sum_j log sigmoid(+-l_j), so the rest of the pipeline (cross-entropy, sampling) reads them as logits
    (cross-entropy renormalises over the vocabulary: codes past it get no mass). A pattern stored bit by bit is one
    the model can copy without having learned 2^k separate output rows, which is why the copy tasks are posed so.
    """

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int):
        super().__init__()
        bits = max(1, (vocab_size - 1).bit_length())
        codes = (torch.arange(vocab_size)[:, None] >> torch.arange(bits)) & 1
        self.register_buffer("codes", codes.float(), persistent=False)  # rebuilt from the config, not stored
        self.encode = nn.Linear(bits, embedding_size)
        self.decode = nn.Linear(hidden_size, bits)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encode(self.codes[inputs])

    def logits(self, output: torch.Tensor) -> torch.Tensor:
        bit_logits = self.decode(output)
        codes = self.codes.to(bit_logits.dtype)
        return F.logsigmoid(bit_logits) @ codes.t() + F.logsigmoid(-bit_logits) @ (1 - codes).t()


class LSTMCore(nn.Module):
    def __init__(self, vocab_size: int, hidden_size: int, num_layers: int = 1, embedding_size: int = 128,
                 dropout: float = 0.0, sg_hidden_size: int | None = None, sg_num_layers: int = 1,
                 aux_head: bool = False, sg_input: str = "squashed", symbols: str = "embedding",
                 aux_in_target: bool = False, sg_rank: int = 0, lstm_kernel: str = "torch",
                 sg_average: float = 0.0, sg_ridge: float = 0.0, sg_calibration: float = 0.0,
                 sg_average_use: str = "both", sg_ridge_use: str = "head", sg_ridge_select: bool = False):
        """`sg_hidden_size=None`: no synthetic-gradient head (plain TBPTT); 0: linear head; >0: MLP head.
        `sg_rank`: > 0 makes the head low-rank (state -> sg_rank -> state).
        `aux_head`: DNI+Aux, a second head predicting the next boundary's synthetic gradient from the start state.
        `aux_in_target`: let the aux loss's gradient into the SG's bootstrapped target too (see `aux_input`; for
        reproducing runs made so, docs/results).
        `sg_input`: what the SG head reads — "squashed" (h, tanh c) or "raw" (h, c): the cell state is unbounded,
        and a linear head on a growing c predicts a growing SG (see `head_input`).
        `symbols`: "embedding" (a learned row per symbol in, a softmax out) or "binary" (`BinaryCode`).
        `lstm_kernel`: which recurrence runs the LSTM's weights in training, "torch" (nn.LSTM) or "stepwise"
        (`lmdni.lstm`).
        `sg_average`: > 0 injects (and bootstraps from) an exponential moving average of the SG head's weights, this
        decay per window, while the head itself is what the regression trains (`SyntheticGradientHead.keep_average`);
        `sg_average_use` says where the average stands in for the head: "both", "injection" or "target".
        `sg_ridge`: > 0 fits the (linear) head by ridge regression on its targets, forgotten at this decay per window,
        instead of Adam (`SyntheticGradientHead.keep_ridge`); `sg_ridge_use="injection"` keeps the solution beside the
        Adam-trained head and injects it; `sg_ridge_select` chooses its penalty by held-out error.
        `sg_calibration`: > 0 injects the SG times its calibrated gain, its held-out predictions' least-squares fit
        to their targets over windows forgotten at this decay (`SyntheticGradientHead.keep_calibration`)."""
        super().__init__()
        if sg_input not in HEAD_INPUTS:
            raise ValueError(f"sg_input must be raw or squashed, got {sg_input!r}")
        if symbols not in ("embedding", "binary"):
            raise ValueError(f"symbols must be embedding or binary, got {symbols!r}")
        if lstm_kernel not in LSTM_KERNELS:
            raise ValueError(f"lstm_kernel must be one of {', '.join(LSTM_KERNELS)}, got {lstm_kernel!r}")
        self.lstm_kernel = lstm_kernel
        self.sg_input, self.aux_in_target = sg_input, aux_in_target
        self.vocab_size, self.hidden_size, self.num_layers = vocab_size, hidden_size, num_layers
        if symbols == "binary":
            self.binary = BinaryCode(vocab_size, embedding_size, hidden_size)
            self.embedding, self.decoder = self.binary.embed, self.binary.logits
        else:
            self.embedding = nn.Embedding(vocab_size, embedding_size)
            self.decoder = nn.Linear(hidden_size, vocab_size)
        self.lstm = nn.LSTM(embedding_size, hidden_size, num_layers, dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.synthetic_gradient = (SyntheticGradientHead(self.state_size, sg_hidden_size, sg_num_layers, sg_rank)
                                   if sg_hidden_size is not None else None)
        if self.synthetic_gradient is not None and sg_average > 0:
            self.synthetic_gradient.keep_average(sg_average, sg_average_use)
        if self.synthetic_gradient is not None and sg_ridge > 0:
            self.synthetic_gradient.keep_ridge(sg_ridge, sg_ridge_use, sg_ridge_select)
        if self.synthetic_gradient is not None and sg_calibration > 0:
            self.synthetic_gradient.keep_calibration(sg_calibration)
        # DNI+Aux: from the top layer's output at the window's first step, predict the SG that the window's end will
        # produce. It reads an in-graph activation, so its loss also trains the core (see `aux_input` for which
        # part of it). Zero-initialised, like the SG.
        self.aux_synthetic_gradient = zero_linear(hidden_size, self.state_size) if aux_head else None

    @property
    def state_size(self) -> int:
        return 2 * self.num_layers * self.hidden_size

    def initial_state(self, batch_size: int, device=None) -> torch.Tensor:
        """Zeros in the weights' dtype (float64 models, for gradient checks, get float64 states)."""
        return torch.zeros(batch_size, self.state_size, device=device, dtype=self.lstm.weight_hh_l0.dtype)

    def split_state(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 2LH) → h, c as nn.LSTM wants them: (L, B, H) each."""
        batch = state.shape[0]
        layers = state.view(batch, 2 * self.num_layers, self.hidden_size).transpose(0, 1)
        return layers[: self.num_layers].contiguous(), layers[self.num_layers:].contiguous()

    def join_state(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.cat([h, c], 0).transpose(0, 1).reshape(h.shape[1], self.state_size)

    def head_input(self, state: torch.Tensor) -> torch.Tensor:
        """The SG head's input. It still predicts the gradient for the raw (h, c); only what it reads changes."""
        if self.sg_input == "raw":
            return state
        cells = self.num_layers * self.hidden_size
        return torch.cat([state[:, :cells], torch.tanh(state[:, cells:])], 1)

    def injected_synthetic_gradient(self, state: torch.Tensor) -> torch.Tensor:
        """The SG a window injects for `state` (and bootstraps from), before `dni.scale`: the head's, or its
        average's where the average is injected (`sg_average`) or the ridge solution's where that is (`sg_ridge_use`),
        times its gain where it is calibrated (`sg_calibration`)."""
        head = self.synthetic_gradient
        predicted = head.injected(self.head_input(state))
        return predicted * head.gain if head.calibrates else predicted

    def forward(self, inputs: torch.Tensor, state: torch.Tensor, with_synthetic_gradient: bool = True) -> CoreOutput:
        """inputs (T, B) symbol ids; state (B, state_size). The head reads the states *detached*: its regression
        loss trains the head only, never the core (the core learns from the gradients the head injects)."""
        unrolled = self.unroll(inputs, state)
        if self.synthetic_gradient is None or not with_synthetic_gradient:
            return CoreOutput(unrolled.logits, unrolled.state, None, None)
        return self.predict_synthetic_gradients(state, unrolled)

    def unroll(self, inputs: torch.Tensor, state: torch.Tensor) -> Unrolled:
        """The language model alone."""
        h, c = self.split_state(state)
        embedded = self.dropout(self.embedding(inputs))
        output, (h, c) = run_lstm(self.lstm, embedded, h, c, self.lstm_kernel)
        return Unrolled(output, self.decoder(self.dropout(output)), self.join_state(h, c), embedded[0])

    def aux_input(self, first_input: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """What the aux head reads: the top layer's output at the window's first step, recomputed (one step) from
        the start state *detached*, on the first input exactly as the unroll read it (same dropout mask). Its loss
        then trains the core's weights as if it read the unrolled output, but adds nothing to the gradient that
        reaches the start state, which is the SG's bootstrapped target: otherwise the SG would learn to predict the
        aux loss's gradient, while the aux loss's target is the SG — a loop that ran away on Repeat-Copy
        (docs/method.md). One exception: with `num_layers > 1` and `dropout > 0`, the between-layer dropout mask is
        drawn afresh for this step, so the recomputed output is an equally distributed sample, not the unrolled one."""
        h, c = self.split_state(start.detach())
        first, _ = run_lstm(self.lstm, first_input.unsqueeze(0), h, c, self.lstm_kernel)
        return first[0]

    def predict_synthetic_gradients(self, start: torch.Tensor, unrolled: Unrolled) -> CoreOutput:
        """The heads, given an unrolled window. Both states' predictions are constants of the window's backward
        (the final state's is injected or is the aux head's target; the start state's is regressed onto the target
        afterwards), and the heads read the states detached.

        A linear head (full or low rank) predicts both in one product without a graph: its regression needs only
        the start state's input and prediction (`lmdni.boundary` forms its gradients in closed form). An MLP head
        keeps the start state's graph for the autograd regression; its final-state prediction is made without one
        (a shared graph would make the regression's backward run over twice the rows, half of them zeros)."""
        final, head = unrolled.state, self.synthetic_gradient
        start_input = final_input = None
        if head.keeps_average or head.ridge_injects:  # two weight sets: the final state's SG is the injected one's,
            with torch.no_grad():                       # the start state's the head's own
                final_input = self.head_input(final.detach())
                final_sg = head.injected(final_input)
            if head.closed_form:
                with torch.no_grad():
                    start_input = self.head_input(start.detach())
                    start_sg = head(start_input)
            else:
                start_sg = head(self.head_input(start.detach()))
        elif head.closed_form:
            with torch.no_grad():
                both = self.head_input(torch.cat([start.detach(), final.detach()]))
                start_sg, final_sg = head(both).chunk(2)
                start_input = both[: start.shape[0]]
        else:
            start_sg = head(self.head_input(start.detach()))
            with torch.no_grad():
                final_sg = head(self.head_input(final.detach()))
        aux = None
        if self.aux_synthetic_gradient is not None:
            first = unrolled.output[0] if self.aux_in_target else self.aux_input(unrolled.first_input, start)
            aux = self.aux_synthetic_gradient(first)
        return CoreOutput(unrolled.logits, final, final_sg, start_sg, aux, start_input, final_input)
