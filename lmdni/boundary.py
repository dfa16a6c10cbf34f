"""The truncation boundary, in one place: injecting the synthetic gradient, forming its bootstrapped target, and
regressing the head onto it (and DNI+Aux's loss).

Units. The model's loss is the mean over the window's B×T predictions (so the learning rate and clipping mean the
same at any batch and unroll). The synthetic gradient is kept in *per-sequence, summed-loss* units: it predicts
d(sum of all future losses of this column)/d(state). Those units do not shrink as batch or unroll grow, so one SG
learning rate suits every configuration. Converting is one factor, n = B×T:

    objective of a window  = (window loss sum + scale · <SG(final state), final state>) / n
    injected gradient      = scale · SG(final state) / n          (seeded for the final state in the same backward)
    bootstrapped target    = n · d(objective)/d(start state)
                           = d(window loss sum)/d(start) + scale · (∂final/∂start)ᵀ SG(final)

`scale` < 1 is a discount on the future: the SG then learns the discounted sum of future gradients, which keeps its
own bootstrapping stable.

The regression. loss = weight · mean((SG(start) − target)²) for the head's prediction SG(start) = x·Wᵀ + b, x the
head's input for the start state (`LSTMCore.head_input`). Three implementations of the same loss and gradients:

* reference: plain autograd through the head (`regression_loss_reference`); MLP heads train with it;
* closed form, a linear head (full or low rank) in torch: with e = SG(start) − target and n its element count,
  dL/dW = (2·weight/n)·eᵀx and dL/db = (2·weight/n)·Σe — one product, no graph to record or walk (the CPU path,
  CUDA without Triton, and low-rank heads everywhere);
* fused, a linear head in Triton: the same in one kernel (`lmdni.kernels`).

`dni.ridge_decay` > 0 fits a linear head another way: not stepped by Adam but solved, each window, by ridge
regression on all the targets it has seen, forgotten at that decay per window (`regression_ridge`).

`dni.calibration_decay` > 0 injects the SG times a gain in [0, 1]: how much of its targets the head's predictions
have explained lately (`update_calibration`). Where the future gradient is noise to the head, the gain falls and
the SG's noise stays out of the core; where the head predicts it, the gain stays near 1.

`dni.fused`: "auto" uses Triton on CUDA tensors when Triton is importable, "on" demands it, "off" never uses it.
Tests hold the closed form and the kernel to the reference.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .distributed import sum_over_ranks_
from .errors import ConfigError


def backward_window(loss_sum: torch.Tensor, n_tokens: int, final_state: torch.Tensor,
                    injected: torch.Tensor | None, extra_loss: torch.Tensor | None = None) -> None:
    """One backward pass seeding the window's mean loss (plus `extra_loss`, e.g. DNI+Aux's) and, for the final
    state, the injected future gradient (already scaled, in summed units). With `injected=None` and no extra loss
    this is exactly truncated BPTT."""
    loss = loss_sum / n_tokens
    if extra_loss is not None:
        loss = loss + extra_loss
    if injected is None:
        loss.backward()
    else:
        torch.autograd.backward([loss, final_state], [torch.ones_like(loss), injected.detach() / n_tokens])


def bootstrapped_target(start_state: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """The gradient that reached the window's start state, in summed units. Detached: it is a regression target,
    and its own dependence on the head (through the injected SG) must not be differentiated, as in TD learning."""
    if start_state.grad is None:
        return torch.zeros_like(start_state)
    return start_state.grad.detach() * n_tokens


def pull_back(final_state: torch.Tensor, start_state: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """(∂final/∂start)ᵀ·gradient, in summed units, keeping the window's graph for its backward: the bootstrapped
    target's part for an SG other than the injected one (`dni.head_average_use`: the two SGs' difference). One more
    backward through the recurrence, so it costs about what the window's own backward does through it."""
    return torch.autograd.grad(final_state, start_state, gradient.detach(), retain_graph=True)[0]


def injected_gradient(synthetic_gradient: torch.Tensor | None, scale: float, ends_pass: bool,
                      ablation: str = "none"):
    """Where the stream restarts there is no future, so nothing is injected; scale 0 injects nothing at all.

    `ablation="shuffle"` is a control experiment, not a training mode: each column receives the SG predicted for
    another column's state (same magnitudes, wrong state). If it helps as much as DNI, the gain did not come from
    the SG's knowledge of the state."""
    if synthetic_gradient is None or ends_pass or scale == 0:
        return None
    injected = scale * synthetic_gradient.detach()
    if ablation == "shuffle":
        injected = injected[torch.randperm(injected.shape[0], device=injected.device)]
    elif ablation != "none":
        raise ValueError(f"dni.ablation must be none or shuffle, got {ablation!r}")
    return injected


def aux_loss(prediction: torch.Tensor, synthetic_gradient: torch.Tensor) -> torch.Tensor:
    """DNI+Aux: squared error of the start-of-window prediction of the SG the window's end produces, summed over the
    state and averaged over the batch (per-sequence units, like the SG itself). The SG is the target: detached."""
    return (prediction - synthetic_gradient.detach()).pow(2).sum(1).mean()


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def resolve_fused(fused: str, device: torch.device, head, precision: str = "fp32") -> bool:
    """Whether the head's regression runs in the Triton kernel. `auto`: on CUDA with bf16 inputs only
    (`trainer.precision=bf16`): on an H200 it beat the torch path at 7 of 9 sizes with bf16 inputs (median 1.42x),
    at 5 of 9 with fp32 (median 1.04x, down to 0.50x at hidden 1024, batch 256; docs/results/h200-grid/
    bench_boundary.md). Never where Triton is missing."""
    fused = str(fused).lower()
    if fused in ("off", "false"):
        return False
    if fused in ("on", "true"):
        if not head.is_linear:
            raise ConfigError("dni.fused=on supports the full-rank linear SG head only (dni.head_hidden_size=0, "
                              "dni.head_rank=0)")
        if not triton_available():
            raise ConfigError("dni.fused=on needs Triton: pip install 'lmdni[triton]' (or use dni.fused=auto/off)")
        if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ConfigError("dni.fused=on needs a CUDA device (or TRITON_INTERPRET=1 to run the kernel in "
                              "Triton's interpreter on CPU, for testing)")
        return True
    if fused == "auto":  # Triton is imported only where it could be used
        return device.type == "cuda" and precision == "bf16" and head.is_linear and triton_available()
    raise ConfigError(f"dni.fused must be auto, on or off, got {fused!r}")


def regression_loss_reference(prediction: torch.Tensor, target: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    return weight * F.mse_loss(prediction, target.detach())


def regression_closed_form(prediction, target, head_input, head, loss_weight: float = 1.0) -> torch.Tensor:
    """Sets a linear head's gradients and returns the loss (no graph); the scale is applied in place, so the only
    new memory is the gradients themselves. Low rank, prediction = (x·Dᵀ)·Wᵀ + b: dW = eᵀ(x·Dᵀ) and
    dD = (e·W)ᵀx, with e the scaled error."""
    error = prediction.detach() - target.detach()
    scale = 2.0 * loss_weight / error.numel()
    head_input = head_input.detach()
    weight, bias = head.output.weight, head.output.bias
    if head.down is None:
        weight.grad = torch.mm(error.t(), head_input).mul_(scale)
    else:
        with torch.no_grad():
            reduced = head.down(head_input)
        weight.grad = torch.mm(error.t(), reduced).mul_(scale)
        head.down.weight.grad = torch.mm(torch.mm(error, weight.detach()).t(), head_input).mul_(scale)
    bias.grad = error.sum(0).mul_(scale)
    return loss_weight * error.pow(2).mean()


RIDGE_PENALTY = 0.01  # times the mean of the inputs' summed squares: a small ridge, enough to keep the solve sound
# `dni.ridge_select`'s candidates, in the same units: each window injects the one whose solutions have predicted
# the windows they had not seen best lately. Largest first: before any evidence (ties) the most shrunk is used
RIDGE_PENALTIES = (100.0, 10.0, 1.0, 0.1, 0.01)


def _ridge_solution(head, penalty_scale: float) -> torch.Tensor:
    """The ridge solution of the head's sums, (inputs + 1, outputs); on the device, without reading the scale back
    to the host."""
    penalty = (head.ridge_gram.diagonal()[:-1].mean() * penalty_scale + 1e-12).expand(len(head.ridge_gram)).clone()
    penalty[-1] = 1e-12  # the intercept is not shrunk
    factor = torch.linalg.cholesky(head.ridge_gram + torch.diag(penalty))
    return torch.cholesky_solve(head.ridge_cross, factor)


@torch.no_grad()
def regression_ridge(prediction, target, head_input, head) -> torch.Tensor:
    """A linear head refitted by ridge regression (`dni.ridge_decay`; `SyntheticGradientHead.keep_ridge`): the
    window's inputs (with an intercept column) and targets are added to the head's forgotten sums, and the head's
    weights (or, where the solution is kept beside the head, `ridge_weight` and `ridge_bias`) become the ridge
    solution of all it has seen, weighted decay^age. Adam's steps jitter around what the head has learned
    (docs/results/probe); the solution does not. Returns the prediction's loss before the refit. Data-parallel
    ranks add every rank's sums, so they all solve the same.

    With `dni.ridge_select` the penalty is chosen each window among `RIDGE_PENALTIES`: every candidate's last
    solution is scored on this window's targets before they join the sums (held out), the squared errors are
    forgotten at the same decay, and the candidate with the least is the one used. Where nothing is predictable
    the largest penalty wins and the solution shrinks to the targets' mean."""
    loss = (prediction.detach() - target).pow(2).mean()
    x = torch.cat([head_input.detach(), torch.ones_like(head_input[:, :1])], 1).double()
    if head.selects_penalty:
        errors = (x.float() @ head.ridge_solutions - target.float()).pow(2).sum((1, 2)).double()
        sum_over_ranks_(errors)
        head.ridge_scores.mul_(head.ridge_decay).add_(errors)
    gram, cross = x.T @ x, x.T @ target.double()
    sum_over_ranks_(gram, cross)
    head.ridge_gram.mul_(head.ridge_decay).add_(gram)
    head.ridge_cross.mul_(head.ridge_decay).add_(cross)
    if head.selects_penalty:
        head.ridge_solutions.copy_(torch.stack([_ridge_solution(head, scale) for scale in RIDGE_PENALTIES]))
        solution = head.ridge_solutions[head.ridge_scores.argmin()]
    else:
        solution = _ridge_solution(head, RIDGE_PENALTY)
    weight, bias = (head.ridge_weight, head.ridge_bias) if head.ridge_injects else (head.output.weight,
                                                                                    head.output.bias)
    weight.copy_(solution[:-1].T)
    bias.copy_(solution[-1])
    return loss


@torch.no_grad()
def update_calibration(head, prediction, target) -> None:
    """Adds a window to the calibrated head's sums (`SyntheticGradientHead.keep_calibration`). `prediction` is the
    head's SG for the start state made before the head learned from `target`, so the sums score held-out
    predictions, and their ratio (`head.gain`) is the least-squares scalar that best maps them onto their targets:
    about 1 for a head that predicts its target, about 0 for one whose output is noise around it.
    Data-parallel ranks add every rank's sums, so they all inject with the same gain."""
    prediction, target = prediction.detach().double(), target.detach().double()
    sums = torch.stack([(prediction * target).sum(), prediction.pow(2).sum()])
    sum_over_ranks_(sums)
    head.calibration_sums.mul_(head.calibration_decay).add_(sums)


def regress_synthetic_gradient(head, start: torch.Tensor | None, prediction: torch.Tensor, target: torch.Tensor,
                               weight: float = 1.0, fused: bool = False) -> torch.Tensor:
    """Fills the head's gradients for the regression of `prediction` (the head's SG for the start state) onto
    `target`, and returns the loss, detached. `start` is the head's input for the start state, given for a linear
    head (closed form or fused kernel); None for an MLP head, whose prediction carries its graph (reference)."""
    if start is not None and getattr(head, "fits_ridge", False):
        if not head.ridge_injects:
            return regression_ridge(prediction, target, start, head)
        regression_ridge(prediction, target, start, head)  # the solution beside the head; Adam still trains it
    if start is None:
        loss = regression_loss_reference(prediction, target, weight)
    elif not fused:
        return regression_closed_form(prediction, target, start, head, weight)
    else:
        from .kernels import fused_regression_loss

        loss = fused_regression_loss(prediction.detach(), target.detach(), start.detach(), head.output.weight,
                                     head.output.bias, weight)
    loss.backward()
    return loss.detach()


class Boundary:
    """The DNI step at a truncation boundary, for every window procedure: what is injected at the window's end,
    the bootstrapped target at its start, the head's regression onto it, and DNI+Aux's loss. Built once per run
    from `dni.*` (`from_config`)."""

    def __init__(self, scale: float, ablation: str = "none", aux_weight: float = 0.0, fused: bool = False):
        self.scale, self.ablation, self.aux_weight, self.fused = float(scale), str(ablation), float(aux_weight), fused

    @classmethod
    def from_config(cls, cfg, device: torch.device, head) -> "Boundary":
        """`head`: the SG head the fused kernel would serve (None: the kernel is never used)."""
        fused = resolve_fused(cfg.dni.fused, device, head, cfg.trainer.precision) if head is not None else False
        return cls(cfg.dni.scale, cfg.dni.ablation, cfg.dni.aux_weight, fused)

    def inject(self, synthetic_gradient, ends_pass: bool, warm: bool = True, scale: float | None = None):
        """The gradient injected at the window's end (`injected_gradient`); `warm` False (`dni.warmup_chars`):
        nothing. `scale`: another weight than `dni.scale` (the two-timescale slow core's)."""
        scale = self.scale if scale is None else scale
        return injected_gradient(synthetic_gradient, scale if warm else 0.0, ends_pass, self.ablation)

    backward = staticmethod(backward_window)
    target = staticmethod(bootstrapped_target)
    aux_loss = staticmethod(aux_loss)
    calibrate = staticmethod(update_calibration)
    pull_back = staticmethod(pull_back)

    def regress(self, head, head_input, prediction, target) -> torch.Tensor:
        """The head's regression (`regress_synthetic_gradient`): `head_input` None for the autograd reference."""
        return regress_synthetic_gradient(head, head_input, prediction, target, 1.0, self.fused)
