"""Training the two-timescale model (`lmdni.hierarchical`): each core on its own window and schedule, with synthetic
gradients at both cores' time boundaries and on the interface between them.

Schedules. The fast core's window is the trainer's (`trainer.unroll` characters); it is updated after every window.
The slow core's window is `model.slow_windows` fast windows; it is updated once per slow window, after a backward
through all of it: its truncated BPTT spans slow_windows × unroll characters while the fast core's spans unroll.

    fast windows   | w0 | w1 | w2 | w3 | w4 | ...         fast core: update after each
    slow windows   |  S0 (w0..w3)      |  S1 ...          slow core: update after w3, w7, ...
    messages        m m  m m  m m  m m                    fast -> slow at every tick (slow_every chars)

Inside one fast window the two cores share one graph: the window's backward gives the fast core the exact gradient
of the window's loss, through the slow core's ticks inside the window too. What the fast core cannot have when it is
updated is the gradient its messages get from the slow core's *later* use of them (the slow state they shape is
read in later windows). That is the interface's synthetic gradient: for each message, a head predicts
d(later loss)/d(message) from the message and the slow state that read it, and the window's backward injects it
(scaled by `model.interface_scale`). Without it (method=bptt, or scale 0) the interface is plainly truncated: the
gradient crosses between the networks only within the shared window.

The slow core's backward. Each fast window records what the slow core needs and nothing more: the messages it sent
(detached) and the gradient that each context the fast core read carried back (`.grad` of the read, in summed-loss
units). At the slow window's end the slow core is rerun from the slow window's start state over those messages
(a few LSTMCell steps, the same values as in the windows) and backpropagated once, seeded with those gradients and,
at its final state, with the slow head's SG (time-boundary DNI for the slow core, discounted by `dni.scale`). That
gives the slow core's exact gradient over its window, the bootstrapped target of the slow head (the gradient that
reached the slow window's start state), and, per fast window, the gradient its messages got from everything after
that window: the interface head's target. Units as in `lmdni.boundary`: SGs and targets are per-sequence summed
loss; each core's parameters get the gradient of its window's mean loss.

The fast core's time boundary is as for the LSTM core: its head predicts d(future loss)/d(fast state), injected at the
window's end (`dni.scale`), regressed onto the gradient that reached the window's start state.

DNI+Aux (method=dni_aux): each core also learns, from its output at its window's first step, to predict the SG its
window's end produces (`aux_weight`, added to the mean loss as for the LSTM core): the fast core's in every fast
window's backward, the slow core's at its window's end.
"""
from __future__ import annotations

import torch

from .boundary import Boundary
from .window import WindowResult, summed_loss


class TwoTimescaleWindow:
    reports_cosine = False  # the heads' agreement with their targets: scripts/hierarchical_fidelity.py

    def __init__(self, model, slow_windows: int, boundary: Boundary | None, interface_scale: float,
                 slow_scale: float | None = None):
        """`boundary` (None: plain truncation everywhere): the DNI step, `dni.scale` the fast core's time-boundary
        SG's weight; `slow_scale` the slow core's (None: `dni.scale`)."""
        self.model, self.slow_windows, self.boundary = model, slow_windows, boundary
        self.interface_scale = interface_scale
        self.scale = boundary.scale if boundary is not None else 0.0
        self.slow_scale = self.scale if slow_scale is None else slow_scale
        self.heads = model.synthetic_gradient if boundary is not None else None
        self.aux = getattr(model, "aux_synthetic_gradient", None) if self.heads is not None else None
        self.aux_weight = boundary.aux_weight if boundary is not None else 0.0
        self.slow_params = list(model.slow.parameters())
        # what a fast window's backward fills: the parameters its loss reaches but the slow core's (whose gradient is
        # its own backward's, at its window's end) and the heads' (regressed apart); the gradient on the start state
        # and on each context read is the slow core's and the fast head's signal
        skip = ("slow.", "synthetic_gradient.", "aux_synthetic_gradient.slow.")
        self.fast_params = [p for name, p in model.named_parameters() if not name.startswith(skip)]
        self.observe = None  # a probe's view of the heads' (prediction, target) pairs (`_regress`)
        self.learn_heads = True  # False: the targets are formed (and observed), the heads never regressed
        self._clear()

    def _clear(self) -> None:
        self.slow_start = None  # (B, 2S): the slow state at the slow window's start
        self.messages: list[list[torch.Tensor]] = []  # per fast window: its messages, detached
        self.reads: list[list[torch.Tensor]] = []  # per fast window: d(loss)/d(each context it read), summed units
        self.tokens = 0  # predictions made in the slow window

    # ------------------------------------------------------------------------------------------ a fast window
    def __call__(self, inputs, targets, mask, state, ends_pass: bool, warm: bool = True, step: int = 0):
        """One fast window: forward, backward, the fast head's regression, and at a slow window's end the slow
        core's backward. Fills the gradients the optimizer step then applies (the slow core's and the slow and
        interface heads' only at a slow window's end: None otherwise, so Adam leaves them alone). Returns a
        `WindowResult`: the next carried state, the window's summed loss, the heads' regression losses summed, the
        aux losses summed (None where there are no heads), all detached.
        `warm` False: the heads learn, nothing is injected (`dni.warmup_chars`)."""
        model, heads = self.model, self.heads
        fast_size = 2 * model.hidden_size
        start = state.detach().requires_grad_()  # the contexts read from the slow start need a graph
        if self.slow_start is None:
            self.slow_start = model.split(state)[1].detach().clone()
        logits, final, interface = model.unroll(inputs, start, record=True)
        loss_sum = summed_loss(logits, targets, mask)
        n = targets.numel()
        roots, seeds = [loss_sum / n], [torch.ones_like(loss_sum)]
        inject = heads is not None and warm and not ends_pass
        final_fast = final[:, :fast_size]
        if self.aux is not None or (inject and self.scale):  # the fast head's SG at the window's end
            with torch.no_grad():
                sg = heads["fast"](model.head_input(final_fast.detach()))
        aux = torch.zeros((), device=loss_sum.device)
        if self.aux is not None:
            aux = self.boundary.aux_loss(self.aux["fast"](model.first_fast_output(inputs[0], state)), sg)
            roots[0] = roots[0] + self.aux_weight * aux
        if inject and self.scale:
            roots.append(final_fast)
            seeds.append(self.boundary.inject(sg, ends_pass, scale=self.scale / n))  # scaled to the mean loss
        if inject and self.interface_scale and interface.messages:
            with torch.no_grad():
                predicted = heads["interface"](self._interface_input(interface.messages, interface.slow_before))
            roots.extend(interface.messages)
            seeds.extend((predicted * (self.interface_scale / n)).chunk(len(interface.messages)))
        torch.autograd.backward(roots, seeds, inputs=[start, *interface.contexts, *self.fast_params])
        self.messages.append([m.detach() for m in interface.messages])
        self.reads.append([context.grad * n for context in interface.contexts])
        self.tokens += n
        sg_loss = torch.zeros((), device=loss_sum.device)
        if heads is not None:
            target = start.grad[:, :fast_size] * n
            prediction = heads["fast"](model.head_input(start[:, :fast_size].detach()))
            sg_loss = sg_loss + self._regress("fast", prediction, target)
        if ends_pass or len(self.messages) == self.slow_windows:
            slow_sg_loss, slow_aux = self.close_slow_window(warm and not ends_pass)
            sg_loss, aux = sg_loss + slow_sg_loss, aux + slow_aux
        return WindowResult(final.detach(), loss_sum.detach(), sg_loss.detach() if heads is not None else None,
                            aux.detach() if self.aux is not None else None)

    # ------------------------------------------------------------------------------------------ a slow window
    def close_slow_window(self, inject: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The slow core's backward over its window (see the module's docstring); `inject` False: no SG at its
        end (the stream's pass ends there, or warm-up). Returns the slow and interface heads' losses and the slow
        core's aux loss."""
        model, heads = self.model, self.heads
        start = self.slow_start.clone().requires_grad_()
        messages = [m.clone().requires_grad_() for window in self.messages for m in window]
        reads = [r for window in self.reads for r in window]
        contexts, states = model.slow_steps(start, messages)
        roots, seeds = contexts[:len(reads)], reads  # context i: read by the segments after tick i
        final = torch.cat(states[-1], 1) if states else None
        end_sg = end = None  # the slow head's SG at the window's end: injected scaled, DNI+Aux's target as it is
        if final is not None and (self.aux is not None or (heads is not None and inject and self.slow_scale)):
            with torch.no_grad():
                end = heads["slow"](model.head_input(final.detach()))
        if heads is not None and inject and self.slow_scale and final is not None:
            end_sg = self.boundary.inject(end, False, scale=self.slow_scale)
            roots, seeds = roots + [final], seeds + [end_sg]
        inputs = [start, *self.slow_params]
        grads = torch.autograd.grad(roots, inputs, seeds, retain_graph=heads is not None, allow_unused=True)
        for p, g in zip(self.slow_params, grads[1:]):
            p.grad = None if g is None else g / self.tokens  # the mean over the slow window's predictions
        sg_loss = torch.zeros((), device=start.device)
        if heads is not None:
            sg_loss = sg_loss + self._regress("slow", heads["slow"](model.head_input(start.detach())), grads[0])
            if messages and (self.interface_scale or self.observe is not None):  # at scale 0 it is unused
                targets = self._later_gradients(messages, contexts, final, reads, end_sg)
                before = [start.detach()] + [torch.cat(s, 1).detach() for s in states[:-1]]
                prediction = heads["interface"](self._interface_input(messages, before))
                sg_loss = sg_loss + self._regress("interface", prediction, torch.cat(targets),
                                                  learn=bool(self.interface_scale))
        aux = torch.zeros((), device=start.device)
        if self.aux is not None and messages:  # accumulates onto the slow core's gradient set above
            aux = self.boundary.aux_loss(self.aux["slow"](model.first_slow_output(messages[0], start)), end)
            (self.aux_weight * aux).backward()
        self._clear()
        return sg_loss, aux.detach()

    def _later_gradients(self, messages, contexts, final, reads, end_sg) -> list[torch.Tensor]:
        """Per fast window, the gradient its messages got from every later window (and the slow SG at the end):
        what the fast core did not see when it was updated, the interface head's target. Fast windows hold whole
        slow ticks (unroll % slow_every == 0), so tick i's context is first read in the window after the tick."""
        targets, first = [], 0
        for window in self.messages:
            last = first + len(window)  # this window's ticks: messages[first:last]
            roots, seeds = list(contexts[last:len(reads)]), list(reads[last:])
            if end_sg is not None:
                roots, seeds = roots + [final], seeds + [end_sg]
            if window and roots:
                got = torch.autograd.grad(roots, messages[first:last], seeds, retain_graph=True, allow_unused=True)
                targets.extend(torch.zeros_like(m) if g is None else g for m, g in zip(messages[first:last], got))
            else:
                targets.extend(torch.zeros_like(m) for m in messages[first:last])
            first = last
        return targets

    def _interface_input(self, messages, slow_before) -> torch.Tensor:
        return torch.cat([torch.cat(messages), self.model.head_input(torch.cat(slow_before))], 1).detach()

    def _regress(self, name: str, prediction, target, learn: bool = True) -> torch.Tensor:
        """The autograd regression (`lmdni.boundary`'s reference): the heads' predictions carry their graphs.
        `observe(name, prediction, target)`, when set, sees every pair (scripts/hierarchical_fidelity.py); with
        `learn_heads` False (a probe, or a test's oracle heads) or `learn` False (the interface head at
        `interface_scale` 0, whose pairs are formed for an observer only) that is all that happens."""
        if self.observe is not None:
            self.observe(name, prediction.detach(), target.detach())
        if not (self.learn_heads and learn):
            return torch.zeros((), device=prediction.device)
        return self.boundary.regress(None, None, prediction, target)

    # ------------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """The open slow window (a checkpoint can fall inside one; resuming continues it exactly)."""
        return {"slow_start": self.slow_start, "messages": self.messages, "reads": self.reads, "tokens": self.tokens}

    def load_state_dict(self, payload: dict, device) -> None:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        self.slow_start = move(payload["slow_start"])
        self.messages = [[move(m) for m in window] for window in payload["messages"]]
        self.reads = [[move(r) for r in window] for window in payload["reads"]]
        self.tokens = int(payload["tokens"])


def two_timescale_window(cfg, model, boundary: Boundary | None) -> TwoTimescaleWindow:
    return TwoTimescaleWindow(model, int(cfg.model.slow_windows), boundary, float(cfg.model.interface_scale),
                              cfg.model.get("slow_scale"))
