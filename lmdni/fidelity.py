"""How right is the synthetic gradient? The head's prediction against the true future gradient, K windows ahead.

The head is trained on a bootstrapped target, so `sg_cosine` in metrics.jsonl (SG against that target) cannot say
whether the target itself is right. Here the reference is computed, not bootstrapped: at a boundary state s, unroll
the next K windows from s with the graph kept and take

    G_K(s) = d/ds  sum_{k=1..K}  scale^(k-1) · L_k          (L_k: window k's summed loss, per column)

which is what the SG's fixed point is for K → ∞ (each boundary discounts the SG it injects by `scale`). It is in the
SG's units: per-sequence, summed loss. Reported per K: the mean per-column cosine between SG(s) and G_K(s), the ratio
of their RMS norms, the fraction of G_K's energy the SG explains, 1 − |SG − G_K|² / |G_K|², and the calibration
β = E<SG, G_K> / E|SG|², the regression coefficient of G_K on the SG.

Why β. Most of a single G_K is the unpredictable part of the future (which characters come), and for a model that
predicts its data well the predictable part, E[G_K | s], is small: under the model's own distribution the expected
gradient of the log-loss is exactly zero. So even a perfect SG, E[G_K | s], has a small per-column cosine with G_K.
β averages that noise out: it is 1 for an SG equal to E[G_K | s] whatever the noise, near 0 for an SG that is noise
itself (injecting it adds variance, not signal), and above 1 for an SG that points right but is too small.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .window import summed_loss

HORIZONS = (1, 2, 4, 8, 16)


def future_gradients(model, stream, scale: float, horizons=HORIZONS, boundaries: int = 8, warmup: int = 32,
                     spacing: int | None = None, device="cpu"):
    """Yields, at each of `boundaries` boundary states s, (s detached, {K: G_K(s)}). `stream` yields windows as the
    trainers' streams do (`next_window()`); the model's state is carried through `warmup` windows, then probed at
    boundaries `spacing` windows apart (default max(horizons): the futures do not overlap). A future that a pass's
    restart would cut is skipped. Memory holds one boundary's graph at a time."""
    horizon = max(horizons)
    spacing = spacing or horizon
    if not 1 <= spacing <= horizon:
        raise ValueError(f"spacing must be between 1 and the longest horizon ({horizon}), got {spacing}")
    was_training = model.training
    model.eval()

    def window():
        x, y, starts, ends, mask = stream.next_window()
        return x.to(device), y.to(device), None if mask is None else mask.to(device), starts, ends

    def carry(windows, state):
        with torch.no_grad():
            for x, _, _, starts, _ in windows:
                if state is None or starts:
                    state = model.initial_state(x.shape[1], device)
                state = model(x, state, with_synthetic_gradient=False).state
        return state

    state = carry([window() for _ in range(warmup)], None)
    upcoming: list = []  # the windows after the current boundary, as far as the longest horizon
    probed, tries = 0, 0
    while probed < boundaries:
        tries += 1
        if tries > 10 * boundaries * horizon // spacing:
            raise ValueError(f"the data is too short to probe {boundaries} boundaries {horizon} windows ahead")
        upcoming += [window() for _ in range(horizon - len(upcoming))]
        if any(w[3] for w in upcoming) or any(w[4] for w in upcoming[:-1]):  # a pass restarts: no future to probe
            state, upcoming = carry(upcoming, state), []
            continue
        start = state.detach().requires_grad_(True)
        objective, current, states, true_gradients = 0.0, start, [], {}
        for k, (x, y, mask, _, _) in enumerate(upcoming, 1):
            out = model(x, current, with_synthetic_gradient=False)
            objective = objective + scale ** (k - 1) * summed_loss(out.logits, y, mask)
            current = out.state
            states.append(current.detach())
            if k in horizons:
                true_gradients[k] = torch.autograd.grad(objective, start, retain_graph=k < horizon)[0]
        yield start.detach(), true_gradients
        state, upcoming = states[spacing - 1], upcoming[spacing:]
        probed += 1
    model.train(was_training)


def sg_fidelity(model, stream, scale: float, horizons=HORIZONS, boundaries: int = 8, warmup: int = 32,
                device="cpu") -> list[dict]:
    """The head's SG against G_K at `boundaries` boundaries (`future_gradients`), summed into the statistics above."""
    if model.synthetic_gradient is None:
        raise ValueError("the model has no synthetic-gradient head (method=bptt)")
    sums = {k: {"cosine": 0.0, "sg_sq": 0.0, "true_sq": 0.0, "error_sq": 0.0, "dot": 0.0, "rows": 0}
            for k in horizons}
    probed = 0
    for start, true_gradients in future_gradients(model, stream, scale, horizons, boundaries, warmup, device=device):
        with torch.no_grad():
            predicted = model.injected_synthetic_gradient(start)
        for k, true in true_gradients.items():
            s = sums[k]
            s["cosine"] += F.cosine_similarity(predicted, true, dim=1, eps=1e-12).sum().item()
            s["sg_sq"] += predicted.pow(2).sum().item()
            s["true_sq"] += true.pow(2).sum().item()
            s["error_sq"] += (predicted - true).pow(2).sum().item()
            s["dot"] += (predicted * true).sum().item()
            s["rows"] += true.shape[0]
        probed += 1
    return [{"horizon": k, "cosine": s["cosine"] / s["rows"],
             "norm_ratio": (s["sg_sq"] / max(s["true_sq"], 1e-30)) ** 0.5,
             "explained": 1 - s["error_sq"] / max(s["true_sq"], 1e-30),
             "calibration": s["dot"] / s["sg_sq"] if s["sg_sq"] > 0 else 0.0, "boundaries": probed,
             "columns": s["rows"]}
            for k, s in sums.items()]


def probe_stream(cfg, payload, columns: int = 32, horizon: int = max(HORIZONS), level=None, split: str = "valid",
                 seed_offset: int = 1):
    """Windows to probe a saved run on: a split (text; default valid) or its task at the level it reached (copy
    tasks; `level` = (length, repeats) sets another), on fresh episodes drawn with the run's seed + `seed_offset`."""
    from .data import TrainStream, load_corpus
    from .data.copy import CopyStream

    unroll = cfg.trainer.unroll
    if payload.get("vocab"):
        data = getattr(load_corpus(cfg.data), split)
        # columns long enough for the warm-up and a few probes: a short split gets fewer, longer columns
        columns = max(1, min(columns, len(data) // ((32 + 2 * horizon) * unroll)))
        return TrainStream(data, columns, unroll)
    d, reached = cfg.data, payload["stream"]
    length, repeats = level or (reached["length"], reached["repeats"])
    stream = CopyStream(columns, unroll, repeat=d.name == "repeat_copy", seed=cfg.seed + seed_offset, start_length=length,
                        max_repeats=d.max_repeats, phase=d.phase)
    stream.repeats = repeats
    return stream


def probe_run(run_dir, horizons=HORIZONS, boundaries: int = 8, columns: int = 32, device: str = "cpu",
              which: str = "best") -> list[dict]:
    """The probe on a saved run (`probe_stream`)."""
    from .run import load_run

    cfg, model, payload = load_run(run_dir, which, device)
    stream = probe_stream(cfg, payload, columns, max(horizons))
    return sg_fidelity(model, stream, float(cfg.dni.scale), horizons, boundaries, device=torch.device(device))
