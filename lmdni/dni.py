"""The truncation boundary: injecting synthetic gradients and forming their bootstrapped targets.

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
"""
from __future__ import annotations

import torch


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
