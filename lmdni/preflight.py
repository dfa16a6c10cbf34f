"""What `lmdni-train` settles before Hydra writes anything: the command line is checked against the closed schema,
the config is validated, and the run dir is claimed (a new one, or an existing run resumed from its own saved config,
lmdni.rundir). Whatever is refused here is one message and leaves no byte behind.

Sweeps (`-m`) are checked per job, inside the job (lmdni.cli.train_task), with the same `claim_run`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from . import checkpoint as ckpt
from .config import REMOVED, upgrade, validate
from .errors import ConfigError
from .rundir import RunDir, asked_keys, check_run_dir, flatten, nearest_key, settle

PRESET_GROUPS = ("experiment", "arm")  # `+experiment=NAME`: sets many keys, each checked by the schema


@dataclass
class Prepared:
    """A claimed run: its dir, the config it trains with, and (resuming) the checkpoint it resumes from."""
    run_dir: Path
    cfg: object
    payload: dict | None
    claimed: RunDir | None
    started: bool = False


def config_groups() -> dict[str, list[str]]:
    from .config import config_dir

    root = config_dir()
    return {folder.name: sorted(p.stem for p in folder.glob("*.yaml")) for folder in root.iterdir() if folder.is_dir()}


def check_overrides(overrides) -> None:
    """A group option that does not exist lists every option; a key lmdni does not have (also with `+`, which Hydra
    would add) names the nearest one. Types are the schema's, checked when the config is composed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from .run import compose_config

    groups = config_groups()
    parsed = OverridesParser.create().parse_overrides([o for o in overrides if not o.startswith(("hydra", "+hydra"))])
    picks = []
    for override in parsed:
        name = override.key_or_group
        if name in groups:
            value = override.value()
            if not isinstance(value, str) or value not in groups[name]:
                raise ConfigError(f"{override.input_line}: no such option; {name}: {', '.join(groups[name])}")
            picks.append(override.input_line)
    known = flatten(OmegaConf.to_container(compose_config(picks), resolve=False))
    prefixes = {key.rsplit(".", i)[0] for key in known for i in range(key.count(".") + 1)}
    for override in parsed:
        name = override.key_or_group
        if name in REMOVED:
            raise ConfigError(f"{override.input_line}: lmdni no longer has {name}: it {REMOVED[name]}")
        if name not in groups and name not in prefixes:
            raise ConfigError(f"{override.input_line}: lmdni has no key {name}{nearest_key(name, known)}")


def claim_run(cfg, overrides, run_dir: Path) -> Prepared:
    """The run `cfg` (composed from `overrides`) makes in `run_dir`: a new run, or the resume of the run there. Rank
    0 (torchrun's RANK) takes the run dir's lock; every rank reads the same saved config."""
    from .run import compose_config, resolve_device

    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    last = run_dir / "last.pt"
    payload = ckpt.load(last) if last.is_file() else None
    if payload is not None:
        payload["config"] = upgrade(payload["config"])  # as today's code reads a config saved by older code
        keys = asked_keys(overrides, cfg, compose_config([]), set(config_groups()))
        saved_device = OmegaConf.create(payload["config"]).get("device", "auto")
        device_cfg = cfg.device if "device" in keys else saved_device
        cfg = settle(cfg, keys, payload, run_dir, resolve_device(str(device_cfg)).type)
    validate(cfg)
    claimed = RunDir.claim(run_dir) if int(os.environ.get("RANK", "0")) == 0 else None
    return Prepared(run_dir, cfg, payload, claimed)


def sweep_needs_m(params, overrides) -> None:
    """A preset that is a sweep (`+experiment=cpu_ptb`: method × unroll) runs as one with `-m`; without it, one run
    of it is asked for by naming each swept key, else it is one line (not a quiet single job of its first values)."""
    named = {o.split("=", 1)[0].lstrip("+") for o in overrides}
    open_keys = [key for key in params if key.lstrip("+") not in named]  # "+arm" is swept as "+arm"
    if open_keys:
        swept = ", ".join(f"{key} over {params[key]}" for key in open_keys)
        raise ConfigError(f"this preset is a sweep ({swept}): add -m to run it, or name "
                          f"{' and '.join(open_keys)} for one run of it")


def prepare(argv) -> Prepared:
    """Checks and claims for a single run (no `-m`), before Hydra makes or writes anything."""
    from .run import compose_config

    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    task_overrides = [o for o in overrides if not o.startswith(("hydra", "+hydra"))]
    check_overrides(task_overrides)
    composed = compose_config(overrides, with_hydra=True)
    sweep_needs_m(composed.hydra.sweeper.get("params") or {}, task_overrides)
    run_dir = Path(composed.hydra.run.dir)
    OmegaConf.set_struct(composed, False)
    composed.pop("hydra")
    return claim_run(composed, task_overrides, run_dir)
