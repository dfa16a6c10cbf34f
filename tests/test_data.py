import shutil

import pytest
import torch

from lmdni.data import build_corpus, eval_columns, TrainStream
from lmdni.data.ptb import EXPECTED_CHARS, load_ptb_chars, words_to_chars
from lmdni.data.text import load_text_chars
from lmdni.errors import ConfigError, DataError


def test_ptb_char_counts_and_symbols(ptb_dir):
    splits = load_ptb_chars(ptb_dir, download=False)
    assert {k: len(v) for k, v in splits.items()} == EXPECTED_CHARS
    corpus = build_corpus(splits)
    assert corpus.vocab_size == 50 and "_" in corpus.vocab and "\n" in corpus.vocab
    assert len(corpus.train) == 5_017_482


def test_ptb_char_files_are_read_byte_for_byte(ptb_dir, tmp_path):
    """Writing the standard ptb.char.* format and reading it back gives the same symbols."""
    splits = load_ptb_chars(ptb_dir, download=False)
    for split, symbols in splits.items():
        (tmp_path / f"ptb.char.{split}.txt").write_text(" ".join(symbols) + " ", encoding="utf-8")
    assert load_ptb_chars(tmp_path, download=False) == splits


def test_corrupted_ptb_is_refused_with_checksums(ptb_dir, tmp_path):
    for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
        shutil.copy(ptb_dir / name, tmp_path / name)
    path = tmp_path / "ptb.valid.txt"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as info:
        load_ptb_chars(tmp_path, download=False)
    message = str(info.value)
    assert "ptb.valid.txt" in message and "aa0affc06ff7c36e977d7cd49e3839bf" in message and "\n" not in message


def test_missing_ptb_offline_names_the_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="ptb.train.txt, ptb.valid.txt and ptb.test.txt"):
        load_ptb_chars(tmp_path / "empty", download=False)


def test_a_data_root_that_does_not_exist_is_an_error_and_is_not_made(tmp_path, monkeypatch):
    """A folder the user names must exist (a typo is not made into a new folder); the default cache is made."""
    import platformdirs

    for root, env in ((tmp_path / "typo" / "ptb", None), (None, tmp_path / "typo2")):
        if env:
            monkeypatch.setenv("LMDNI_DATA", str(env))
        with pytest.raises(DataError, match="is not a folder"):
            load_ptb_chars(root, download=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.delenv("LMDNI_DATA")
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda name: str(tmp_path / "cache"))
    with pytest.raises(DataError, match="ptb.train.txt, ptb.valid.txt and ptb.test.txt"):
        load_ptb_chars(None, download=False)


def test_word_to_char_rule():
    assert words_to_chars([" a bc \n", "d\n"]) == ["a", "_", "b", "c", "\n", "d", "\n"]


def test_text_corpus_split_and_unknown_characters(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("ab" * 45 + "abcz" * 5, encoding="utf-8")
    splits = load_text_chars(path, 0.1, 0.1)
    assert sum(len(s) for s in splits.values()) == 110
    corpus = build_corpus(splits)
    assert corpus.vocab[-1] == "<unk>"  # c and z never occur in training
    assert (corpus.test == corpus.vocab.index("<unk>")).sum() > 0


@pytest.mark.parametrize("content,message", [(b"", "too small"), (b"\xff\xfe\x00bad", "not valid UTF-8")])
def test_text_corpus_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_text_chars(path, 0.05, 0.05)


def test_text_corpus_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_text_chars(tmp_path / "absent.txt", 0.05, 0.05)


def test_train_stream_columns_windows_and_restarts():
    data = torch.arange(25)
    stream = TrainStream(data, batch_size=3, unroll=3)  # 24 predictions → 3 columns of 8
    windows = [stream.next_window() for _ in range(4)]
    x0, y0, starts, ends, mask = windows[0]
    assert starts and not ends and mask is None
    assert x0[:, 0].tolist() == [0, 1, 2] and x0[:, 1].tolist() == [8, 9, 10]
    assert torch.equal(y0, x0 + 1)
    assert windows[1][0][:, 0].tolist() == [3, 4, 5]  # the column continues
    assert windows[2][0].shape[0] == 2 and windows[2][3]  # short last window ends the pass
    assert windows[3][2] and stream.epoch == 1  # and the next one restarts it


def test_train_stream_rejects_impossible_shapes():
    with pytest.raises(ConfigError, match="batch size"):
        TrainStream(torch.arange(5), batch_size=10, unroll=2)
    with pytest.raises(ConfigError, match="unroll"):
        TrainStream(torch.arange(50), batch_size=2, unroll=0)


@pytest.mark.parametrize("n,batch", [(2, 4), (101, 7), (100, 1), (64, 8)])
def test_eval_columns_predict_every_character_once(n, batch):
    data = torch.arange(n)
    inputs, targets, tail_in, tail_tg = eval_columns(data, batch)
    predicted = torch.cat([targets.t().reshape(-1), tail_tg])
    assert predicted.tolist() == list(range(1, n))  # in stream order, each once
    assert torch.equal(torch.cat([inputs.t().reshape(-1), tail_in]), data[:-1])


def test_download_failure_is_one_clear_sentence(tmp_path, monkeypatch):
    """No network here: every mirror fails, and the error names the files and the folder (no traceback chain)."""
    import pooch

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    import platformdirs

    monkeypatch.setattr(pooch, "retrieve", offline)
    monkeypatch.delenv("LMDNI_DATA", raising=False)
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda name: str(tmp_path / "cache"))  # the default cache
    with pytest.raises(DataError) as info:
        load_ptb_chars(None, download=True)
    message = str(info.value)
    assert "could not be downloaded (ConnectionError)" in message and str(tmp_path / "cache" / "ptb") in message
    assert "\n" not in message


def test_packaging_asks_for_the_torch_the_code_needs():
    """Fused Adam on CPU (torch 2.4) and torch.nn.utils.get_total_norm (torch 2.6) are used by the trainer."""
    import configparser
    import re
    from pathlib import Path

    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    requirement = next(line for line in config["options"]["install_requires"].split() if line.startswith("torch"))
    major, minor = map(int, re.fullmatch(r"torch>=(\d+)\.(\d+)", requirement).groups())
    assert (major, minor) >= (2, 6)
