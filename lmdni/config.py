"""The run config's schema and its validation: the one place that says which keys exist, their types and the values
they may take.

Types are a Hydra structured config (`RunSchema`, registered as `run_schema` and the first entry of conf/train.yaml's
defaults): a wrong type (`trainer.unroll=four`) fails when the config is composed. The values live in the YAML
files only (the schema has no defaults, so there is one source of truth for them, with their comments); `validate`
checks ranges and choices. The data group stays untyped: each data set has its own keys (conf/data/*.yaml), which
its loader or task checks.
"""
from __future__ import annotations

from dataclasses import field, make_dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, OmegaConf

from .errors import ConfigError

METHODS = ("bptt", "dni", "dni_aux")
HEAD_INPUTS = ("squashed", "raw")
LSTM_KERNELS = ("torch", "stepwise")  # lmdni.lstm
# where an averaged head (`dni.head_average`) stands in for the head itself: "both", the SG injected at the window's
# end and the one its bootstrapped target is formed with; "injection", the injected SG only (the core follows the
# smoothed head, the regression bootstraps from the head it trains); "target", the target's only (the actor-critic
# arrangement: the core follows the head, the head's target bootstraps from its lagging average)
AVERAGE_USES = ("both", "injection", "target")
# what a ridge solution (`dni.ridge_decay`) is: "head", the head itself, not stepped by Adam; "injection", a second
# weight set beside the Adam-trained head, injected and bootstrapped from, while the aux head predicts the head's SG
RIDGE_USES = ("head", "injection")

CHOICES = {
    "method": METHODS,
    "trainer.on_nonfinite": ("stop", "skip"),
    "trainer.precision": ("fp32", "bf16"),
    "dni.head_input": HEAD_INPUTS,
    "dni.ablation": ("none", "shuffle"),
    "dni.head_average_use": AVERAGE_USES,
    "dni.ridge_use": RIDGE_USES,
    "dni.fused": ("auto", "on", "off"),
}
POSITIVE_INTS = ("model.hidden_size", "model.embedding_size", "trainer.unroll", "trainer.batch_size",
                 "trainer.eval_every", "trainer.eval_batch_size", "dni.head_num_layers")
NON_NEGATIVE = ("trainer.lr", "trainer.weight_decay", "trainer.clip", "trainer.patience", "dni.lr", "dni.scale",
                "dni.aux_weight", "dni.head_hidden_size", "dni.head_rank", "dni.warmup_chars",
                "dni.head_average", "dni.ridge_decay", "dni.calibration_decay")
BUDGETS = ("trainer.max_chars", "trainer.max_epochs", "trainer.max_seconds")
NULLABLE = ("trainer.weight_decay", "model.slow_scale")  # null: the method's own decay (below); dni.scale
# trainer.weight_decay: null takes the method's own. DNI+Aux's aux loss pulls the core's weights to grow (on
# Repeat-Copy its SG target, and so its SG loss, grow with them for 20M characters and more); decoupled decay at 0.01
# stops that and keeps its lead on text; BPTT and plain DNI are as good or better without (docs/results/suite)
METHOD_WEIGHT_DECAY = {"bptt": 0.0, "dni": 0.0, "dni_aux": 0.01}
MODELS = {  # model.name -> (its own positive integers, its own non-negative numbers)
    "lstm": (("model.num_layers",), ("model.dropout",)),
    "hierarchical": (("model.slow_hidden_size", "model.slow_every", "model.message_size", "model.slow_windows"),
                     ("model.interface_scale", "model.slow_scale")),
}


def _schema(class_name: str, **types) -> type:
    """A structured-config dataclass of these typed keys, none with a value of its own (`MISSING`)."""
    return make_dataclass(class_name, [(key, kind, field(default=MISSING)) for key, kind in types.items()])


# each model config (conf/model/*.yaml) names its schema first in its defaults list
ModelSchema = _schema("ModelSchema", name=str, hidden_size=int, num_layers=int, embedding_size=int, dropout=float,
                      symbols=str, lstm_kernel=str)
HierarchicalSchema = _schema("HierarchicalSchema", name=str, hidden_size=int, embedding_size=int,
                             slow_hidden_size=int, slow_every=int, message_size=int, slow_windows=int,
                             interface_scale=float, slow_scale=Optional[float])
TrainerSchema = _schema(
    "TrainerSchema", unroll=int, batch_size=int, lr=float, weight_decay=Optional[float], clip=float,
    max_chars=Optional[int], max_epochs=Optional[int], max_seconds=Optional[float], eval_every=int,
    eval_batch_size=int, patience=int, on_nonfinite=str, resume=bool, progress=bool, precision=str, compile=bool,
    tf32=bool)
DNISchema = _schema(
    "DNISchema", scale=float, lr=float, head_input=str, head_hidden_size=int, head_num_layers=int,
    head_rank=int, head_average=float, head_average_use=str, ridge_decay=float, ridge_use=str, ridge_select=bool,
    calibration_decay=float, warmup_chars=int,
    aux_weight=float, aux_in_target=bool, ablation=str, fused=str)
RunSchema = _schema("RunSchema", method=str, seed=int, device=str, threads=Optional[int], logger=Optional[str],
                    model=Any, data=Any, trainer=TrainerSchema, dni=DNISchema)


# keys lmdni no longer has, and why: setting one is an error that says so; a checkpoint's config loses them
REMOVED = {"dni.loss_weight": "had no effect: the SG head has its own Adam, which is blind to its loss's scale "
                              "(it only rescaled the logged sg_loss)",
           "dni.target_windows": "was rejected by the suite (docs/results/suite)"}
# what a config saved by older code lacks, as that code ran it (the upgrade step of every saved config)
ABSENT_MEANT = {"model.name": "lstm", "model.symbols": "embedding", "model.lstm_kernel": "torch",
                "dni.head_input": "squashed", "dni.aux_in_target": False, "dni.head_rank": 0, "dni.head_average": 0.0,
                "dni.head_average_use": "both",
                "dni.ridge_decay": 0.0, "dni.ridge_use": "head", "dni.ridge_select": False,
                "dni.calibration_decay": 0.0, "dni.warmup_chars": 0,
                "dni.ablation": "none",
                "dni.fused": "auto",
                "trainer.weight_decay": 0.0, "trainer.precision": "fp32", "trainer.compile": False,
                "trainer.tf32": False, "trainer.on_nonfinite": "stop", "threads": None, "logger": None}
LSTM_ONLY = ("model.symbols", "model.lstm_kernel")


def upgrade(config: dict) -> dict:
    """A saved config (a checkpoint's) as today's code reads it: removed keys dropped, keys it lacks filled with
    what the code that wrote it did without them. The one place older runs are understood."""
    cfg = OmegaConf.create(config)
    for key in REMOVED:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent)
        if node is not None and leaf in node:
            node.pop(leaf)
    for key, value in ABSENT_MEANT.items():
        if key in LSTM_ONLY and cfg.model.get("name", "lstm") != "lstm":
            continue
        if OmegaConf.select(cfg, key, default="<absent>") == "<absent>":
            OmegaConf.update(cfg, key, value, force_add=True)
    if cfg.data.get("name") in ("copy", "repeat_copy") and "phase" not in cfg.data:
        cfg.data.phase = "random"
    return OmegaConf.to_container(cfg)


def config_dir() -> Path:
    """The Hydra configs: shipped inside the package when installed from a wheel, `conf/` in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError("lmdni's Hydra configs (train.yaml) are missing from the installation")


def register_schema() -> None:
    """Called before Hydra composes conf/train.yaml (lmdni.cli, lmdni.run.compose_config)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunSchema)
    store.store(group="model", name="lstm_schema", node=ModelSchema)
    store.store(group="model", name="hierarchical_schema", node=HierarchicalSchema)


def validate(cfg) -> None:
    """Ranges and choices (types were checked when the config was composed; this also serves configs read back
    from a checkpoint, which are untyped)."""
    model = cfg.model.name
    if model not in MODELS:
        raise ConfigError(f"model.name must be one of {', '.join(MODELS)}, got {model!r}")
    positive, non_negative = MODELS[model]
    for key in (*POSITIVE_INTS, *positive):
        value = OmegaConf.select(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be an integer >= 1, got {value!r}")
    for key in (*NON_NEGATIVE, *non_negative):
        value = OmegaConf.select(cfg, key)
        if value is None and key in NULLABLE:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            either = " or null" if key in NULLABLE else ""
            raise ConfigError(f"{key} must be a non-negative number{either}, got {value!r}")
    for key in BUDGETS:  # null: no such budget
        value = OmegaConf.select(cfg, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise ConfigError(f"{key} must be a positive number or null (no budget), got {value!r}")
    threads = cfg.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be an integer >= 1 or null (torch's default), got {threads!r}")
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            options = " or ".join(allowed) if len(allowed) == 2 else "one of " + ", ".join(allowed)
            raise ConfigError(f"{key} must be {options}, got {value!r}")
    for key in ("trainer.compile", "trainer.tf32", "dni.aux_in_target", "dni.ridge_select"):
        if not isinstance(OmegaConf.select(cfg, key), bool):
            raise ConfigError(f"{key} must be true or false, got {OmegaConf.select(cfg, key)!r}")
    if model == "lstm" and cfg.model.symbols not in ("embedding", "binary"):
        raise ConfigError(f"model.symbols must be embedding or binary, got {cfg.model.symbols!r}")
    if model == "lstm" and cfg.model.lstm_kernel not in LSTM_KERNELS:
        raise ConfigError(f"model.lstm_kernel must be torch or stepwise, got {cfg.model.lstm_kernel!r}")
    if model == "lstm" and cfg.model.lstm_kernel == "stepwise" and cfg.trainer.precision != "fp32":
        raise ConfigError("model.lstm_kernel=stepwise runs in fp32 (bf16 has nn.LSTM's own kernel: "
                          "model.lstm_kernel=torch)")
    if model == "hierarchical":
        validate_hierarchical(cfg)
    if cfg.dni.head_num_layers != 1 and cfg.dni.head_hidden_size == 0:
        raise ConfigError("dni.head_num_layers shapes an MLP head: set dni.head_hidden_size > 0 with it")
    if not cfg.dni.head_average < 1:
        raise ConfigError(f"dni.head_average is a decay per window, below 1 (0: no average), got "
                          f"{cfg.dni.head_average!r}")
    if cfg.dni.head_average_use != "both" and not cfg.dni.head_average > 0:
        raise ConfigError(f"dni.head_average_use={cfg.dni.head_average_use} says where the head's average is used: "
                          "set dni.head_average > 0 with it")
    if cfg.dni.head_average_use != "both" and cfg.dni.ablation != "none":
        raise ConfigError("dni.head_average_use=injection|target is not an ablation's control: use "
                          "dni.ablation=none with it")
    if not cfg.dni.ridge_decay < 1:
        raise ConfigError(f"dni.ridge_decay is a decay per window, below 1 (0: the head is fitted by Adam), got "
                          f"{cfg.dni.ridge_decay!r}")
    if cfg.dni.ridge_decay > 0 and (cfg.dni.head_hidden_size > 0 or cfg.dni.head_rank > 0
                                    or cfg.dni.head_average > 0 or cfg.dni.fused == "on"):
        raise ConfigError("dni.ridge_decay fits a full-rank linear head by ridge regression: not with "
                          "dni.head_hidden_size, dni.head_rank, dni.head_average or dni.fused=on")
    if cfg.dni.ridge_use != "head" and not cfg.dni.ridge_decay > 0:
        raise ConfigError(f"dni.ridge_use={cfg.dni.ridge_use} says what the ridge solution is: set dni.ridge_decay > 0 "
                          "with it")
    if cfg.dni.ridge_select and not cfg.dni.ridge_decay > 0:
        raise ConfigError("dni.ridge_select=true chooses the ridge solution's penalty: set dni.ridge_decay > 0 with it")
    if not cfg.dni.calibration_decay < 1:
        raise ConfigError(f"dni.calibration_decay is a decay per window, below 1 (0: the SG is injected as "
                          f"predicted), got {cfg.dni.calibration_decay!r}")
    if cfg.dni.calibration_decay > 0 and cfg.dni.head_average > 0:
        raise ConfigError("dni.calibration_decay calibrates the head's own predictions: not with dni.head_average")
    if cfg.dni.head_rank > 0 and cfg.dni.head_hidden_size > 0:
        raise ConfigError("dni.head_rank and dni.head_hidden_size exclude each other: a low-rank linear head or an MLP")
    if cfg.get("logger") not in (None, "tensorboard"):
        raise ConfigError(f"logger must be tensorboard or null, got {cfg.logger!r}")
    if cfg.device not in ("auto", "cpu", "cuda") and not str(cfg.device).startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {cfg.device!r}")


def weight_decay(cfg) -> float:
    """The core's decoupled weight decay: trainer.weight_decay, or where it is null the method's own."""
    value = cfg.trainer.weight_decay
    return float(METHOD_WEIGHT_DECAY[cfg.method] if value is None else value)


def validate_hierarchical(cfg) -> None:
    if cfg.trainer.unroll % cfg.model.slow_every:
        raise ConfigError(f"model=hierarchical: trainer.unroll ({cfg.trainer.unroll}) must be a multiple of "
                          f"model.slow_every ({cfg.model.slow_every}): a window holds whole slow ticks")
    if cfg.trainer.on_nonfinite != "stop":
        raise ConfigError("model=hierarchical stops on a non-finite loss (trainer.on_nonfinite=stop)")
    if cfg.dni.head_average > 0:
        raise ConfigError("model=hierarchical injects its heads' own SGs (dni.head_average > 0 is the LSTM core's)")
    if cfg.dni.ridge_decay > 0:
        raise ConfigError("model=hierarchical fits its heads by Adam (dni.ridge_decay > 0 is the LSTM core's)")
    if cfg.dni.calibration_decay > 0:
        raise ConfigError("model=hierarchical injects its heads' SGs as predicted (dni.calibration_decay > 0 is the "
                          "LSTM core's)")
    if cfg.dni.aux_in_target:
        raise ConfigError("model=hierarchical keeps the aux loss out of every head's target "
                          "(dni.aux_in_target=true is the LSTM core's)")
    if cfg.dni.fused == "on":
        raise ConfigError("model=hierarchical regresses its heads with autograd: the fused kernel (dni.fused=on) "
                          "serves the LSTM core's head")
    if cfg.trainer.precision != "fp32" or cfg.trainer.compile:
        raise ConfigError("model=hierarchical runs in fp32 without compile (trainer.precision=fp32, "
                          "trainer.compile=false)")
