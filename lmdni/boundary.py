"""The synthetic-gradient regression at a truncation boundary: one function whichever implementation runs.

loss = weight · mean((SG(start) − target)²) for the head's prediction SG(start) = x·Wᵀ + b, x the head's input
for the start state (`LSTMCore.head_input`). Three implementations of the same loss and gradients:

* reference: plain autograd through the head (`regression_loss_reference`); MLP heads train with it;
* closed form, a linear head (full or low rank) in torch: with e = SG(start) − target and n its element count,
  dL/dW = (2·weight/n)·eᵀx and dL/db = (2·weight/n)·Σe — one product, no graph to record or walk (the CPU path,
  CUDA without Triton, and low-rank heads everywhere);
* fused, a linear head in Triton: the same in one kernel (`lmdni.kernels`).

`dni.fused`: "auto" uses Triton on CUDA tensors when Triton is importable, "on" demands it, "off" never uses it.
Tests hold the closed form and the kernel to the reference.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .errors import ConfigError


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def resolve_fused(fused: str, device: torch.device, head) -> bool:
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
        return device.type == "cuda" and head.is_linear and triton_available()
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


def regress_synthetic_gradient(head, start: torch.Tensor | None, prediction: torch.Tensor, target: torch.Tensor,
                               weight: float = 1.0, fused: bool = False) -> torch.Tensor:
    """Fills the head's gradients for the regression of `prediction` (the head's SG for the start state) onto
    `target`, and returns the loss, detached. `start` is the head's input for the start state, given for a linear
    head (closed form or fused kernel); None for an MLP head, whose prediction carries its graph (reference)."""
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
