"""The training loop: windows from the task, each run by the model's window procedure (lmdni.window), an optimizer
step, evaluations, checkpoints. Nothing here depends on the model: what a window does is the procedure's.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from .config import weight_decay
from .distributed import Distributed
from .environment import environment
from .errors import LmdniError
from .metrics import Interval, MetricsLog, memory_fields
from .resume import restore, save_checkpoint, snapshot

log = logging.getLogger(__name__)


class Interrupted(LmdniError):
    """Stopped by a signal after saving."""


class Trainer:
    def __init__(self, cfg, model, task, out_dir: Path, device: torch.device, window, distributed=None):
        """`task` (lmdni.tasks) supplies the windows and says what an evaluation measures and what is better;
        `window` (lmdni.window) runs one window and fills the gradients the optimizer step applies."""
        self.cfg, self.model, self.task, self.stream, self.window = cfg, model, task, task.stream, window
        self.dist = distributed or Distributed()
        self.out_dir, self.device = Path(out_dir), device
        if hasattr(self.stream, "to"):
            self.stream.to(device)
        self.dni, self.aux = cfg.method in ("dni", "dni_aux"), cfg.method == "dni_aux"
        tc = cfg.trainer
        # the SG heads have their own learning rate (a second parameter group: after the window's backward they get
        # their gradient from the regression alone); everything else (DNI+Aux's heads included) is the core's, and
        # only the core decays. One optimizer: one step and one zero_grad per window; fused: one kernel per group
        heads = "synthetic_gradient."
        self.core_params = [p for name, p in model.named_parameters() if not name.startswith(heads)]
        self.head_params = [p for name, p in model.named_parameters() if name.startswith(heads)] if self.dni else []
        groups = [{"params": self.core_params, "lr": tc.lr, "weight_decay": weight_decay(cfg)}]
        if self.head_params:
            groups.append({"params": self.head_params, "lr": cfg.dni.lr, "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, fused=True)
        self.params = self.core_params + self.head_params
        self.environment = environment(device)  # what made the run: results.json, the log (lmdni.environment)
        self.state = None  # the carried state of this process's columns, made at the first window
        self.chars, self.step, self.train_seconds = 0, 0, 0.0
        self.best_score, self.bad_evals, self.evals = task.best_initial, 0, 0
        self._stop_requested, self._finishing, self.skipped = False, False, 0
        self.clip = float(tc.clip)  # read every window: a plain float (an OmegaConf attribute costs microseconds)
        self.warmup_chars = int(cfg.dni.warmup_chars)
        self.interval = Interval(device)

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
        self.optimizer.zero_grad(set_to_none=True)
        result = self.window(x, y, mask, self.state, ends_pass, warm=self.chars >= self.warmup_chars, step=self.step)
        self.step += 1
        if result.state is None:  # dropped before its backward (trainer.on_nonfinite=skip)
            log.warning("skipping window at step %d: non-finite loss; state reset", self.step - 1)
            self.state = self.model.initial_state(x.shape[1], self.device)
            self.skipped += 1
            return
        self.dist.average_gradients(self.params)
        grad_norm = self._core_grad_norm()
        self.optimizer.step()
        self.state = result.state
        self.task.observe(result.loss_sum)
        self.interval.add(result, y.numel(), grad_norm)
        self.chars += y.numel() * self.dist.world  # characters of the whole batch, over all ranks

    def _core_grad_norm(self) -> torch.Tensor:
        """The core's global gradient norm before clipping (clipped in place when `trainer.clip` > 0)."""
        if self.clip > 0:
            return torch.nn.utils.clip_grad_norm_(self.core_params, self.clip).detach()
        return torch.nn.utils.get_total_norm([p.grad for p in self.core_params if p.grad is not None]).detach()

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
                    bar.set_postfix(bpc=f"{self.interval.bpc():.3f}", cps=f"{self.chars / max(elapsed, 1e-9):,.0f}")
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
        if self.interval.windows:  # evaluate what was trained since the last evaluation
            self.evaluate_and_save(metrics)
        return self.finish(stop_reason)

    def _check_finite(self) -> None:
        self.interval.check_finite(self.dist, f"by step {self.step} ({self.chars:,} characters); the last good "
                                              f"checkpoint is {self.out_dir / 'last.pt'}")

    def evaluate_and_save(self, metrics: MetricsLog) -> bool:
        self._check_finite()
        interval = self.interval
        interval.gather(self.dist)
        record = {"step": self.step, "chars": self.chars, "epoch": self.stream.epoch,
                  "seconds": round(self.train_seconds, 3), "train_bpc": interval.bpc(),
                  "chars_per_sec": self.chars / max(self.train_seconds, 1e-9)}
        fields, score = self.task.evaluate(self.model, self.device)
        record.update(fields)
        # two timescales report no cosine: its heads' agreement is scripts/hierarchical_fidelity.py's
        record.update(interval.fields(self.dni, self.window.reports_cosine, self.aux), **memory_fields(self.device))
        head = getattr(self.model, "synthetic_gradient", None)
        if getattr(head, "calibrates", False):  # dni.calibration_decay: the gain the next window injects with
            record["sg_gain"] = float(head.gain)
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
        interval.reset()
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
        save_checkpoint(self, name)

    def state_dict(self) -> dict:
        """Everything an exact resume needs (lmdni.resume); collective in data-parallel runs."""
        return snapshot(self)

    def load_state_dict(self, payload: dict) -> None:
        restore(self, payload)
