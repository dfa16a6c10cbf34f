"""text8 and enwik8 (Matt Mahoney's Wikipedia extracts), with the standard character-level splits.

Both files are 100,000,000 bytes: the first 90M train, the next 5M valid, the last 5M test (as in the published
character-level results: AWD-LSTM, Transformer-XL, ...). text8 is 27 symbols (a-z and space); enwik8 is raw bytes,
its vocabulary the bytes that occur in the file (each shown as the character of that code point, latin-1).

100M characters are never a Python list: the file is read straight into a uint8 tensor, symbols are mapped to ids
by a 256-entry lookup table, and the ids stay uint8 (the trainer reads windows as int64). Where the file comes
from: `data.root`, else $LMDNI_DATA, else the per-user cache (`~/.cache/lmdni/NAME`), the extracted file or its
zip; downloaded there (the zip, then extracted) on first use; checked against the published size and checksum.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .files import data_root, ensure, verify

SIZE = 100_000_000
VALID_CHARS = TEST_CHARS = 5_000_000
# The checksum of the extracted file. enwik8: the md5 Mahoney publishes with the file (mattmahoney.net/dc/text.html).
# text8: Mahoney publishes the size only; the sha256 is the one recorded by users of the same zip.
DATASETS = {
    "text8": {"url": "http://mattmahoney.net/dc/text8.zip", "member": "text8", "archive": "text8.zip",
              "hash": ("sha256", "6e890197040d37d85beb962ae1f041ff1d9a9ca8d20c7d99c85027eebf51dca7")},
    "enwik8": {"url": "http://mattmahoney.net/dc/enwik8.zip", "member": "enwik8", "archive": "enwik8.zip",
               "hash": ("md5", "a1fa5ffddb56f4953e226637dabbb36a")},
}


def _extract(archive: Path, member: str, target: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zipped, zipped.open(member) as source:
            partial = target.with_suffix(".partial")
            with open(partial, "wb") as out:
                for block in iter(lambda: source.read(1 << 22), b""):
                    out.write(block)
            partial.replace(target)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"{archive} is not the {member} zip ({exc}); delete it and fetch it again") from None


def _download(name: str, root: Path) -> None:
    import pooch

    spec = DATASETS[name]
    try:  # the archive itself has no published checksum; the extracted file's is checked below
        pooch.retrieve(spec["url"], known_hash=None, fname=spec["archive"], path=root, progressbar=False)
    except Exception as exc:  # offline, DNS, HTTP: say plainly what to put where
        raise DataError(f"{name} is not in {root} and could not be downloaded ({type(exc).__name__}). Put "
                        f"{spec['member']} or {spec['archive']} ({spec['url']}) in {root}, or point data.root / "
                        f"LMDNI_DATA at the folder that holds it") from None


def locate(name: str, root: str | Path | None = None, download: bool = True) -> Path:
    """The verified extracted file: found, extracted from its zip, or downloaded and extracted."""
    spec = DATASETS[name]
    root = data_root(root, name)
    path, archive = root / spec["member"], root / spec["archive"]
    if not path.exists():
        ensure(archive, download, lambda: _download(name, root),
               f"missing {path}: put {spec['member']} or {spec['archive']} ({spec['url']}) in {root}, "
               f"or point data.root / LMDNI_DATA at the folder that holds it")
        _extract(archive, spec["member"], path)
    algorithm, expected = spec["hash"]
    verify(path, expected, algorithm)
    return path


def split_bytes(data: torch.Tensor, valid: int = VALID_CHARS, test: int = TEST_CHARS):
    """The standard split: the last `test` characters test, the `valid` before them valid, the rest train."""
    if len(data) <= valid + test + 1:
        raise DataError(f"{len(data):,} characters cannot hold a {valid:,}-character valid and a {test:,}-character "
                        f"test split and still leave training text")
    end = len(data) - test
    return data[: end - valid], data[end - valid: end], data[end:]


def load_bytes_corpus(name: str, root=None, download: bool = True, valid: int = VALID_CHARS,
                      test: int = TEST_CHARS):
    """(vocab, train, valid, test): ids as uint8 tensors, the vocabulary the symbols that occur, in byte order."""
    path = locate(name, root, download)
    raw = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
    present = torch.bincount(raw, minlength=256) > 0
    codes = torch.nonzero(present).flatten()
    lookup = torch.zeros(256, dtype=torch.uint8)
    lookup[codes] = torch.arange(len(codes), dtype=torch.uint8)
    ids = raw  # mapped in place, in slices: an int64 index of all 100M at once would be 800 MB
    for start in range(0, len(raw), 1 << 22):
        ids[start: start + (1 << 22)] = lookup[raw[start: start + (1 << 22)].long()]
    vocab = [chr(int(c)) for c in codes]
    return (vocab, *split_bytes(ids, valid, test))
