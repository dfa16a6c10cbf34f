import os
from pathlib import Path

# Triton kernels run on CPU tensors under the interpreter; it must be set before any kernel module is imported.
if os.environ.get("LMDNI_TEST_DEVICE", "cpu") == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


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
    from lmdni.run import compose_config

    return compose_config(overrides)


def make_tiny_trainer(tmp_path, method, overrides=(), periodic=False):
    """A Trainer on a 400-symbol random (or periodic) corpus of 7 symbols: hidden 12, batch 4, unroll 3, CPU."""
    from lmdni.data import Corpus
    from lmdni.run import build_trainer

    if not any(o.startswith("device=") for o in overrides):
        overrides = [*overrides, "device=cpu"]
    cfg = compose([f"method={method}", "trainer.unroll=3", "trainer.batch_size=4", "model.hidden_size=12",
                   "model.embedding_size=6", "trainer.progress=false", *overrides])
    g = torch.Generator().manual_seed(3)
    train = torch.arange(400) * 3 % 7 if periodic else torch.randint(7, (400,), generator=g)
    corpus = Corpus([chr(97 + i) for i in range(7)], train,
                    torch.randint(7, (50,), generator=g), torch.randint(7, (50,), generator=g))
    return build_trainer(cfg, tmp_path, corpus=corpus)


@pytest.fixture
def tiny_trainer():
    """The factory `make_tiny_trainer(tmp_path, method, overrides=(), periodic=False)`."""
    return make_tiny_trainer


def assert_resume_equals_straight(make, windows: int = 8) -> None:
    """`make(name)` builds a trainer: one run straight for `windows` windows and one stopped halfway, its
    `state_dict()` loaded into a fresh trainer that finishes, end with the same model, bit for bit."""
    straight = make("straight")
    for _ in range(windows):
        straight.train_window()
    first = make("first")
    for _ in range(windows // 2):
        first.train_window()
    resumed = make("resumed")
    resumed.load_state_dict(first.state_dict())
    for _ in range(windows - windows // 2):
        resumed.train_window()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key

