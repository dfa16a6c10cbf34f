"""What an exact resume needs, as a plain dict: model and SG head, both optimizers, the stream position, the carried
state, counters, early-stopping state and the RNG states — and putting it all back."""
from __future__ import annotations

import torch

from .checkpoint import first_line, load_model_state, save, strip_compile_prefix
from .errors import CheckpointError, DivergenceError


def _rng_state(device: torch.device) -> dict:
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def snapshot(trainer) -> dict:
    """Collective in data-parallel runs: the carried state and RNG states of every rank are gathered."""
    from omegaconf import OmegaConf

    state = trainer.dist.gather_rows(trainer.state.detach()) if trainer.state is not None else None
    return {
        "model": strip_compile_prefix(trainer.model.state_dict()),
        "optimizer": trainer.optimizer.state_dict(),
        "stream": trainer.stream.state_dict(),
        "state": state.cpu() if state is not None else None,
        "chars": trainer.chars, "step": trainer.step, "train_seconds": trainer.train_seconds,
        "early_stopping": {"best_score": trainer.best_score, "bad_evals": trainer.bad_evals, "evals": trainer.evals},
        "rng": trainer.dist.gather_objects(_rng_state(trainer.device)),  # one per rank
        "interval": trainer.dist.gather_objects(trainer.interval.state_dict()),  # one per rank
        "vocab": trainer.task.vocab,
        "device": trainer.device.type,  # a resume is exact only on this kind of device (lmdni.rundir)
        "procedure": trainer.window.state_dict(),  # what the window procedure keeps across windows
        "config": OmegaConf.to_container(trainer.cfg, resolve=True),
    }


def save_checkpoint(trainer, name: str) -> None:
    """`trainer.out_dir / name`. Collective in data-parallel runs (the carried state is gathered from every rank);
    rank 0 writes. Non-finite weights or carried state are never written: a checkpoint on disk is always a good one."""
    tensors = [p.detach() for p in trainer.model.parameters()] + ([trainer.state] if trainer.state is not None else [])
    finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all()
    if trainer.dist.any(not bool(finite), trainer.device):
        raise DivergenceError(f"non-finite weights or state at step {trainer.step} ({trainer.chars:,} characters): "
                              f"not saved; the last good checkpoint is {trainer.out_dir / name}")
    payload = trainer.state_dict()
    if trainer.dist.is_main:
        save(trainer.out_dir / name, payload)
    trainer.dist.sum(torch.zeros(1, device=trainer.device))  # nobody reads the file before it is complete


def _one_optimizer(payload: dict) -> dict:
    """Checkpoints that kept the SG head's Adam apart (`sg_optimizer`) load as the second parameter group."""
    core, head = payload["optimizer"], payload.get("sg_optimizer")
    if not head:
        return core
    offset = len(core["param_groups"][0]["params"])  # the head's parameters follow the core's
    group = {**head["param_groups"][0], "params": [i + offset for i in head["param_groups"][0]["params"]]}
    state = {**core["state"], **{i + offset: value for i, value in head["state"].items()}}
    return {"state": state, "param_groups": core["param_groups"] + [group]}


def restore(trainer, payload: dict) -> None:
    try:
        load_model_state(trainer.model, payload["model"])
        trainer.optimizer.load_state_dict(_one_optimizer(payload))
    except (RuntimeError, ValueError, KeyError, CheckpointError) as exc:
        raise CheckpointError(f"the checkpoint in {trainer.out_dir} does not match this configuration "
                              f"(another model shape or method?): {first_line(exc)}") from None
    trainer.stream.load_state_dict(payload["stream"])
    state = payload["state"]
    if state is not None:
        rows = trainer.dist.columns(state.shape[0])  # this rank's columns of the carried state
        trainer.state = state[rows].to(trainer.device)
    if payload.get("procedure") is not None:
        trainer.window.load_state_dict(payload["procedure"], trainer.device)
    trainer.chars, trainer.step = payload["chars"], payload["step"]
    trainer.train_seconds = payload["train_seconds"]
    stopping = payload["early_stopping"]
    # best_score: the task's (valid BPC, or the copy tasks' minus the length solved); "best_valid" before it
    trainer.best_score = stopping["best_score"] if "best_score" in stopping else stopping["best_valid"]
    trainer.bad_evals = stopping["bad_evals"]
    trainer.evals = stopping["evals"]
    intervals = payload.get("interval")
    if intervals and len(intervals) == trainer.dist.world:
        trainer.interval.load_state_dict(intervals[trainer.dist.rank])
    rngs = payload["rng"]
    rng = rngs[trainer.dist.rank] if len(rngs) == trainer.dist.world else rngs[0]
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and trainer.device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], trainer.device)
