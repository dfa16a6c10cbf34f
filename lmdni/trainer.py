"""Truncated training: plain TBPTT (`method=bptt`) or with synthetic gradients at the boundaries (`method=dni`).

One window, DNI:
    start  = carried state, detached, requiring grad (a leaf: the gradient that reaches it is the SG's target)
    out    = core(x, start)                        logits, final state, SG(final), SG(start): one forward call
    backward(window loss  +  scale · SG(final) seeded at the final state)
    target = gradient at start                     bootstrapped: true in-window gradient + the SG pulled back
    head  ← regression of SG(start) onto target    its own Adam, its own learning rate
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from .boundary import (aux_loss, backward_window, bootstrapped_target, injected_gradient, regress_synthetic_gradient,
                       resolve_fused)
from .config import weight_decay
from .distributed import Distributed
from .environment import environment
from .errors import DivergenceError, LmdniError
from .evaluate import bits_per_character
from .hierarchical_training import two_timescale_procedure
from .metrics import MetricsLog, peak_rss_mb
from .resume import restore, snapshot
from .speed import configure_tf32, window_forward

log = logging.getLogger(__name__)


class Interrupted(LmdniError):
    """Stopped by a signal after saving."""


class Trainer:
    def __init__(self, cfg, model, task, out_dir: Path, device: torch.device, distributed=None):
        """`task` (lmdni.tasks) supplies the windows and says what an evaluation measures and what is better."""
        self.cfg, self.model, self.task, self.stream = cfg, model, task, task.stream
        self.dist = distributed or Distributed()
        self.out_dir, self.device = Path(out_dir), device
        if hasattr(self.stream, "to"):
            self.stream.to(device)
        self.dni = cfg.method in ("dni", "dni_aux")
        self.aux = cfg.method == "dni_aux"
        tc = cfg.trainer
        head = model.synthetic_gradient
        # the SG head has its own learning rate (a second parameter group, after the window's backward it gets its
        # gradient from the regression alone); everything else (DNI+Aux's head included) is the core's. One Adam
        # for both: one step and one zero_grad per window. Fused: one kernel per group instead of a loop.
        self.core_params = [p for name, p in model.named_parameters() if not name.startswith("synthetic_gradient.")]
        self.head_params = list(head.parameters()) if head is not None and self.dni else []
        groups = [{"params": self.core_params, "lr": tc.lr, "weight_decay": weight_decay(cfg)}]
        if self.head_params:
            groups.append({"params": self.head_params, "lr": cfg.dni.lr})
        self.optimizer = torch.optim.Adam(groups, fused=True, decoupled_weight_decay=True)  # AdamW's decay
        self.params = self.core_params + self.head_params
        # a model with its own window procedure (two timescales: lmdni.hierarchical_training) trains through it
        self.procedure = two_timescale_procedure(cfg, model, self.dni)
        self.fused = resolve_fused(cfg.dni.fused, device, head) if self.dni and not self.procedure else False
        # forward + loss; bf16 autocast, TF32 and torch.compile are opt-in (lmdni.speed)
        configure_tf32(bool(tc.get("tf32", False)), device)
        self.forward = window_forward(model, device, tc.get("precision", "fp32"), bool(tc.get("compile", False)))
        self.environment = environment(device)  # what made the run: results.json, the log (lmdni.environment)
        self.state = None  # the carried state of this process's columns, made at the first window
        self.chars, self.step, self.train_seconds = 0, 0, 0.0
        self.best_score, self.bad_evals, self.evals = task.best_initial, 0, 0
        self._stop_requested = self._finishing = False
        self.skip_nonfinite, self.skipped = tc.on_nonfinite == "skip", 0
        # what every window reads, as plain values: an OmegaConf attribute costs microseconds, per window that adds up
        dni = cfg.dni
        self.clip = float(tc.clip)
        self.scale, self.ablation = float(dni.scale), str(dni.ablation)
        self.warmup_chars = int(dni.get("warmup_chars", 0))
        self.loss_weight, self.aux_weight = float(dni.loss_weight), float(dni.aux_weight)
        self._reset_interval()

    def request_stop(self, signum=None, frame=None) -> None:
        """SIGINT/SIGTERM: finish the current window, save, and exit non-zero (never mid-update). During the final
        evaluation, when every checkpoint is saved already: stop at once."""
        if self._finishing:
            raise Interrupted(f"interrupted during the final evaluation; the checkpoints are saved (lmdni-eval "
                              f"{self.out_dir} gives the test BPC; rerunning lmdni-train hydra.run.dir={self.out_dir} "
                              f"writes results.json)")
        self._stop_requested = True

    # ----------------------------------------------------------------------------------------------- one window
    def train_window(self) -> None:
        x, y, starts_pass, ends_pass, mask = self.stream.next_window()
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if starts_pass or self.state is None:
            self.state = self.model.initial_state(x.shape[1], self.device)
        if mask is not None:  # the task counts only some targets (masked loss); n stays B×T (the SG's units)
            mask = mask.to(self.device, non_blocking=True)
        n_tokens = y.numel()
        if self.procedure is not None:
            self.optimizer.zero_grad(set_to_none=True)
            next_state, loss_sum, sg_loss, aux = self.procedure.train_window(x, y, mask, self.state, ends_pass,
                                                                             warm=self.chars >= self.warmup_chars)
            self._sg_loss, self._aux_loss = self._sg_loss + sg_loss, self._aux_loss + aux
            self._update(next_state, loss_sum, n_tokens)
            return
        start = self.state.detach().requires_grad_(self.dni)
        out, loss_sum = self.forward(x, y, mask, start, self.dni)
        # costs a sync per window, so only when asked for; collective, so that all ranks skip the same window
        if self.skip_nonfinite and self.dist.any(not bool(torch.isfinite(loss_sum)), self.device):
            log.warning("skipping window at step %d: non-finite loss; state reset", self.step)
            self.state = self.model.initial_state(x.shape[1], self.device)
            self.skipped += 1
            self.step += 1
            return
        self.optimizer.zero_grad(set_to_none=True)
        if self.dni:
            self._dni_backward(start, out, loss_sum, n_tokens, ends_pass)
        else:
            (loss_sum / n_tokens).backward()
        self._update(out.state.detach(), loss_sum, n_tokens)

    def _update(self, next_state, loss_sum, n_tokens: int) -> None:
        """The window's optimizer step (the core and the SG heads) and bookkeeping, its gradients filled."""
        self.dist.average_gradients(self.params)
        self._grad_norm += self._core_grad_norm()
        self.optimizer.step()
        self.state = next_state
        self.task.observe(loss_sum)
        self._nats += loss_sum.detach()
        self._count += n_tokens
        self._windows += 1
        self.chars += n_tokens * self.dist.world  # characters of the whole batch, over all ranks
        self.step += 1

    def _core_grad_norm(self) -> torch.Tensor:
        """The core's global gradient norm before clipping (clipped in place when `trainer.clip` > 0)."""
        if self.clip > 0:
            return torch.nn.utils.clip_grad_norm_(self.core_params, self.clip).detach()
        return torch.nn.utils.get_total_norm([p.grad for p in self.core_params if p.grad is not None]).detach()

    def _dni_backward(self, start, out, loss_sum, n_tokens: int, ends_pass: bool) -> None:
        """The window's backward with the injected SG, then the head's regression onto the bootstrapped target."""
        # warm-up: the head learns its (then purely in-window) target and nothing is injected, so the core trains as
        # TBPTT does (DNI+Aux: plus its aux loss)
        scale = self.scale if self.chars >= self.warmup_chars else 0.0
        injected = injected_gradient(out.synthetic_gradient, scale, ends_pass, self.ablation)
        extra = None
        if self.aux:
            aux = aux_loss(out.aux_prediction, out.synthetic_gradient)
            extra = self.aux_weight * aux
            self._aux_loss += aux.detach()
        backward_window(loss_sum, n_tokens, out.state, injected, extra)
        target = bootstrapped_target(start, n_tokens)
        sg_loss = regress_synthetic_gradient(self.model.synthetic_gradient, out.start_head_input,
                                             out.start_synthetic_gradient, target, self.loss_weight, self.fused)
        self._sg_loss += sg_loss.detach()
        if self.step % 10 == 0:  # a diagnostic: sampled every 10th window to keep it off the hot path
            self._sg_cos += F.cosine_similarity(out.start_synthetic_gradient.detach().flatten(), target.flatten(),
                                                dim=0, eps=1e-12)
            self._cos_samples += 1

    # ------------------------------------------------------------------------------------------------ the loop
    def train(self, metrics: MetricsLog) -> dict:
        tc = self.cfg.trainer
        budget = tc.max_chars or math.inf
        max_seconds, max_epochs = tc.max_seconds, tc.max_epochs
        bar = tqdm(total=None if budget == math.inf else int(budget), initial=self.chars, unit="char",
                   unit_scale=True, dynamic_ncols=True, disable=None if tc.progress else True, desc=self.cfg.method)
        next_eval = (self.chars // tc.eval_every + 1) * tc.eval_every
        stop_reason = "budget"
        tick = time.perf_counter()  # training time excludes evaluation: chars/s measures training alone
        try:
            while self.chars < budget:
                before = self.chars
                self.train_window()
                bar.update(self.chars - before)
                if self.step % 50 == 0:
                    self._check_finite()
                    elapsed = self.train_seconds + time.perf_counter() - tick
                    bar.set_postfix(bpc=f"{self._interval_bpc():.3f}", cps=f"{self.chars / max(elapsed, 1e-9):,.0f}")
                if self.dist.any(self._stop_requested, self.device):  # every rank stops at the same window
                    self.train_seconds += time.perf_counter() - tick
                    tick = time.perf_counter()
                    self.save("last.pt")
                    raise Interrupted(f"interrupted at {self.chars:,} characters; saved {self.out_dir / 'last.pt'} "
                                      f"(run lmdni-train hydra.run.dir={self.out_dir} to resume)")
                if max_seconds and self.train_seconds + time.perf_counter() - tick >= max_seconds:
                    stop_reason = "time budget"
                    break
                if max_epochs and self.stream.epoch >= max_epochs:
                    stop_reason = "epochs"
                    break
                if self.chars >= next_eval:
                    self.train_seconds += time.perf_counter() - tick
                    improved = self.evaluate_and_save(metrics)
                    next_eval += tc.eval_every
                    tick = time.perf_counter()
                    if not improved and self.bad_evals >= tc.patience:
                        stop_reason = "early stopping"
                        break
            self.train_seconds += time.perf_counter() - tick
        finally:
            bar.close()
        if self._windows:  # evaluate what was trained since the last evaluation
            self.evaluate_and_save(metrics)
        return self.finish(stop_reason)

    def _check_finite(self) -> None:
        # ranks must agree, or they deadlock
        values = self.dist.sum(torch.stack([self._nats, self._sg_loss, self._aux_loss]))
        for name, value in zip(("training loss", "synthetic-gradient loss", "auxiliary loss"), values.tolist()):
            if not math.isfinite(value):
                raise DivergenceError(f"non-finite {name} by step {self.step} ({self.chars:,} characters); "
                                      f"the last good checkpoint is {self.out_dir / 'last.pt'}")

    def _reset_interval(self) -> None:
        zero = torch.zeros((), device=self.device)
        self._nats, self._sg_loss, self._sg_cos, self._grad_norm, self._aux_loss = (zero.clone() for _ in range(5))
        self._count, self._windows, self._cos_samples = 0, 0, 0

    def _interval_bpc(self) -> float:
        return bits_per_character(float(self._nats), max(self._count, 1))

    def _gather_interval(self) -> None:
        """Sum the interval's statistics over ranks (the SG diagnostics are then averaged)."""
        if not self.dist.enabled:
            return
        totals = self.dist.sum(torch.stack([self._nats, self._sg_loss, self._sg_cos, self._grad_norm, self._aux_loss,
                                            torch.tensor(float(self._count), device=self.device)]))
        self._nats = totals[0]
        self._sg_loss, self._sg_cos, self._grad_norm, self._aux_loss = (v / self.dist.world for v in totals[1:5])
        self._count = int(totals[5].item())

    def evaluate_and_save(self, metrics: MetricsLog) -> bool:
        self._check_finite()
        self._gather_interval()
        record = {"step": self.step, "chars": self.chars, "epoch": self.stream.epoch,
                  "seconds": round(self.train_seconds, 3), "train_bpc": self._interval_bpc(),
                  "chars_per_sec": self.chars / max(self.train_seconds, 1e-9)}
        fields, score = self.task.evaluate(self.model, self.device)
        record.update(fields)
        record["grad_norm"] = float(self._grad_norm) / max(self._windows, 1)  # mean, before clipping
        if self.dni:
            record["sg_loss"] = float(self._sg_loss) / max(self._windows, 1)
            if self.procedure is None:  # two timescales: its heads' agreement is scripts/hierarchical_fidelity.py's
                record["sg_cosine"] = float(self._sg_cos) / max(self._cos_samples, 1)
        if self.aux:
            record["aux_loss"] = float(self._aux_loss) / max(self._windows, 1)
        if self.device.type == "cuda":
            record["peak_memory_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            record["peak_rss_mb"] = peak_rss_mb()
        improved = self.task.better(score, self.best_score)
        self.evals += 1
        if improved:
            self.best_score, self.bad_evals = score, 0
        else:
            self.bad_evals += 1
        record.update(self.task.best_fields(self.best_score))
        if self.dist.is_main:
            metrics.write(record)
        log.info("chars %s  %s  %s%s", f"{self.chars:,}", self.task.describe(record),
                 f"{record['chars_per_sec']:,.0f} chars/s", "  (best)" if improved else "")
        self._reset_interval()
        self.save("last.pt")
        if improved:
            self.save("best.pt")
        return improved

    def finish(self, stop_reason: str) -> dict:
        self._finishing = True
        best = ckpt.load(self.out_dir / "best.pt", map_location=self.device)
        self.model.load_state_dict(best["model"])
        fields, summary = self.task.results(self.model, self.best_score, self.device)
        result = {"method": self.cfg.method, "unroll": self.cfg.trainer.unroll, **fields,
                  "best_chars": best["chars"], "chars": self.chars, "seconds": round(self.train_seconds, 3),
                  "chars_per_sec": self.chars / max(self.train_seconds, 1e-9), "stop_reason": stop_reason,
                  "environment": self.environment}
        if self.dist.is_main:
            ckpt.save_json(self.out_dir / "results.json", result)
        log.info("stopped (%s) after %s characters: %s; run dir %s", stop_reason, f"{self.chars:,}", summary,
                 self.out_dir)
        return result

    # ------------------------------------------------------------------------------------------ checkpointing
    def save(self, name: str) -> None:
        """Collective in data-parallel runs (the carried state is gathered from every rank); rank 0 writes.
        Non-finite weights or carried state are never written: a checkpoint on disk is always a good one."""
        tensors = [p.detach() for p in self.model.parameters()] + ([self.state] if self.state is not None else [])
        finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all()
        if self.dist.any(not bool(finite), self.device):
            raise DivergenceError(f"non-finite weights or state at step {self.step} ({self.chars:,} characters): "
                                  f"not saved; the last good checkpoint is {self.out_dir / name}")
        payload = snapshot(self)
        if self.dist.is_main:
            ckpt.save(self.out_dir / name, payload)
        self.dist.sum(torch.zeros(1, device=self.device))  # nobody reads the file before it is complete

    def load_state_dict(self, payload: dict) -> None:
        restore(self, payload)
