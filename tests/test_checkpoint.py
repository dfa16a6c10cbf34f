import pytest
import torch

from lmdni import checkpoint as ckpt
from lmdni.errors import CheckpointError


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.save(path, {"step": 1, "w": torch.ones(3)})

    def dies_mid_write(obj, handle):
        handle.write(b"partial bytes of a checkpoint")
        raise KeyboardInterrupt  # a signal or a crash in the middle of torch.save

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(path, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    assert ckpt.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        ckpt.load(path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        ckpt.load(tmp_path / "absent.pt")


def test_compile_prefixes_are_stripped():
    assert list(ckpt.strip_compile_prefix({"_orig_mod.lstm.weight": 1})) == ["lstm.weight"]
