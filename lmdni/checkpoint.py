"""Checkpoints: plain state dicts and the resolved config, written atomically (temp file, fsync, rename), so a
process killed mid-save leaves the previous checkpoint intact."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from .errors import CheckpointError


def atomic_write_bytes(path: Path, write) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(path: Path, payload: dict) -> None:
    atomic_write_bytes(path, lambda handle: torch.save(payload, handle))


def save_json(path: Path, payload: dict) -> None:
    atomic_write_bytes(path, lambda handle: handle.write((json.dumps(payload, indent=2) + "\n").encode()))


def load(path: Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from None


def strip_compile_prefix(state_dict: dict) -> dict:
    """torch.compile wraps modules as `_orig_mod`; checkpoints never carry that prefix."""
    return {key.replace("_orig_mod.", ""): value for key, value in state_dict.items()}
