"""A window's procedure: one call runs a window (forward, the boundary, the backward, the head's regression) and
returns one `WindowResult`; the trainer then steps the optimizer. One procedure per model, chosen in
`lmdni.run.build_trainer`:

* `TruncatedWindow` (here): the LSTM core, `method=bptt`, `dni`, `dni_aux`;
* `TwoTimescaleWindow` (`lmdni.hierarchical_training`): the two-timescale model.

Both use `lmdni.boundary` for the DNI step. One LSTM window, DNI:

    start  = carried state, detached, requiring grad (a leaf: the gradient that reaches it is the SG's target)
    out    = core(x, start)                        logits, final state, SG(final), SG(start): one forward call
    backward(window loss  +  scale · SG(final) seeded at the final state)     (times its gain: dni.calibration_decay)
    target = gradient at start                     bootstrapped: true in-window gradient + the SG pulled back
             (dni.head_average_use injection|target: + the other SG's difference, pulled back on its own)
    head  ← regression of SG(start) onto target    its own Adam group, its own learning rate

The forward is the model's unroll and a summed cross-entropy, optionally under bf16 autocast or torch.compile
(`lmdni.speed` has what those settings round and why).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from .boundary import Boundary
from .model import CoreOutput
from .speed import check_precision

COSINE_EVERY = 10  # windows between samples of the SG's cosine to its target: a diagnostic, kept off the hot path


class WindowResult(NamedTuple):
    state: torch.Tensor | None  # the state carried to the next window, detached (None: the window was skipped)
    loss_sum: torch.Tensor | None  # the window's summed loss, detached
    sg_loss: torch.Tensor | None = None  # the heads' regression losses, summed (None: no heads)
    aux_loss: torch.Tensor | None = None  # DNI+Aux's loss(es), unweighted
    sg_cosine: torch.Tensor | None = None  # the start SG's cosine to its target, on sampled windows


def summed_loss(logits, targets, mask):
    """The window's summed cross-entropy; `mask` (copy tasks) marks the targets that count, None counts all."""
    logits = logits.reshape(-1, logits.shape[-1])
    if mask is None:
        return F.cross_entropy(logits, targets.reshape(-1), reduction="sum")
    return (F.cross_entropy(logits, targets.reshape(-1), reduction="none") * mask.reshape(-1)).sum()


def _to_fp32(out):
    return out._replace(**{name: t.float() for name, t in out._asdict().items() if t is not None})


def window_forward(model, device: torch.device, precision: str = "fp32", compile: bool = False):
    """A function (inputs, targets, mask, start, with_synthetic_gradient) -> (CoreOutput, summed loss); in fp32
    without compile exactly the model's forward and the cross-entropy."""
    check_precision(precision, device)
    bf16 = precision == "bf16"
    # Under compile the SG heads stay eager: the regression differentiates the start state's prediction in a
    # second backward, after the window's backward has freed whatever a compiled graph saved; a tensor that merely
    # passes through a compiled region becomes that region's output and would hit the freed graph.
    unroll = torch.compile(model.unroll) if compile else model.unroll
    loss = torch.compile(summed_loss) if compile else summed_loss

    def forward(inputs, targets, mask, start, with_synthetic_gradient: bool):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            unrolled = unroll(inputs, start)
            if with_synthetic_gradient and model.synthetic_gradient is not None:
                out = model.predict_synthetic_gradients(start, unrolled)
            else:
                out = CoreOutput(unrolled.logits, unrolled.state, None, None)
        if bf16:  # in fp32 there is nothing to cast: keep the hot path free of it
            out = _to_fp32(out)
        return out, loss(out.logits, targets, mask)

    return forward


class TruncatedWindow:
    """The LSTM core's window: truncated BPTT, plus the DNI boundary when the model has an SG head."""

    reports_cosine = True  # metrics.jsonl's sg_cosine

    def __init__(self, model, boundary: Boundary | None, device: torch.device, precision: str = "fp32",
                 compile: bool = False, skip: Callable[[torch.Tensor], bool] | None = None):
        """`boundary`: None trains plain TBPTT. `skip(loss_sum)`: True drops the window before its backward
        (`trainer.on_nonfinite=skip`; a collective check in data-parallel runs)."""
        self.model, self.boundary, self.skip = model, boundary, skip
        self.forward = window_forward(model, device, precision, compile)

    def __call__(self, inputs, targets, mask, state, ends_pass: bool, warm: bool = True, step: int = 0):
        dni = self.boundary is not None
        if dni and self.model.synthetic_gradient.keeps_average:  # the weights after the last step, averaged in
            self.model.synthetic_gradient.update_average()
        start = state.detach().requires_grad_(dni)
        out, loss_sum = self.forward(inputs, targets, mask, start, dni)
        if self.skip is not None and self.skip(loss_sum):
            return WindowResult(None, None)
        n_tokens = targets.numel()
        if not dni:
            (loss_sum / n_tokens).backward()
            return WindowResult(out.state.detach(), loss_sum.detach())
        boundary, head = self.boundary, self.model.synthetic_gradient
        # warm-up: the head learns its (then purely in-window) target and nothing is injected, so the core trains as
        # TBPTT does (DNI+Aux: plus its aux loss)
        final_sg = out.final_synthetic_gradient
        # a calibrated head injects its SG times its gain; the aux head still predicts the SG itself, whose
        # variation is the auxiliary task's signal even where the gain is near 0
        injected = boundary.inject(final_sg * head.gain if head.calibrates else final_sg, ends_pass, warm)
        own_sg, difference = final_sg, None
        if head.splits_average or head.ridge_injects:  # the aux head predicts the head's own SG, not the injected
            target_sg, own_sg = self._other_synthetic_gradient(out.final_head_input, final_sg)
            if head.splits_average:  # the target is formed with the SG not injected: pull back the difference too
                difference = boundary.inject(target_sg - final_sg, ends_pass, warm)
        aux = extra = None
        if out.aux_prediction is not None:
            aux = boundary.aux_loss(out.aux_prediction, own_sg)
            extra = boundary.aux_weight * aux
        pulled = None if difference is None else boundary.pull_back(out.state, start, difference)
        boundary.backward(loss_sum, n_tokens, out.state, injected, extra)
        target = boundary.target(start, n_tokens)
        if pulled is not None:
            target = target + pulled
        if head.calibrates:  # scored before the regression: the start's prediction has not seen this target
            boundary.calibrate(head, out.start_synthetic_gradient, target)
        sg_loss = boundary.regress(head, out.start_head_input, out.start_synthetic_gradient, target)
        cosine = None
        if step % COSINE_EVERY == 0:
            cosine = F.cosine_similarity(out.start_synthetic_gradient.detach().flatten(), target.flatten(), dim=0,
                                         eps=1e-12)
        return WindowResult(out.state.detach(), loss_sum.detach(), sg_loss.detach(),
                            None if aux is None else aux.detach(), cosine)

    @torch.no_grad()
    def _other_synthetic_gradient(self, features, injected_sg):
        """For a head whose average is injected or bootstraps, not both, or whose ridge solution is injected, given
        what it read for the final state: (the final state's SG the target is formed with, the head's own SG there,
        which the aux head predicts)."""
        head = self.model.synthetic_gradient
        if head.ridge_injects:
            return injected_sg, head(features)
        if head.average_use == "injection":
            own = head(features)
            return own, own
        return head.averaged(features), injected_sg

    def state_dict(self) -> None:
        return None  # nothing lives across windows but the carried state, which the trainer keeps

    def load_state_dict(self, payload, device) -> None:
        pass
