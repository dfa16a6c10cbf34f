"""Assembling a run from its config: seed, device, corpus, model, stream, trainer."""
from __future__ import annotations

import random
from pathlib import Path

import torch
from omegaconf import OmegaConf

from .config import register_schema, upgrade, validate
from .data import load_corpus
from .errors import CheckpointError, ConfigError
from .evaluate import bits_per_character, split_nats
from .model import LSTMCore
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
    if m.name == "hierarchical":
        from .hierarchical import HierarchicalCore

        d = cfg.dni
        return HierarchicalCore(vocab_size, m.hidden_size, m.slow_hidden_size, m.slow_every, m.message_size,
                                m.embedding_size, heads=with_head, aux=cfg.method == "dni_aux",
                                head_input=d.head_input, head_hidden_size=int(d.head_hidden_size),
                                head_num_layers=int(d.head_num_layers), head_rank=int(d.head_rank))
    return LSTMCore(vocab_size, m.hidden_size, m.num_layers, m.embedding_size, m.dropout,
                    sg_hidden_size=cfg.dni.head_hidden_size if with_head else None,
                    sg_num_layers=cfg.dni.head_num_layers, aux_head=cfg.method == "dni_aux",
                    sg_input=cfg.dni.head_input, symbols=m.symbols, aux_in_target=bool(cfg.dni.aux_in_target),
                    sg_rank=int(cfg.dni.head_rank), lstm_kernel=m.lstm_kernel,
                    sg_average=float(cfg.dni.head_average), sg_ridge=float(cfg.dni.ridge_decay),
                    sg_calibration=float(cfg.dni.calibration_decay), sg_average_use=str(cfg.dni.head_average_use),
                    sg_ridge_use=str(cfg.dni.ridge_use), sg_ridge_select=bool(cfg.dni.ridge_select))


def load_run(run_dir, which: str = "best", device: str = "auto"):
    """A saved run's (config, model on `device`, checkpoint payload): the one loader for eval and sample."""
    from . import checkpoint as ckpt

    path = Path(run_dir) / f"{which}.pt"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not an lmdni run (no {which}.pt)")
    payload = ckpt.load(path)
    try:
        cfg = OmegaConf.create(upgrade(payload["config"]))
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
    if distributed.enabled and cfg.model.name == "hierarchical":
        raise ConfigError("model=hierarchical trains in one process (no data-parallel runs yet)")
    task = build_task(cfg, distributed, corpus)
    seed_everything(cfg.seed)
    model = build_model(cfg, task.vocab_size).to(device)
    return Trainer(cfg, model, task, out_dir, device, build_window(cfg, model, device, distributed), distributed)


def build_window(cfg, model, device, distributed):
    """The model's window procedure (lmdni.window), with the DNI boundary unless method=bptt."""
    from .boundary import Boundary
    from .speed import configure_tf32
    from .window import TruncatedWindow

    tc = cfg.trainer
    configure_tf32(bool(tc.tf32), device)
    if cfg.model.name == "hierarchical":
        from .hierarchical_training import two_timescale_window

        boundary = Boundary.from_config(cfg, device, None) if cfg.method != "bptt" else None
        return two_timescale_window(cfg, model, boundary)
    boundary = Boundary.from_config(cfg, device, model.synthetic_gradient) if cfg.method != "bptt" else None
    skip = None
    if tc.on_nonfinite == "skip":  # costs a sync per window; collective, so that all ranks skip the same window
        skip = lambda loss_sum: distributed.any(not bool(torch.isfinite(loss_sum)), device)  # noqa: E731
    return TruncatedWindow(model, boundary, device, str(tc.precision), bool(tc.compile), skip)


def compose_config(overrides=(), name: str = "train", with_hydra: bool = False):
    """The run config `lmdni-train OVERRIDES...` would use, for scripts and tests (`with_hydra`: with Hydra's own
    node, e.g. the run dir). Inside a Hydra app (a sweep's job) it composes with the app's own search path."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from .config import config_dir

    register_schema()
    if GlobalHydra.instance().is_initialized():
        return compose(name, list(overrides), return_hydra_config=with_hydra)
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        return compose(name, list(overrides), return_hydra_config=with_hydra)


def evaluate_run(run_dir: Path, split="test", which="best", data_root=None, device="auto", columns=1) -> dict:
    """lmdni-eval: the BPC of a saved run's checkpoint on a split of its corpus (`columns` 1: the whole split)."""
    cfg, model, payload = load_run(run_dir, which, device)
    if not payload.get("vocab"):
        raise CheckpointError(f"{run_dir} was trained on a generated task ({cfg.data.name}), not text: "
                              f"its results are in results.json")
    if data_root is not None:
        cfg.data.root = data_root
    corpus = load_corpus(cfg.data)
    if corpus.vocab != payload["vocab"]:
        raise CheckpointError(f"the data's vocabulary differs from the one {run_dir}/{which}.pt was trained on")
    device = next(model.parameters()).device
    nats, count = split_nats(model, getattr(corpus, split), columns, device=device)
    return {"run_dir": str(run_dir), "checkpoint": which, "split": split, "columns": columns, "chars": count,
            "bpc": bits_per_character(nats, count), "trained_chars": payload["chars"]}
