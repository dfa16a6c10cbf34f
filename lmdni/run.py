"""Assembling a run from its config: seed, device, corpus, model, stream, trainer."""
from __future__ import annotations

import random

import torch
from omegaconf import OmegaConf

from .config import register_schema, validate
from .errors import ConfigError
from .model import DEFAULT_HEAD_INPUT, LSTMCore
from .tasks import build_task, task_class


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available (use device=auto or device=cpu)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def build_model(cfg, vocab_size: int):
    m = cfg.model
    with_head = cfg.method != "bptt"
    if m.get("name", "lstm") == "hierarchical":
        from .hierarchical import HierarchicalCore

        return HierarchicalCore(vocab_size, m.hidden_size, m.slow_hidden_size, m.slow_every, m.message_size,
                                m.embedding_size, heads=with_head, aux=cfg.method == "dni_aux")
    return LSTMCore(vocab_size, m.hidden_size, m.num_layers, m.embedding_size, m.dropout,
                    sg_hidden_size=cfg.dni.head_hidden_size if with_head else None,
                    sg_num_layers=cfg.dni.head_num_layers, aux_head=cfg.method == "dni_aux",
                    sg_input=cfg.dni.get("head_input", DEFAULT_HEAD_INPUT), symbols=m.get("symbols", "embedding"),
                    aux_in_target=bool(cfg.dni.get("aux_in_target", False)),
                    sg_rank=int(cfg.dni.get("head_rank", 0)))


def load_run(run_dir, which: str = "best", device: str = "auto"):
    """A saved run's (config, model on `device`, checkpoint payload): the one loader for eval and sample."""
    from pathlib import Path

    from . import checkpoint as ckpt
    from .errors import CheckpointError

    path = Path(run_dir) / f"{which}.pt"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not an lmdni run (no {which}.pt)")
    payload = ckpt.load(path)
    try:
        cfg = OmegaConf.create(payload["config"])
        vocab = payload.get("vocab")
        vocab_size = len(vocab) if vocab else task_class(cfg.data).config_vocab_size(cfg)
        model = build_model(cfg, vocab_size)
        ckpt.load_model_state(model, payload["model"])
    except (KeyError, TypeError, ValueError, RuntimeError, CheckpointError) as exc:
        raise CheckpointError(f"{path} does not match the configured model: {ckpt.first_line(exc)}") from None
    return cfg, model.to(resolve_device(device)), payload


def build_trainer(cfg, out_dir, distributed=None, corpus=None):
    """The one way to build a run: validate the config, set threads and device, build the task (`corpus` replaces
    the configured text corpus, e.g. an in-memory one for a benchmark), seed, build the model, and the trainer."""
    from .distributed import Distributed
    from .trainer import Trainer

    validate(cfg)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    distributed = distributed or Distributed()
    device = distributed.init(resolve_device(str(cfg.device)))
    if distributed.enabled and cfg.model.get("name", "lstm") == "hierarchical":
        raise ConfigError("model=hierarchical trains in one process (no data-parallel runs yet)")
    task = build_task(cfg, distributed, corpus)
    seed_everything(cfg.seed)
    model = build_model(cfg, task.vocab_size).to(device)
    return Trainer(cfg, model, task, out_dir, device, distributed)


def compose_config(overrides=(), name: str = "train", with_hydra: bool = False):
    """The run config `lmdni-train OVERRIDES...` would use, for scripts and tests (`with_hydra`: with Hydra's own
    node, e.g. the run dir). Inside a Hydra app (a sweep's job) it composes with the app's own search path."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from .cli import config_dir

    register_schema()
    if GlobalHydra.instance().is_initialized():
        return compose(name, list(overrides), return_hydra_config=with_hydra)
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        return compose(name, list(overrides), return_hydra_config=with_hydra)
