import os
from pathlib import Path

# Triton kernels run on CPU tensors under the interpreter; it must be set before any kernel module is imported.
if os.environ.get("LMDNI_TEST_DEVICE", "cpu") == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from lmdni.cli import config_dir  # noqa: E402

PTB_DIR = Path(os.environ.get("LMDNI_TEST_PTB", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ptb"))


@pytest.fixture
def ptb_dir():
    if not (PTB_DIR / "ptb.train.txt").is_file():
        pytest.skip(f"PTB word-level files not found in {PTB_DIR} (set LMDNI_TEST_PTB)")
    return PTB_DIR


@pytest.fixture
def text_file(tmp_path):
    """A small deterministic corpus with structure an LSTM can pick up."""
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"]
    g = torch.Generator().manual_seed(0)
    picks = torch.randint(len(words), (3000,), generator=g).tolist()
    path = tmp_path / "corpus.txt"
    path.write_text(" ".join(words[i] for i in picks) + "\n", encoding="utf-8")
    return path


def compose(overrides=()):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        return hydra_compose(config_name="train", overrides=list(overrides))
