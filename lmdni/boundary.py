"""The synthetic-gradient regression at a truncation boundary: one function whichever implementation runs.

loss = weight · mean((SG(start) − target)²) for the head's prediction SG(start) = x·Wᵀ + b, x the head's input
for the start state (`LSTMCore.head_input`). For a linear head
the fused path computes the loss and the head's weight and bias gradients in a single Triton kernel (see
`lmdni.kernels`); the reference path is plain autograd. `fused`: "auto" uses Triton on CUDA tensors when Triton is
importable, "on" demands it, "off" never uses it.
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
        if not triton_available():
            raise ConfigError("dni.fused=on needs Triton: pip install 'lmdni[triton]' (or use dni.fused=auto/off)")
        if not head.is_linear:
            raise ConfigError("dni.fused=on supports the linear SG head only (dni.head_hidden_size=0)")
        if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ConfigError("dni.fused=on needs a CUDA device (or TRITON_INTERPRET=1 to run the kernel in "
                              "Triton's interpreter on CPU, for testing)")
        return True
    if fused == "auto":  # Triton is imported only where it could be used
        return device.type == "cuda" and head.is_linear and triton_available()
    raise ConfigError(f"dni.fused must be auto, on or off, got {fused!r}")


def regression_loss_reference(prediction: torch.Tensor, target: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    return weight * F.mse_loss(prediction, target.detach())


def synthetic_gradient_loss(head, start: torch.Tensor | None, prediction: torch.Tensor, target: torch.Tensor,
                            weight: float = 1.0, fused: bool = False) -> torch.Tensor:
    """`prediction` is head(start) from the forward pass (graph to the head's parameters); `start` is the head's
    input, needed by the fused path only. Backward of the returned scalar fills the head's gradients."""
    if not fused:
        return regression_loss_reference(prediction, target, weight)
    from .kernels import fused_regression_loss

    return fused_regression_loss(prediction.detach(), target.detach(), start.detach(), head.output.weight,
                                 head.output.bias, weight)
