"""A run dir belongs to one run: resumed from its own saved config, one process at a time, and nothing left behind
by a command that is refused."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from lmdni.metrics import read_metrics

from .test_cli import TINY, run

# long enough (about 2,500 windows) that a process can be caught mid-run
LONG = ["trainer.max_chars=40000", "trainer.eval_every=4000"]
TIMINGS = ("seconds", "chars_per_sec", "peak_rss_mb")


def files_of(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def metrics_without_timings(run_dir):
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in read_metrics(run_dir / "metrics.jsonl")]


def assert_same_run(a, b):
    """Bit for bit: weights, optimizer moments, carried state, every metric but the timings."""
    first, second = torch.load(a / "last.pt", weights_only=True), torch.load(b / "last.pt", weights_only=True)
    assert first["chars"] == second["chars"]
    for key, value in first["model"].items():
        assert torch.equal(value, second["model"][key]), key
    for index, state in first["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, second["optimizer"]["state"][index][name]), (index, name)
    assert torch.equal(first["state"], second["state"])
    assert metrics_without_timings(a) == metrics_without_timings(b)


def start(args):
    return subprocess.Popen([sys.executable, "-m", "lmdni", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "HYDRA_FULL_ERROR": "0"})


def wait_for(path, proc, timeout=120):
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    assert path.exists()


@pytest.fixture
def base(text_file):
    return [f"data.path={text_file}", "data=text", "method=dni", "dni.lr=0.01", *TINY]


def test_a_changed_config_is_refused_and_the_run_dir_is_untouched(tmp_path, base):
    out = tmp_path / "run"
    assert run(["lmdni", *base, f"hydra.run.dir={out}"]).returncode == 0
    before = files_of(out)
    assert (out / ".hydra" / "config.yaml").is_file() and (out / "cli.log").is_file()
    for asked, lines in [(["trainer.unroll=8", "trainer.lr=0.002"],
                          ["trainer.lr: this run has 0.001, the command asks 0.002 — use a new run dir",
                           "trainer.unroll: this run has 4, the command asks 8 — use a new run dir"]),
                         (["method=bptt"], ["method: this run has dni, the command asks bptt"]),
                         (["model=hierarchical"], ["model.name: this run has lstm, the command asks hierarchical"]),
                         (["trainer.resume=false"], ["trainer.resume: the command asks false"]),
                         (["+trainer.unrol=4"], ["lmdni has no key trainer.unrol (did you mean trainer.unroll?)"])]:
        result = run(["lmdni", *base, *asked, f"hydra.run.dir={out}"])
        assert result.returncode != 0 and "Traceback" not in result.stderr, asked
        for line in lines:
            assert line in result.stderr, (asked, result.stderr)
        assert all(line.startswith("lmdni-train: error: ") for line in result.stderr.strip().splitlines())
        assert files_of(out) == before, asked  # not a byte changed, .hydra/ and the log included


def test_the_run_dir_alone_resumes_an_interrupted_dni_run_bit_for_bit(tmp_path, base):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run(["lmdni", *base, *LONG, f"hydra.run.dir={whole}"]).returncode == 0
    proc = start([*base, *LONG, f"hydra.run.dir={parts}"])
    wait_for(parts / "last.pt", proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "interrupted at" in stderr  # stopped part way
    assert torch.load(parts / "last.pt", weights_only=True)["chars"] < 40000
    resumed = run(["lmdni", f"hydra.run.dir={parts}"])  # nothing but the run dir
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from last.pt" in resumed.stdout + resumed.stderr
    assert_same_run(whole, parts)
    assert (parts / ".hydra" / "config.yaml").read_text().count("method: dni") == 1


def test_extending_the_budget_on_resume_equals_a_straight_run(tmp_path, base):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run(["lmdni", *base, "trainer.max_chars=4000", f"hydra.run.dir={whole}"]).returncode == 0
    assert run(["lmdni", *base, "trainer.max_chars=2000", f"hydra.run.dir={parts}"]).returncode == 0
    extended = run(["lmdni", "trainer.max_chars=4000", f"hydra.run.dir={parts}"])
    assert extended.returncode == 0, extended.stderr[-2000:]
    assert_same_run(whole, parts)
    assert "max_chars: 4000" in (parts / ".hydra" / "config.yaml").read_text()  # the run as it is now


def test_a_second_process_on_a_busy_run_dir_is_refused(tmp_path, base):
    out = tmp_path / "busy"
    first = start([*base, *LONG, f"hydra.run.dir={out}"])
    wait_for(out / ".lock", first)
    began = time.time()
    second = run(["lmdni", *base, *LONG, f"hydra.run.dir={out}"])
    assert time.time() - began < 15
    assert second.returncode != 0 and f"in use by another lmdni-train (PID {first.pid})" in second.stderr
    assert first.wait(timeout=300) == 0
    chars = [r["chars"] for r in read_metrics(out / "metrics.jsonl")]
    assert chars == sorted(set(chars)) and len(chars) == 10  # each evaluation once


def test_a_run_killed_with_sigkill_resumes_at_once(tmp_path, base):
    whole, out = tmp_path / "whole", tmp_path / "killed"
    assert run(["lmdni", *base, *LONG, f"hydra.run.dir={whole}"]).returncode == 0
    proc = start([*base, *LONG, f"hydra.run.dir={out}"])
    wait_for(out / "last.pt", proc)
    proc.kill()
    proc.wait(timeout=60)
    resumed = run(["lmdni", f"hydra.run.dir={out}"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_run(whole, out)  # records written after the last checkpoint were dropped, then written again


@pytest.mark.parametrize("overrides,message", [
    (["method=dnii"], "method must be one of"),
    (["trainer.max_chars=-5"], "trainer.max_chars must be a positive number or null"),
    (["threads=0"], "threads must be an integer >= 1"),
    (["model=lstmm"], "model=lstmm: no such option; model: hierarchical, lstm"),
    (["data=ptbb"], "data=ptbb: no such option; data: copy, enwik8, lag, ptb, repeat_copy, text, text8"),
    (["+trainer.unrol=4"], "lmdni has no key trainer.unrol (did you mean trainer.unroll?)"),
    (["trainer.unrol=4"], "lmdni has no key trainer.unrol (did you mean trainer.unroll?)"),
    (["+data.pth=x"], "lmdni has no key data.pth (did you mean data.path?)"),
    (["+experiment=cpu_ptb"], "this preset is a sweep (method over bptt,dni,dni_aux): add -m to run it, or name "
                              "method"),  # the command names trainer.unroll already
    (["data.path=/nonexistent/file.txt"], "does not exist"),  # refused after Hydra made the run dir
])
def test_a_refused_command_leaves_no_folder(tmp_path, text_file, overrides, message):
    args = ["lmdni", "data=text", f"data.path={text_file}", *TINY, *overrides]
    for where in ([f"hydra.run.dir={tmp_path / 'a' / 'r'}"], []):  # a named run dir, and the dated default
        result = run([*args, *where], cwd=tmp_path)
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt"], where


def test_a_run_dir_that_is_a_file_is_one_line(tmp_path, text_file):
    (tmp_path / "taken").write_text("not a run")
    result = run(["lmdni", "data=text", f"data.path={text_file}", *TINY, f"hydra.run.dir={tmp_path / 'taken'}"])
    assert result.returncode != 0 and "is a file" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "taken").read_text() == "not a run"


@pytest.mark.parametrize("how", ["data.root", "LMDNI_DATA"])
def test_a_mistyped_data_root_is_not_created(tmp_path, how):
    missing = tmp_path / "nonexistent" / "ptb"
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    args = [sys.executable, "-m", "lmdni", *TINY, f"hydra.run.dir={tmp_path / 'r'}"]
    if how == "data.root":
        args.append(f"data.root={missing}")
    else:
        env["LMDNI_DATA"] = str(missing)
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode != 0 and f"{how} {missing} is not a folder" in result.stderr
    assert not (tmp_path / "nonexistent").exists() and not (tmp_path / "r").exists()


def test_the_log_names_the_run_dir_first_and_last(tmp_path, base):
    out = tmp_path / "named"
    result = run(["lmdni", *base, f"hydra.run.dir={out}"])
    assert result.returncode == 0
    lines = (out / "cli.log").read_text().strip().splitlines()
    assert f"run dir {out}: a new run" in lines[0] and lines[-1].endswith(f"run dir {out}")


def test_a_state_dict_mismatch_names_the_keys_and_shapes():
    from lmdni.checkpoint import load_model_state
    from lmdni.errors import CheckpointError
    from lmdni.model import LSTMCore

    small, large = LSTMCore(7, 8, 1, 4), LSTMCore(7, 12, 1, 4)
    shapes = "shape (saved vs model) decoder.weight (7, 8) vs (7, 12), lstm.weight_ih_l0 (32, 4) vs (48, 4), "
    with pytest.raises(CheckpointError, match=re.escape(shapes)):
        load_model_state(large, small.state_dict())
    state = small.state_dict()
    state.pop("decoder.bias")
    with pytest.raises(CheckpointError, match="missing decoder.bias"):
        load_model_state(small, state)


def test_ctrl_c_during_the_final_evaluation_stops_at_once(tmp_path):
    """The final whole-split evaluation says what it reads, and Ctrl-C there exits at once: the checkpoints are
    already saved."""
    import random

    rng = random.Random(0)
    corpus = tmp_path / "big.txt"
    corpus.write_text("".join(rng.choice("abcdefgh ") for _ in range(3_000_000)), encoding="utf-8")
    out = tmp_path / "run"
    proc = start(["data=text", f"data.path={corpus}", "data.valid_fraction=0.45", "data.test_fraction=0.45",
                  "model.hidden_size=64", "model.embedding_size=8", "trainer.batch_size=4", "trainer.unroll=4",
                  "trainer.max_chars=160", "trainer.eval_every=160", "trainer.eval_batch_size=512", "threads=1",
                  f"hydra.run.dir={out}"])
    for line in proc.stdout:
        if "evaluating best.pt on the whole valid and test splits (1,350,000 and 1,350,000 characters)" in line:
            break
    else:
        pytest.fail(proc.communicate()[1][-2000:])
    time.sleep(0.5)
    began = time.time()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert time.time() - began < 3, time.time() - began
    assert proc.returncode != 0 and "interrupted during the final evaluation" in stderr and "Traceback" not in stderr
    assert (out / "best.pt").is_file() and not (out / "results.json").exists()


def test_a_preset_swept_over_an_appended_key_is_one_run_once_every_key_is_named():
    """unroll_ptb sweeps `+arm` (a group appended with +): naming +arm and seed is one run of it."""
    from lmdni.errors import ConfigError
    from lmdni.preflight import sweep_needs_m

    params = {"+arm": "bptt_T8,dni_T8", "seed": "1,2"}
    sweep_needs_m(params, ["+experiment=unroll_ptb", "+arm=dni_T8", "seed=1"])
    with pytest.raises(ConfigError, match="name seed for one run"):
        sweep_needs_m(params, ["+experiment=unroll_ptb", "+arm=dni_T8"])
