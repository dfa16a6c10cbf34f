"""The synthetic-gradient head: a map from a recurrent state to the predicted gradient of all future loss with
respect to it, and the ways it can be kept (an average of its weights, a ridge solve, a calibrated gain).
Shared by the LSTM core (`lmdni.model`) and the two-timescale model (`lmdni.hierarchical`).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from .boundary import RIDGE_PENALTIES
from .config import AVERAGE_USES, RIDGE_USES


def zero_linear(in_features: int, out_features: int) -> nn.Linear:
    """A linear layer whose weight and bias start at exactly zero: a prediction head that predicts nothing until it
    has learned (every SG and aux head's output layer)."""
    layer = nn.Linear(in_features, out_features)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class SyntheticGradientHead(nn.Module):
    """Maps a recurrent state to the predicted gradient of all future loss with respect to it.

    Linear by default (as in the paper); `rank > 0` gives a low-rank linear map, state -> rank -> state (`down`,
    no bias, then `output`), at a fraction of the full head's arithmetic; `hidden_size > 0` gives an MLP. The output
    layer starts at exactly zero, weight and bias, so a fresh head injects nothing and the first updates are plain
    truncated BPTT (a low-rank head's `down` starts random: with `output` at zero, only `output` learns at first).
    """

    def __init__(self, state_size: int, hidden_size: int = 0, num_layers: int = 1, rank: int = 0):
        super().__init__()
        if rank > 0 and hidden_size > 0:
            raise ValueError("a synthetic-gradient head is low-rank (rank > 0) or an MLP (hidden_size > 0), not both")
        layers: list[nn.Module] = []
        width = state_size
        if hidden_size > 0:
            for _ in range(num_layers):
                layers += [nn.Linear(width, hidden_size), nn.ReLU()]
                width = hidden_size
        self.down = nn.Linear(state_size, rank, bias=False) if rank > 0 else None
        self.output = zero_linear(rank or width, state_size)
        self.hidden = nn.Sequential(*layers)

    def keep_average(self, decay: float, use: str = "both") -> None:
        """Keep an exponential moving average of the head's weights (`decay` per window, in buffers: in the state
        dict, out of the optimizer), for `averaged`. The run's head is trained on a noisy target with Adam, so its
        weights jitter around what it has learned; their average is what it has learned (docs/results/probe).
        `use`: where the average stands in for the head (`AVERAGE_USES`)."""
        if use not in AVERAGE_USES:
            raise ValueError(f"the average's use must be one of {', '.join(AVERAGE_USES)}, got {use!r}")
        self.average_decay, self.average_use = float(decay), use
        for name, parameter in self.named_parameters():
            self.register_buffer(self._average_of(name), parameter.detach().clone())

    def keep_ridge(self, decay: float, use: str = "head", select: bool = False) -> None:
        """Fit the head by ridge regression (`lmdni.boundary.regression_ridge`): keep the exponentially forgotten
        (`decay` per window) sums of its inputs' outer products and of inputs times targets, in float64 buffers
        (in the state dict, so a resumed run refits from the same sums). `use` (`RIDGE_USES`): "head", the solution
        is the head (not stepped by Adam); "injection", the solution is kept beside the head, in buffers, and is
        what the window injects and bootstraps from, while Adam trains the head for the aux head to predict.
        `select`: choose the penalty each window by held-out error (`lmdni.boundary.RIDGE_PENALTIES`): keep every
        candidate's solution and its forgotten sum of held-out squared errors, in buffers."""
        if not self.is_linear:
            raise ValueError("a ridge-fitted SG head is full-rank linear (no hidden layers, no rank)")
        if use not in RIDGE_USES:
            raise ValueError(f"the ridge solution's use must be one of {', '.join(RIDGE_USES)}, got {use!r}")
        self.ridge_decay, self.ridge_use = float(decay), use
        width, out = self.output.in_features + 1, self.output.out_features  # + 1: the intercept
        self.register_buffer("ridge_gram", torch.zeros(width, width, dtype=torch.float64))
        self.register_buffer("ridge_cross", torch.zeros(width, out, dtype=torch.float64))
        self.ridge_select = bool(select)
        if select:
            self.register_buffer("ridge_solutions", torch.zeros(len(RIDGE_PENALTIES), width, out))
            self.register_buffer("ridge_scores", torch.zeros(len(RIDGE_PENALTIES), dtype=torch.float64))
        if use == "injection":  # zero, as the head starts: step 0 is plain TBPTT
            self.register_buffer("ridge_weight", torch.zeros_like(self.output.weight))
            self.register_buffer("ridge_bias", torch.zeros_like(self.output.bias))

    def keep_calibration(self, decay: float) -> None:
        """Inject the SG times its `gain` (`lmdni.boundary.update_calibration`): keep, in a float64 buffer, the
        sums (forgotten at `decay` per window) of <prediction, target> and <prediction, prediction> over the start
        state's predictions, each made before the head learned from that window's target."""
        self.calibration_decay = float(decay)
        self.register_buffer("calibration_sums", torch.zeros(2, dtype=torch.float64))

    @property
    def calibrates(self) -> bool:
        return getattr(self, "calibration_decay", 0.0) > 0

    @property
    def gain(self) -> torch.Tensor:
        """The least-squares coefficient of the targets on the predictions, clipped to [0, 1] (0 before any)."""
        product, square = self.calibration_sums
        return (product / square.clamp_min(1e-300)).clamp(0.0, 1.0).float()

    @property
    def fits_ridge(self) -> bool:
        return getattr(self, "ridge_decay", 0.0) > 0

    @property
    def selects_penalty(self) -> bool:
        return self.fits_ridge and self.ridge_select

    @property
    def ridge_injects(self) -> bool:
        """The ridge solution is kept beside the Adam-trained head and injected (`keep_ridge`'s "injection")."""
        return self.fits_ridge and self.ridge_use == "injection"

    def injected(self, state: torch.Tensor) -> torch.Tensor:
        """The SG the window injects: the average's, the ridge solution's, or the head's own."""
        if self.ridge_injects:
            return nn.functional.linear(state, self.ridge_weight, self.ridge_bias)
        return self.averaged(state) if self.injects_average else self(state)

    @staticmethod
    def _average_of(name: str) -> str:
        return "average_" + name.replace(".", "_")

    @property
    def keeps_average(self) -> bool:
        return getattr(self, "average_decay", 0.0) > 0

    @property
    def injects_average(self) -> bool:
        """The window's end injects the average's SG (else the head's own)."""
        return self.keeps_average and self.average_use in ("both", "injection")

    @property
    def splits_average(self) -> bool:
        """The injected SG and the one the bootstrapped target is formed with differ (one the head's, one the
        average's), so the window pulls their difference back through itself (`lmdni.boundary.pull_back`)."""
        return self.keeps_average and self.average_use != "both"

    @torch.no_grad()
    def update_average(self) -> None:
        for name, parameter in self.named_parameters():
            getattr(self, self._average_of(name)).lerp_(parameter, 1.0 - self.average_decay)

    def averaged(self, state: torch.Tensor) -> torch.Tensor:
        """The prediction of the averaged weights (the head itself when it keeps no average)."""
        if not self.keeps_average:
            return self(state)
        weights = {name: getattr(self, self._average_of(name)) for name, _ in self.named_parameters()}
        return functional_call(self, weights, (state,))

    @property
    def is_linear(self) -> bool:
        """A full-rank linear map (what the fused kernel computes)."""
        return len(self.hidden) == 0 and self.down is None

    @property
    def closed_form(self) -> bool:
        """Linear, full or low rank: its regression's gradients have a closed form (`lmdni.boundary`)."""
        return len(self.hidden) == 0

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        if self.down is not None:
            return self.output(self.down(state))
        return self.output(self.hidden(state))
