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
    umask = os.umask(0)
    os.umask(umask)
    # mkstemp makes the file private (0600); the file it replaces keeps its mode, a new one gets the usual one
    os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~umask)
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


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def load_model_state(model, state_dict: dict) -> None:
    """`model.load_state_dict`, with a mismatch told in one line that names the first keys and shapes that differ
    (torch's own message spreads them over many lines after a colon)."""
    own = model.state_dict()
    missing = [key for key in own if key not in state_dict]
    unexpected = [key for key in state_dict if key not in own]
    shapes = [f"{key} {tuple(state_dict[key].shape)} vs {tuple(own[key].shape)}" for key in own
              if key in state_dict and hasattr(state_dict[key], "shape") and state_dict[key].shape != own[key].shape]
    parts = [f"{label} {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}"
             for label, items in (("missing", missing), ("unexpected", unexpected), ("shape (saved vs model)", shapes))
             if items]
    if parts:
        raise CheckpointError("; ".join(parts))
    model.load_state_dict(state_dict)
