"""Assembling a run from its config: seed, device, corpus, model, stream, trainer."""
from __future__ import annotations

import random

import torch
from omegaconf import OmegaConf

from .errors import ConfigError
from .model import DEFAULT_HEAD_INPUT, HEAD_INPUTS, LSTMCore
from .tasks import build_task, task_class

POSITIVE_INTS = ("model.hidden_size", "model.num_layers", "model.embedding_size", "trainer.unroll",
                 "trainer.batch_size", "trainer.eval_every", "trainer.eval_batch_size")


def validate(cfg) -> None:
    for key in POSITIVE_INTS:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be an integer >= 1, got {value!r}")
    for key in ("trainer.lr", "dni.lr", "dni.scale", "trainer.clip"):
        value = OmegaConf.select(cfg, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{key} must be a non-negative number, got {value!r}")
    from .trainer import METHODS

    if cfg.method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    if cfg.dni.head_input not in HEAD_INPUTS:
        raise ConfigError(f"dni.head_input must be squashed or raw, got {cfg.dni.head_input!r}")
    if cfg.model.get("symbols", "embedding") not in ("embedding", "binary"):
        raise ConfigError(f"model.symbols must be embedding or binary, got {cfg.model.symbols!r}")
    if cfg.dni.ablation not in ("none", "shuffle"):
        raise ConfigError(f"dni.ablation must be none or shuffle, got {cfg.dni.ablation!r}")
    for key in ("trainer.compile", "trainer.tf32", "dni.aux_in_target"):
        value = OmegaConf.select(cfg, key, default=False)
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
    if cfg.device not in ("auto", "cpu", "cuda") and not str(cfg.device).startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {cfg.device!r}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available (use device=auto or device=cpu)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def build_model(cfg, vocab_size: int) -> LSTMCore:
    m = cfg.model
    with_head = cfg.method != "bptt"
    return LSTMCore(vocab_size, m.hidden_size, m.num_layers, m.embedding_size, m.dropout,
                    sg_hidden_size=cfg.dni.head_hidden_size if with_head else None,
                    sg_num_layers=cfg.dni.head_num_layers, aux_head=cfg.method == "dni_aux",
                    sg_input=cfg.dni.get("head_input", DEFAULT_HEAD_INPUT), symbols=m.get("symbols", "embedding"),
                    aux_in_target=bool(cfg.dni.get("aux_in_target", False)))


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
        model.load_state_dict(payload["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} does not match the configured model: {str(exc).splitlines()[0]}") from None
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
    task = build_task(cfg, distributed, corpus)
    seed_everything(cfg.seed)
    model = build_model(cfg, task.vocab_size).to(device)
    return Trainer(cfg, model, task, out_dir, device, distributed)


def compose_config(overrides=(), name: str = "train"):
    """The run config `lmdni-train OVERRIDES...` would use, for scripts and tests."""
    from hydra import compose, initialize_config_dir

    from .cli import config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        return compose(name, list(overrides))
