"""A run dir belongs to one run: its saved config is the run's identity, one process trains in it at a time, and a
command that is refused leaves nothing behind.

    lmdni-train ... hydra.run.dir=RUN      RUN holds last.pt?  no  -> a new run with the command's config
                                                              yes -> the saved config, plus what the command may
                                                                     change on a resume (RESUME_MAY_CHANGE); any
                                                                     other key the command asks is refused

"What the command asks" is every key it names (and the keys under it), every key a group option or preset it picks
sets (`data=copy` brings `dni.scale=0.5`), and the group's own keys: not the defaults it leaves alone, so that
`lmdni-train hydra.run.dir=RUN` alone resumes RUN as it was.
"""
from __future__ import annotations

import difflib
import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from .errors import CheckpointError, ConfigError

# what leaves a run's trajectory alone: its budget, how it is shown, where its (checksummed) data lives, and
# the device where the resume stays exact (same kind of device; checked apart)
RESUME_MAY_CHANGE = ("trainer.max_chars", "trainer.max_seconds", "trainer.max_epochs", "trainer.patience",
                     "trainer.progress", "logger", "threads", "device", "data.root")
LOCK_NAME = ".lock"


def flatten(node, prefix: str = "") -> dict:
    """{dotted key: leaf value} of a plain (container) config; lists are leaves."""
    if not isinstance(node, dict):
        return {prefix: node}
    if not node and prefix:
        return {prefix: node}
    leaves = {}
    for key, value in node.items():
        leaves.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return leaves


def _plain(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if not isinstance(cfg, dict) else cfg


def asked_keys(overrides, asked_cfg, default_cfg, groups) -> set[str]:
    """The keys a command line asks for (module docstring). `groups`: the config groups' names (model, data, ...)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    asked, default = flatten(_plain(asked_cfg)), flatten(_plain(default_cfg))
    keys = {key for key, value in asked.items() if default.get(key, object()) != value}
    for override in OverridesParser.create().parse_overrides([o for o in overrides if not o.startswith("hydra")]):
        name = override.key_or_group
        if name in groups and name not in ("model", "data"):  # a preset: the keys it sets differ from the defaults
            continue
        keys |= {key for key in asked if key == name or key.startswith(name + ".")}  # model=lstm: the group's keys
    return keys


def _shown(value) -> str:
    return "null" if value is None else str(value)


def saved_device_type(payload: dict) -> str:
    if payload.get("device"):
        return str(payload["device"]).split(":")[0]
    rngs = payload.get("rng") or [{}]
    return "cuda" if "cuda" in rngs[0] else "cpu"


def settle(asked_cfg, keys: set[str], payload: dict, run_dir: Path, device_type: str):
    """The config a resume of `run_dir` (its last.pt: `payload`) trains with, or ConfigError with one line per key
    the command asks that the run has otherwise. `device_type`: where the command would train (cpu, cuda)."""
    saved = flatten(payload["config"])
    asked = flatten(_plain(asked_cfg))
    refused = []
    if asked.get("trainer.resume") is False:
        refused.append(f"trainer.resume: the command asks false, but {run_dir} holds a run (last.pt) "
                       f"and would be started over")
    for key in sorted(keys):
        # a key the run's (older) config lacks takes the command's value, as the run then had today's default
        if key in RESUME_MAY_CHANGE or key == "trainer.resume" or key not in asked or key not in saved:
            continue
        if saved[key] != asked[key]:
            refused.append(f"{key}: this run has {_shown(saved[key])}, the command asks {_shown(asked[key])}")
    trained_on = saved_device_type(payload)
    if trained_on != device_type:
        refused.append(f"device: this run trained on {trained_on}, the command would train on {device_type} "
                       f"(a resume is exact only on the kind of device it began on)")
    if refused:
        raise ConfigError("\n".join(f"{line} — use a new run dir" for line in refused))
    # the saved values win; keys a config of older code lacks take today's (the command's) values
    merged = OmegaConf.merge(OmegaConf.create(_plain(asked_cfg)), OmegaConf.create(payload["config"]))
    for key in keys & set(RESUME_MAY_CHANGE):
        if key in asked:
            OmegaConf.update(merged, key, asked[key], force_add=True)
    return merged


def nearest_key(key: str, known) -> str:
    """' (did you mean X?)' for a mistyped key, or ''."""
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


class RunLock:
    """An advisory lock (flock) on RUN/.lock, held for the process's life: the kernel releases it when the process
    ends, however it ends, so a run killed with SIGKILL can be resumed at once. The holder's PID is in the file."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.handle = None

    def acquire(self) -> "RunLock":
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise CheckpointError(f"{self.path.parent} is in use by another lmdni-train (PID {holder}); "
                                  f"wait for it to finish or use a new run dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


@dataclass
class RunDir:
    """A run dir claimed by this process: `created` is the top folder this command made (removed again if the run
    is refused before it starts), None when it existed already."""
    path: Path
    created: Path | None
    lock: RunLock | None = None

    @classmethod
    def claim(cls, path: Path, lock: bool = True) -> "RunDir":
        path = Path(path)
        check_run_dir(path)
        created = next((p for p in reversed([path, *path.parents]) if not p.exists()), None)
        path.mkdir(parents=True, exist_ok=True)
        claimed = cls(path, created)
        try:
            claimed.lock = RunLock(path).acquire() if lock else None
        except CheckpointError:
            claimed.abandon()
            raise
        return claimed

    def abandon(self) -> None:
        """Undo the claim of a run that never started: the folders this command made go again (their parents only
        while empty: another run may have made one its home meanwhile)."""
        if self.lock is not None:
            self.lock.release()
        if self.created is None:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        for folder in self.path.parents:
            if not folder.is_relative_to(self.created):
                break
            try:
                folder.rmdir()
            except OSError:
                break


def check_run_dir(path: Path) -> None:
    for folder in (path, *path.parents):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"the run dir {path} cannot be made: {folder} is a file")
