"""text8 and enwik8: where the files come from, their checks, the standard split and the symbol sets, on small
generated files shaped like the real ones (the real ones are 100M characters; the split sizes are parameters)."""
import hashlib
import zipfile

import pytest
import torch

from lmdni.data import load_corpus, wikipedia
from lmdni.errors import DataError

from .conftest import compose


def text8_like(size=3000, seed=0):
    """a-z and spaces, no newline, like text8."""
    g = torch.Generator().manual_seed(seed)
    letters = torch.randint(27, (size,), generator=g)
    return bytes((32 if int(i) == 26 else 97 + int(i)) for i in letters)


def enwik8_like():
    """XML, UTF-8 text and a few control bytes, like the start of enwik8."""
    text = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.3/">\n  <page>\n    <title>Æsop</title>\n'
            '    <text xml:space="preserve">Ελληνικά, 日本語 &amp; naïve [[links]]\t</text>\n  </page>\n')
    return (text * 40).encode("utf-8")


@pytest.fixture
def pinned(monkeypatch):
    """Pin the expected checksum to a fixture's own (the real values stay in wikipedia.DATASETS)."""
    def pin(name, content):
        algorithm = wikipedia.DATASETS[name]["hash"][0]
        digest = hashlib.new(algorithm, content).hexdigest()
        monkeypatch.setitem(wikipedia.DATASETS, name, {**wikipedia.DATASETS[name], "hash": (algorithm, digest)})
    return pin


def config(name, root, valid, test, download=False):
    return compose([f"data={name}", f"data.root={root}", f"data.valid_chars={valid}", f"data.test_chars={test}",
                    f"data.download={str(download).lower()}"]).data


def test_the_published_checksums_are_written_down():
    assert wikipedia.DATASETS["enwik8"]["hash"] == ("md5", "a1fa5ffddb56f4953e226637dabbb36a")
    assert wikipedia.DATASETS["text8"]["hash"][1] == "6e890197040d37d85beb962ae1f041ff1d9a9ca8d20c7d99c85027eebf51dca7"
    assert wikipedia.SIZE == 100_000_000 and wikipedia.VALID_CHARS == wikipedia.TEST_CHARS == 5_000_000
    assert compose(["data=text8"]).data.valid_chars == 5_000_000 == compose(["data=enwik8"]).data.test_chars
    # a 5M-character validation pass costs about as much as training on 1M: these data sets evaluate less often
    assert compose(["data=enwik8"]).trainer.eval_every == 10_000_000 == compose(["data=text8"]).trainer.eval_every
    assert compose(["data=text8", "trainer.eval_every=500"]).trainer.eval_every == 500


def test_text8_split_arithmetic_and_27_symbols(tmp_path, pinned):
    content = text8_like()
    (tmp_path / "text8").write_bytes(content)
    pinned("text8", content)
    corpus = load_corpus(config("text8", tmp_path, 300, 300))
    assert corpus.vocab == [" "] + [chr(c) for c in range(97, 123)] and corpus.vocab_size == 27
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (2400, 300, 300)
    assert corpus.train.dtype == torch.uint8  # 100M characters stay 100 MB
    decoded = "".join(corpus.vocab[i] for i in torch.cat([corpus.train, corpus.valid, corpus.test]).tolist())
    assert decoded.encode() == content  # the first chars train, then valid, then test, nothing lost or reordered


def test_enwik8_reads_raw_bytes_from_its_zip(tmp_path, pinned):
    content = enwik8_like()
    with zipfile.ZipFile(tmp_path / "enwik8.zip", "w") as archive:
        archive.writestr("enwik8", content)
    pinned("enwik8", content)
    corpus = load_corpus(config("enwik8", tmp_path, 500, 700))
    assert corpus.vocab == [chr(b) for b in sorted(set(content))]  # the bytes that occur, in byte order
    assert any(ord(s) >= 128 for s in corpus.vocab)  # UTF-8 is read as bytes, not characters
    ids = torch.cat([corpus.train, corpus.valid, corpus.test])
    assert bytes(ord(corpus.vocab[i]) for i in ids.tolist()) == content
    assert (len(corpus.valid), len(corpus.test)) == (500, 700)
    assert (tmp_path / "enwik8").read_bytes() == content  # extracted once, next to the zip


def test_a_corrupted_copy_and_a_missing_file_are_one_line_errors(tmp_path, pinned):
    content = text8_like()
    pinned("text8", content)
    with pytest.raises(DataError, match="missing .*text8: put text8 or text8.zip"):
        load_corpus(config("text8", tmp_path, 300, 300))
    (tmp_path / "text8").write_bytes(content[:-1])
    with pytest.raises(DataError, match="checksum mismatch"):
        load_corpus(config("text8", tmp_path, 300, 300))
    (tmp_path / "text8").write_bytes(content)
    with pytest.raises(DataError, match="cannot hold"):
        load_corpus(config("text8", tmp_path, 2000, 1000))


def test_offline_download_names_the_files_to_put_where(tmp_path, monkeypatch):
    import pooch

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(pooch, "retrieve", offline)
    (tmp_path / "cache").mkdir()
    with pytest.raises(DataError) as error:
        load_corpus(config("enwik8", tmp_path / "cache", 5, 5, download=True))
    message = str(error.value)
    assert "could not be downloaded" in message and "enwik8.zip" in message and str(tmp_path / "cache") in message
    assert len(message.splitlines()) == 1


def test_training_and_evaluation_read_uint8_ids(tmp_path, pinned):
    content = text8_like(4000)
    (tmp_path / "text8").write_bytes(content)
    pinned("text8", content)
    from lmdni.run import build_trainer

    cfg = compose(["method=dni", "data=text8", f"data.root={tmp_path}", "data.valid_chars=400",
                   "data.test_chars=400", "model.hidden_size=12", "model.embedding_size=6", "trainer.batch_size=4",
                   "trainer.unroll=3", "trainer.max_chars=240", "trainer.eval_every=120", "trainer.eval_batch_size=4",
                   "device=cpu", "trainer.progress=false"])
    from lmdni.metrics import MetricsLog

    trainer = build_trainer(cfg, tmp_path / "run")
    (tmp_path / "run").mkdir()
    result = trainer.train(MetricsLog(tmp_path / "run" / "metrics.jsonl"))
    assert 0 < result["test_bpc"] < 8 and result["valid_bpc"] > 0
