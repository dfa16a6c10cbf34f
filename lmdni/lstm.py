"""An LSTM recurrence for short training windows: a step loop with a hand-written backward (`model.lstm_kernel`).

Why: on a CPU, nn.LSTM runs oneDNN's RNN primitive, which pays a fixed cost at every call (set-up and weight
re-layout) before its first step: a one-step forward and backward at hidden 256, batch 16 took 2.8 ms there and
1.2 ms here on a 2-core AVX2 machine (scripts/bench_lstm.py). `StepwiseLSTM` has no such cost: the input projection
for every step is one matrix product, each step is one product with the recurrent weights and seven element-wise
operators, and the backward is the mirror loop, with the weight gradients formed once, over all steps, at the end
(one product each, as cuDNN does). Its arithmetic is dearer than oneDNN's (plain matrix products where oneDNN runs
its own GEMM on re-laid-out weights). Inside a training window the measured gain did not hold up on that machine
(docs/results/speed: DNI+Aux's one-step recompute and one- and two-step windows moved within the machine's noise),
so nn.LSTM is the default (`model.lstm_kernel=torch`) and the step loop is a setting (`stepwise`), for training
windows only (evaluation has no backward and keeps nn.LSTM), in fp32 or fp64.

The weights are nn.LSTM's own parameters (gate order i, f, g, o; both biases), so state dicts and checkpoints do not
depend on which recurrence ran. The two agree to fp32 rounding (tests/test_lstm.py checks outputs and every gradient
against nn.LSTM in float64 to 1e-12).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class StepwiseLSTM(torch.autograd.Function):
    """One layer. x (T, B, E), h0 and c0 (B, H) -> outputs (T, B, H), h_T, c_T."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        steps, batch, _ = x.shape
        hidden = h0.shape[1]
        # every step's input share of the gates in one product; each step then adds its recurrent share in place,
        # so `gates` ends up holding the activations i, f, g, o (what the backward needs)
        gates = torch.addmm(b_ih + b_hh, x.reshape(steps * batch, -1), w_ih.t()).view(steps, batch, 4 * hidden)
        hs = x.new_empty(steps + 1, batch, hidden)
        cs = x.new_empty(steps + 1, batch, hidden)
        tanh_cs = x.new_empty(steps, batch, hidden)
        hs[0], cs[0] = h0, c0
        recurrent = w_hh.t()
        for t in range(steps):
            a = gates[t]
            a.addmm_(hs[t], recurrent)
            a[:, : 2 * hidden].sigmoid_()
            a[:, 2 * hidden: 3 * hidden].tanh_()
            a[:, 3 * hidden:].sigmoid_()
            torch.mul(a[:, hidden: 2 * hidden], cs[t], out=cs[t + 1])
            cs[t + 1].addcmul_(a[:, :hidden], a[:, 2 * hidden: 3 * hidden])
            torch.tanh(cs[t + 1], out=tanh_cs[t])
            torch.mul(a[:, 3 * hidden:], tanh_cs[t], out=hs[t + 1])
        ctx.save_for_backward(x, w_ih, w_hh, gates, hs, cs, tanh_cs)
        return hs[1:], hs[steps], cs[steps]

    @staticmethod
    def backward(ctx, d_out, d_h, d_c):
        x, w_ih, w_hh, gates, hs, cs, tanh_cs = ctx.saved_tensors
        steps, batch, four_hidden = gates.shape
        hidden = four_hidden // 4
        i, f, g, o = gates.split(hidden, dim=2)
        # For all steps at once: what multiplies dc (for i, f, g) or dh (for o) to give each gate's pre-activation
        # gradient, and dc's share of dh through h = o·tanh(c). The loop below is then five operators a step.
        through = torch.empty_like(gates)
        torch.mul(g, i * (1 - i), out=through[..., :hidden])
        torch.mul(cs[:-1], f * (1 - f), out=through[..., hidden: 2 * hidden])
        torch.mul(i, 1 - g * g, out=through[..., 2 * hidden: 3 * hidden])
        torch.mul(tanh_cs, o * (1 - o), out=through[..., 3 * hidden:])
        dc_per_dh = o * (1 - tanh_cs * tanh_cs)
        d_gates = torch.empty_like(gates)
        dh = d_out[steps - 1] + d_h
        dc = d_c.clone()
        for t in range(steps - 1, -1, -1):
            dc.addcmul_(dh, dc_per_dh[t])
            torch.mul(through[t, :, : 3 * hidden].view(batch, 3, hidden), dc.unsqueeze(1),
                      out=d_gates[t, :, : 3 * hidden].view(batch, 3, hidden))
            torch.mul(through[t, :, 3 * hidden:], dh, out=d_gates[t, :, 3 * hidden:])
            dc = dc * f[t]
            dh = torch.addmm(d_out[t - 1], d_gates[t], w_hh) if t > 0 else d_gates[t] @ w_hh
        flat = d_gates.view(steps * batch, four_hidden)
        need = ctx.needs_input_grad
        dx = (flat @ w_ih).view(x.shape) if need[0] else None
        dw_ih = flat.t() @ x.reshape(steps * batch, -1) if need[3] else None
        dw_hh = flat.t() @ hs[:-1].reshape(steps * batch, hidden) if need[4] else None
        db = flat.sum(0) if need[5] or need[6] else None
        return dx, dh if need[1] else None, dc if need[2] else None, dw_ih, dw_hh, db, db


def uses_stepwise(kernel: str, x: torch.Tensor) -> bool:
    """`stepwise`: the step loop for training (gradients on); evaluation, which has no backward, keeps nn.LSTM."""
    return kernel == "stepwise" and torch.is_grad_enabled() and not torch.is_autocast_enabled(x.device.type)


def run_lstm(lstm: nn.LSTM, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, kernel: str = "torch"):
    """nn.LSTM's call, (output, (h, c)) with h and c (L, B, H), by the recurrence `kernel` picks. Between layers
    the stepwise path applies nn.LSTM's dropout itself (an equally distributed mask, not the same draw)."""
    plain = lstm.bias and not (lstm.batch_first or lstm.bidirectional or lstm.proj_size)
    if not (plain and uses_stepwise(kernel, x)):
        return lstm(x, (h, c))
    finals_h, finals_c = [], []
    for layer in range(lstm.num_layers):
        if layer > 0:
            x = F.dropout(x, lstm.dropout, lstm.training)
        weights = [getattr(lstm, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        x, h_last, c_last = StepwiseLSTM.apply(x, h[layer], c[layer], *weights)
        finals_h.append(h_last)
        finals_c.append(c_last)
    return x, (torch.stack(finals_h), torch.stack(finals_c))
