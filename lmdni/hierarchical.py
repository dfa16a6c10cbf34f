"""A two-timescale hierarchical language model: a fast LSTM that reads every character and a slow LSTM that ticks
every `slow_every` characters, talking to each other (`model=hierarchical`; the DNI paper's multi-network system).

    characters   x0  x1  x2  x3 | x4  x5  x6  x7 | ...          (slow_every = 4)
    fast core    f0  f1  f2  f3 | f4  f5  f6  f7 | ...          reads [embedding(x_t), context]
    message                  m0 |             m1 |              m = message(fast output at the tick)
    slow core                s1 <-------------s2 <- ...         one LSTMCell step per message
    context      c0  c0  c0  c0 | c1  c1  c1  c1 | ...          c = the slow core's latest h (c0: its start)

The fast core predicts the next character; the slow core's only task is to hand the fast core a context that helps,
so its loss is the fast core's loss, reached through the contexts it supplied, and what it can keep depends on the
messages the fast core sends it. The state carried between windows is one flat (batch, state_size) tensor,
[fast h, fast c, slow h, slow c, phase], phase being the characters read since the slow core's last tick, so any
chunking (evaluation, sampling one character at a time) ticks at the same characters.

How the two cores are trained on their own schedules, with synthetic gradients at their time boundaries and on the
interface between them, is `lmdni.hierarchical_training`. This module is the model: `unroll` runs a window and, for
training, records what crossed the interface.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .head import SyntheticGradientHead, zero_linear
from .model import CoreOutput


STEPWISE_BATCH = 4  # up to this many columns, evaluation steps the fast core itself (`HierarchicalCore.forward`)


def _lstm_cell(gates: torch.Tensor, c: torch.Tensor, size: int):
    """(h, c) after one LSTM step from its summed gates (B, 4·size), in nn.LSTM's order i, f, g, o."""
    squashed = torch.sigmoid(gates)  # the g quarter is squashed for nothing: one operator instead of three
    c = torch.addcmul(squashed[:, size:2 * size] * c, squashed[:, :size], torch.tanh(gates[:, 2 * size:3 * size]))
    return squashed[:, 3 * size:] * torch.tanh(c), c


class Interface(NamedTuple):
    """What crossed between the cores in one window (training only)."""
    messages: list  # (B, message) per tick, in the window's graph
    slow_before: list  # (B, 2·slow) the slow state each message was read with, detached
    contexts: list  # (B, slow) the context read by each segment, in the graph (`.grad` kept after backward)


class TwoTimescaleUnrolled(NamedTuple):
    """A window unrolled for training (`HierarchicalCore.unroll`); the LSTM core's counterpart is `model.Unrolled`."""
    logits: torch.Tensor  # (T, B, vocab)
    state: torch.Tensor  # (B, state_size): the state after the window's last step
    interface: Interface | None  # what crossed between the cores (record=True), else None


class HierarchicalCore(nn.Module):

    def __init__(self, vocab_size: int, hidden_size: int, slow_hidden_size: int, slow_every: int,
                 message_size: int, embedding_size: int = 128, heads: bool = False, aux: bool = False,
                 head_input: str = "squashed", head_hidden_size: int = 0, head_num_layers: int = 1,
                 head_rank: int = 0):
        """`heads`: the synthetic-gradient heads (method=dni): one per core's time boundary (linear on the state,
        c squashed by tanh as for the LSTM core) and one for the interface, which predicts, from a message and the
        slow state that read it, the gradient of the slow core's future loss with respect to the message. Every
        head's output layer starts at zero: a fresh system trains as plain truncation. `aux` (with `heads`;
        method=dni_aux): DNI+Aux's head per core, predicting from the core's output at its window's first step the
        SG its window's end will produce (as the LSTM core's; zero-initialised, its loss trains the core).
        `head_input`, `head_hidden_size`, `head_num_layers`, `head_rank`: the time-boundary heads' input and shape,
        as `dni.*` makes them for the LSTM core (`head_input` also serves the interface head's slow-state input)."""
        super().__init__()
        if slow_every < 1:
            raise ValueError(f"slow_every must be >= 1, got {slow_every}")
        self.vocab_size, self.hidden_size, self.slow_hidden_size = vocab_size, hidden_size, slow_hidden_size
        self.slow_every, self.message_size = slow_every, message_size
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.fast = nn.LSTM(embedding_size + slow_hidden_size, hidden_size)
        self.message = nn.Linear(hidden_size, message_size)
        self.slow = nn.LSTMCell(message_size, slow_hidden_size)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        self.raw_head_input = head_input == "raw"
        self.synthetic_gradient = None
        if heads:
            interface = zero_linear(message_size + 2 * slow_hidden_size, message_size)
            shape = dict(hidden_size=head_hidden_size, num_layers=head_num_layers, rank=head_rank)
            self.synthetic_gradient = nn.ModuleDict({"fast": SyntheticGradientHead(2 * hidden_size, **shape),
                                                     "slow": SyntheticGradientHead(2 * slow_hidden_size, **shape),
                                                     "interface": interface})
        self.aux_synthetic_gradient = None
        if heads and aux:
            self.aux_synthetic_gradient = nn.ModuleDict({"fast": zero_linear(hidden_size, 2 * hidden_size),
                                                         "slow": zero_linear(slow_hidden_size, 2 * slow_hidden_size)})

    # ------------------------------------------------------------------------------------------------ the state
    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size + 2 * self.slow_hidden_size + 1

    def initial_state(self, batch_size: int, device=None) -> torch.Tensor:
        return torch.zeros(batch_size, self.state_size, device=device, dtype=self.decoder.weight.dtype)

    def split(self, state: torch.Tensor):
        """(fast (B, 2F), slow (B, 2S), phase (B, 1))."""
        fast = 2 * self.hidden_size
        return state[:, :fast], state[:, fast:-1], state[:, -1:]

    @staticmethod
    def squashed(state: torch.Tensor) -> torch.Tensor:
        """(h, tanh c): bounded as c grows (what `dni.head_input=squashed` does for the LSTM)."""
        h, c = state.chunk(2, 1)
        return torch.cat([h, torch.tanh(c)], 1)

    def head_input(self, state: torch.Tensor) -> torch.Tensor:
        """What a head reads of a core's (h, c): squashed by default, as it is (`dni.head_input=raw`)."""
        return state if self.raw_head_input else self.squashed(state)

    # ------------------------------------------------------------------------------------------------ the model
    def forward(self, inputs: torch.Tensor, state: torch.Tensor, with_synthetic_gradient: bool = False) -> CoreOutput:
        """Evaluation and sampling: logits and the next state (the heads are the training procedure's).

        The arithmetic of `unroll`, laid out for reading a split one column at a time: there a tick's segment is a
        4-step nn.LSTM call at batch 1, whose fixed cost is most of the time. Here the embedding's share of the
        fast core's gates is one matmul for the whole chunk, the slow core's h is read in one product per tick (as
        the context and by the slow core's next step), and a step is a handful of small operators (the same values
        to rounding: tests/test_hierarchical.py). Wider batches (validation's columns) amortise that cost and go
        through `unroll`."""
        if inputs.shape[1] > STEPWISE_BATCH:
            logits, final, _ = self.unroll(inputs, state)
            return CoreOutput(logits, final, None, None)
        fast, slow, phase = self.split(state)
        ticks_done = int(phase[0].item()) if phase.numel() else 0
        h, c = fast.chunk(2, 1)
        slow_h, slow_c = slow.chunk(2, 1)
        lstm, size, slow_size = self.fast, self.hidden_size, self.slow_hidden_size
        from_embedding, from_context = lstm.weight_ih_l0.split([self.embedding.embedding_dim, slow_size], 1)
        gates_in = F.linear(self.embedding(inputs), from_embedding, lstm.bias_ih_l0 + lstm.bias_hh_l0)
        recurrent = lstm.weight_hh_l0.t().contiguous()  # (H, 4H): h @ it is a fast matrix-vector product at batch 1
        # The slow core's h is read twice per tick, as the fast core's context and by its own next step: one product
        # serves both, a call fewer per tick.
        from_slow = torch.cat([from_context, self.slow.weight_hh], 0).t().contiguous()  # (S, 4H + 4S)
        slow_bias = self.slow.bias_ih + self.slow.bias_hh
        message_weight, slow_from_message = self.message.weight.t().contiguous(), self.slow.weight_ih.t().contiguous()
        outputs, t, steps = [], 0, inputs.shape[0]
        while t < steps:
            n = min(self.slow_every - ticks_done, steps - t)
            from_slow_h = torch.mm(slow_h, from_slow)
            segment = gates_in[t:t + n] + from_slow_h[:, :4 * size]
            for step in range(n):
                gates = torch.addmm(segment[step], h, recurrent)
                h, c = _lstm_cell(gates, c, size)
                outputs.append(h)
            t, ticks_done = t + n, ticks_done + n
            if ticks_done == self.slow_every:
                message = torch.addmm(self.message.bias, h, message_weight)
                gates = torch.addmm(from_slow_h[:, 4 * size:] + slow_bias, message, slow_from_message)
                slow_h, slow_c = _lstm_cell(gates, slow_c, slow_size)
                ticks_done = 0
        final = torch.cat([h, c, slow_h, slow_c, torch.full_like(phase, ticks_done)], 1)
        return CoreOutput(self.decoder(torch.stack(outputs)), final, None, None)

    def unroll(self, inputs: torch.Tensor, state: torch.Tensor, record: bool = False) -> TwoTimescaleUnrolled:
        """inputs (T, B). Returns the logits, the final state and (`record`) what crossed the interface.

        `record` (training): the messages and the contexts the fast core reads are returned, in the graph, each
        context keeping its gradient (pass a `state` that requires grad), so that one backward gives the fast core
        the exact gradient of the window's loss, the paths through the slow core inside the window included, and
        tells the training procedure how much of that loss each context carried (the slow core's signal)."""
        fast, slow, phase = self.split(state)
        ticks_done = int(phase[0].item()) if phase.numel() else 0
        if record:
            interface = Interface([], [], [])
        h, c = (t.unsqueeze(0).contiguous() for t in fast.chunk(2, 1))
        slow_h, slow_c = slow.chunk(2, 1)
        embedded = self.embedding(inputs)
        outputs, t, steps = [], 0, inputs.shape[0]
        while t < steps:
            n = min(self.slow_every - ticks_done, steps - t)
            context = slow_h
            if record:
                context = slow_h.clone()  # a node of its own: its .grad is what the fast core's reading of it got
                context.retain_grad()
                interface.contexts.append(context)
            segment = torch.cat([embedded[t:t + n], context.unsqueeze(0).expand(n, -1, -1)], 2)
            out, (h, c) = self.fast(segment, (h, c))
            outputs.append(out)
            t, ticks_done = t + n, ticks_done + n
            if ticks_done == self.slow_every:
                message = self.message(out[-1])
                if record:
                    interface.messages.append(message)
                    interface.slow_before.append(torch.cat([slow_h, slow_c], 1).detach())
                slow_h, slow_c = self.slow(message, (slow_h, slow_c))
                ticks_done = 0
        output = torch.cat(outputs)
        phase = torch.full_like(phase, ticks_done)
        final = torch.cat([h[0], c[0], slow_h, slow_c, phase], 1)
        return TwoTimescaleUnrolled(self.decoder(output), final, interface if record else None)

    def first_fast_output(self, first_input: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """What DNI+Aux's fast head reads: the fast core's output at a window's first character, recomputed (one
        step) from `state` *detached*. The aux loss then trains the weights as if it read the unrolled output but
        adds nothing to the gradients that reach the start state or the contexts, which are the SG heads' targets
        (the LSTM core's reason: `LSTMCore.aux_input`)."""
        fast, slow, _ = self.split(state.detach())
        h, c = (t.unsqueeze(0).contiguous() for t in fast.chunk(2, 1))
        step = torch.cat([self.embedding(first_input), slow.chunk(2, 1)[0]], 1).unsqueeze(0)
        return self.fast(step, (h, c))[0][0]

    def first_slow_output(self, first_message: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """The slow core's h after a slow window's first tick, from its start (B, 2S) and message detached: what
        DNI+Aux's slow head reads (as `first_fast_output`)."""
        return self.slow(first_message.detach(), tuple(start.detach().chunk(2, 1)))[0]

    def slow_steps(self, start: torch.Tensor, messages: list):
        """The slow core alone, from `start` (B, 2S) over `messages`: the h after each tick (the contexts it
        hands the fast core) and the state after each tick. The training procedure reruns a slow window with
        this to backpropagate the slow core's loss through all of it at once."""
        slow_h, slow_c = start.chunk(2, 1)
        contexts, states = [slow_h], []
        for message in messages:
            slow_h, slow_c = self.slow(message, (slow_h, slow_c))
            contexts.append(slow_h)
            states.append((slow_h, slow_c))
        return contexts, states
