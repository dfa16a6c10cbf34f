"""A two-window target for the SG head (`dni.target_windows=2`), the forward view of BP(λ) at λ = 1 cut at two
windows: a candidate that the suite measures.

The default target for boundary k is one window's return, bootstrapped from the next boundary's SG:

    t_k = g_k + scale · J_kᵀ SG(h_{k+1})          g_k: window k's loss gradient at h_k, J_k = ∂h_{k+1}/∂h_k

The two-window target replaces that SG by what window k+1 then found there, its own one-step target:

    T_k = t_k + scale · J_kᵀ (t_{k+1} − SG(h_{k+1}))      the TD error at h_{k+1}, pulled back through window k

so the head regresses boundary k one window late. J_kᵀ is needed after Adam has stepped the weights window k ran
with (its graph's saved weights are changed in place), so window k is rerun from its start state with the current
weights (the LSTM's work of one more window, forward and backward). The core's update is untouched: it is DNI's.
"""
from __future__ import annotations

import torch


class TwoWindowTarget:
    def __init__(self, model, scale: float):
        self.model, self.scale = model, scale
        self.pending = None  # the previous window: inputs, start state, head input, one-step target, SG injected

    def push(self, inputs, start, head_input, target, injected_sg, starts_pass: bool):
        """Takes this window's one-step target; returns (head input, two-window target) of the previous boundary,
        or None for a run's first window. `injected_sg`: the SG (unscaled) injected at this window's end, None if
        nothing was (the pass's end: no future)."""
        ready = None
        if self.pending is not None:
            inputs_k, start_k, head_input_k, target_k, sg_k = self.pending
            if sg_k is not None and not starts_pass:
                start_k = start_k.requires_grad_(True)
                with torch.enable_grad():
                    final = self.model.unroll(inputs_k, start_k).state
                    correction, = torch.autograd.grad(final, start_k, self.scale * (target - sg_k))
                target_k = target_k + correction
            ready = (head_input_k, target_k)
        self.pending = (inputs, start.detach().clone(), head_input, target, injected_sg)
        return ready
