"""Where downloaded data lives, and how a file is made present and checked: shared by every downloaded data set."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import DataError


def data_root(root, name: str) -> Path:
    """`data.root`, else `LMDNI_DATA`, else the per-user cache dir (where downloads go). Only the cache is made when
    it is missing: a folder the user named must exist, so that a typo is an error, not a new empty folder."""
    for source, value in (("data.root", root), ("LMDNI_DATA", os.environ.get("LMDNI_DATA"))):
        if value:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise DataError(f"{source} {path} is not a folder: make it, or point {source} at the folder that "
                                f"holds the data (only the default cache folder is created)")
            return path
    import platformdirs

    return Path(platformdirs.user_cache_dir("lmdni")) / name


def file_hash(path: Path, algorithm: str = "md5") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str, algorithm: str = "md5") -> None:
    actual = file_hash(path, algorithm)
    if actual != expected:
        raise DataError(f"checksum mismatch for {path}: expected {algorithm} {expected}, got {actual} "
                        f"(corrupted or truncated copy; delete it and fetch it again)")


def ensure(path: Path, download: bool, fetch, missing: str) -> None:
    """Make `path` exist: already there, or `fetch()` (a download into its folder) when allowed; else the one-line
    error `missing` (which file is missing, what to put where)."""
    if path.exists():
        return
    if not download:
        raise DataError(missing)
    path.parent.mkdir(parents=True, exist_ok=True)
    fetch()
