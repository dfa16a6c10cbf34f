"""Any UTF-8 text file as a character corpus, split contiguously into train / valid / test."""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError


def load_text_chars(path: str | Path | None, valid_fraction: float, test_fraction: float) -> dict[str, list[str]]:
    if not path:
        raise DataError("data=text needs data.path=FILE (a UTF-8 text file)")
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"text corpus {path} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"text corpus {path} is not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    return split_text(text, valid_fraction, test_fraction, f"text corpus {path}")


def split_text(text: str, valid_fraction: float, test_fraction: float, name: str) -> dict[str, list[str]]:
    # validation chooses the best checkpoint and the test split is what results.json reports: neither may be empty
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise DataError(f"data.valid_fraction={valid_fraction} and data.test_fraction={test_fraction} must each be "
                        f"in (0, 1) and leave something to train on")
    n = len(text)
    n_valid, n_test = int(n * valid_fraction), int(n * test_fraction)
    n_train = n - n_valid - n_test
    # Each split needs at least two characters: one to read and one to predict.
    if min(n_train, n_valid, n_test) < 2:
        raise DataError(f"{name} is too small ({n} characters) for the requested split: train "
                        f"{n_train}, valid {n_valid}, test {n_test} characters (each needs at least 2)")
    return {
        "train": list(text[:n_train]),
        "valid": list(text[n_train:n_train + n_valid]),
        "test": list(text[n_train + n_valid:]),
    }
