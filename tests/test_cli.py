"""The command line as a user meets it: a tiny training run, its outputs, lmdni-eval, and one-line errors."""
import json
import os
import subprocess
import sys

import pytest

from lmdni.metrics import read_metrics

from .conftest import compose

TINY = ["model.hidden_size=16", "model.embedding_size=8", "trainer.batch_size=4", "trainer.unroll=4",
        "trainer.max_chars=2000", "trainer.eval_every=1000", "trainer.eval_batch_size=4", "threads=1"]


def run(args, **kw):
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=300, **kw)


@pytest.mark.parametrize("method", ["bptt", "dni"])
def test_train_writes_metrics_checkpoints_and_eval_reads_them(tmp_path, text_file, method):
    out = tmp_path / "run"
    result = run(["lmdni", f"method={method}", "data=text", f"data.path={text_file}", *TINY, f"hydra.run.dir={out}"])
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_metrics(out / "metrics.jsonl")
    assert [r["chars"] for r in records] == [1008, 2000]
    for key in ("chars", "seconds", "train_bpc", "valid_bpc", "chars_per_sec"):
        assert all(key in r for r in records)
    if method == "dni":
        assert all("sg_loss" in r and "sg_cosine" in r for r in records)
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["best_valid_bpc"] == min(r["valid_bpc"] for r in records)
    environment = results["environment"]  # what made the run (lmdni.environment), also the log's top
    import torch

    assert environment["torch"] == torch.__version__ and environment["threads"] == 1
    assert environment["device"] == "cpu" and environment["cpu"] and environment["cpu_capability"]
    assert len(environment["lmdni_commit"] or "0" * 40) == 40 and "lmdni_clean" in environment
    assert "environment: lmdni" in (out / "cli.log").read_text()
    # what results.json and lmdni-eval report carries the state across the whole split; columns are the other mode
    evaluated = run(["lmdni.cli_eval", str(out)])
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["bpc"] == pytest.approx(results["test_bpc"], rel=1e-6)
    assert json.loads(evaluated.stdout)["columns"] == 1
    columns = run(["lmdni.cli_eval", str(out), "--columns", "4"])
    assert json.loads(columns.stdout)["bpc"] == pytest.approx(results["test_bpc_columns"], rel=1e-6)
    assert results["test_bpc_columns"] != results["test_bpc"]
    valid = run(["lmdni.cli_eval", str(out), "--split", "valid"])
    assert json.loads(valid.stdout)["bpc"] == pytest.approx(results["valid_bpc"], rel=1e-6)


@pytest.mark.parametrize("overrides,message", [
    (["trainer.unroll=0"], "trainer.unroll must be an integer >= 1"),
    (["model.hidden_size=0"], "model.hidden_size must be an integer >= 1"),
    (["trainer.batch_size=100000"], "batch size 100000 is larger than the stream allows"),
    (["method=nope"], "method must be one of"),
    (["data.path=/nonexistent/file.txt"], "does not exist"),
    (["trainer.precision=fp16"], "trainer.precision must be fp32 or bf16"),
    (["trainer.compile=maybe"], "trainer.compile=maybe: Value 'maybe' is not a valid bool"),
    (["model.symbols=ternary"], "model.symbols must be embedding or binary"),
    (["dni.aux_in_target=maybe"], "dni.aux_in_target=maybe: Value 'maybe' is not a valid bool"),
    (["trainer.on_nonfinite=ignore"], "trainer.on_nonfinite must be stop or skip"),
    (["dni.fused=yes"], "dni.fused must be one of auto, on, off"),
    (["trainer.weight_decay=-0.1"], "trainer.weight_decay must be a non-negative number or null"),
    (["data.valid_fraction=0"], "must each be in (0, 1)"),
    (["data.test_fraction=0.0001"], "too small"),
])
def test_bad_input_is_one_line_error(tmp_path, text_file, overrides, message):
    args = ["lmdni", "data=text", f"data.path={text_file}", *TINY, f"hydra.run.dir={tmp_path / 'r'}", *overrides]
    result = run(args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_of_a_directory_that_is_not_a_run(tmp_path):
    result = run(["lmdni.cli_eval", str(tmp_path)])
    assert result.returncode != 0 and "is not an lmdni run" in result.stderr and "Traceback" not in result.stderr


def test_config_composes_with_the_stable_names():
    cfg = compose(["method=dni", "trainer.unroll=8", "dni.scale=0.3", "dni.lr=0.001", "data=text",
                   "data.path=x.txt", "model.num_layers=2", "trainer.max_chars=10", "seed=3", "device=cpu"])
    assert (cfg.method, cfg.trainer.unroll, cfg.dni.scale, cfg.data.name) == ("dni", 8, 0.3, "text")


@pytest.mark.parametrize("method", ["bptt", "dni"])
def test_resume_is_bitwise_identical_to_an_uninterrupted_run(tmp_path, text_file, method):
    import torch

    common = ["lmdni", f"method={method}", "data=text", f"data.path={text_file}", *TINY, "model.dropout=0.2",
              "model.num_layers=2", "dni.lr=0.01"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run([*common, "trainer.max_chars=4000", f"hydra.run.dir={whole}"]).returncode == 0
    assert run([*common, "trainer.max_chars=2000", f"hydra.run.dir={parts}"]).returncode == 0
    resumed = run([*common, "trainer.max_chars=4000", f"hydra.run.dir={parts}"])
    assert resumed.returncode == 0 and "resuming from" in resumed.stderr + resumed.stdout
    a, b = torch.load(whole / "last.pt", weights_only=True), torch.load(parts / "last.pt", weights_only=True)
    assert a["chars"] == b["chars"] == 4000
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert torch.equal(a["state"], b["state"])
    drop = ("seconds", "chars_per_sec", "peak_rss_mb")
    strip = lambda records: [{k: v for k, v in r.items() if k not in drop} for r in records]  # noqa: E731
    assert strip(read_metrics(whole / "metrics.jsonl")) == strip(read_metrics(parts / "metrics.jsonl"))


def test_copy_task_reports_longest_solved(tmp_path):
    out = tmp_path / "copy"
    result = run(["lmdni", "data=copy", "method=dni_aux", "model.hidden_size=16", "model.embedding_size=8",
                  "trainer.batch_size=4", "trainer.max_chars=3000", "trainer.eval_every=1000", "threads=1",
                  f"hydra.run.dir={out}"])
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    records = read_metrics(out / "metrics.jsonl")
    assert [r["chars"] for r in records] == [1008, 2000, 3008]  # windows of 4 × 4 symbols
    assert results["task"] == "copy" and results["chars"] == 3008
    # the curriculum starts at length 1; Copy's level is always one above the longest length solved
    assert results["length"] == results["solved"] + 1
    assert {k: results[k] for k in ("length", "solved")} == {k: records[-1][k] for k in ("length", "solved")}
    assert all(r["aux_loss"] > 0 and r["error_bits_per_episode"] > 0 for r in records[1:])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    text = root / "corpus.txt"
    text.write_text("the cat sat on the mat and the dog ran far away\n" * 60, encoding="utf-8")
    for method in ("bptt", "dni"):
        result = run(["lmdni", f"method={method}", "data=text", f"data.path={text}", *TINY,
                      f"hydra.run.dir={root / method}"])
        assert result.returncode == 0, result.stderr[-1500:]
    return root


def test_compare_table_and_plots(two_runs, tmp_path):
    result = run(["lmdni.compare", str(two_runs), "--target", "100", "--out", str(tmp_path), "--per-run"])
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| bptt") or line.startswith("| dni")]
    assert len(rows) == 2 and "| 4 |" in rows[0]
    assert "1,008" in rows[0]  # reaches the (trivial) target at the first evaluation
    for name in ("valid_bpc_vs_chars.png", "valid_bpc_vs_seconds.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    # the target taken from a run (its best valid BPC) and the ratios to a reference run, on these tiny runs
    ratios = run(["lmdni.compare", str(two_runs), "--target", "bptt", "--reference", "bptt", "--out", str(tmp_path)])
    assert ratios.returncode == 0, ratios.stderr
    bptt_row = next(line for line in ratios.stdout.splitlines() if line.startswith("| bptt"))
    assert bptt_row.rstrip().endswith("| 1.00 | 1.00 |") and "chars ratio to bptt" in ratios.stdout


def test_sample_is_reproducible_and_rejects_unknown_characters(two_runs):
    args = ["lmdni.sample", str(two_runs / "dni"), "--prime", "the ", "--length", "30", "--seed", "3",
            "--top-k", "5"]
    first, second = run(args), run(args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and first.stdout.startswith("the ") and len(first.stdout) == 4 + 30 + 1
    bad = run(["lmdni.sample", str(two_runs / "dni"), "--prime", "XYZ"])
    assert bad.returncode != 0 and "never saw" in bad.stderr and "Traceback" not in bad.stderr


def test_sample_of_a_ptb_model_prints_spaces_for_underscores(two_runs, tmp_path):
    """PTB writes spaces as `_`: a PTB model reads the prime's spaces as `_` and prints `_` as a space (--raw: not)."""
    import torch

    payload = torch.load(two_runs / "dni" / "best.pt", weights_only=True)
    payload["config"]["data"] = {"name": "ptb", "root": None, "download": False}
    payload["vocab"] = ["_" if s == " " else s for s in payload["vocab"]]
    ptb = tmp_path / "ptb_like"
    ptb.mkdir()
    torch.save(payload, ptb / "best.pt")
    args = ["lmdni.sample", str(ptb), "--prime", "the cat ", "--length", "60", "--seed", "1"]
    readable = run(args)
    assert readable.returncode == 0, readable.stderr
    assert readable.stdout.startswith("the cat ") and "_" not in readable.stdout and readable.stdout.count(" ") > 2
    raw = run([*args, "--raw"])  # display only: the prime's spaces are read as `_` either way
    assert raw.returncode == 0 and raw.stdout.startswith("the_cat_") and " " not in raw.stdout
    assert raw.stdout.replace("_", " ") == readable.stdout  # the same sample, only spelled differently
    for flag, value in (("--temperature", "-1"), ("--length", "-5"), ("--top-k", "-2")):
        bad = run([*args, flag, value])
        assert bad.returncode == 2 and f"{flag} must be >= 0, got {value}" in bad.stderr


def test_eval_data_errors_name_its_own_flag(two_runs, tmp_path):
    import torch

    payload = torch.load(two_runs / "bptt" / "best.pt", weights_only=True)
    payload["config"]["data"] = {"name": "ptb", "root": None, "download": False}
    (tmp_path / "ptb_run").mkdir()
    torch.save(payload, tmp_path / "ptb_run" / "best.pt")
    result = run(["lmdni.cli_eval", str(tmp_path / "ptb_run"), "--data-root", str(tmp_path / "typo")])
    assert result.returncode == 2 and f"--data-root {tmp_path / 'typo'} is not a folder" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "typo").exists()


def test_train_help_is_lmdnis_own(tmp_path):
    result = run(["lmdni", "--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: lmdni-train") and "Hydra" not in result.stdout.split("\n")[0]
    for name in ("method=bptt|dni|dni_aux", "trainer.unroll", "data=ptb", "examples:", "dni.scale"):
        assert name in result.stdout
    assert not (tmp_path / "outputs").exists()  # help runs nothing


def test_unknown_key_and_wrong_type_are_one_line_errors(tmp_path, text_file):
    base = ["lmdni", "data=text", f"data.path={text_file}", *TINY, f"hydra.run.dir={tmp_path / 'r'}"]
    unknown = run([*base, "trainer.unrol=4"])
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    assert unknown.stderr.strip().splitlines() == [unknown.stderr.strip()]  # one line
    assert "lmdni has no key trainer.unrol (did you mean trainer.unroll?)" in unknown.stderr
    wrong = run([*base, "trainer.unroll=four"])
    assert wrong.returncode != 0 and "trainer.unroll=four" in wrong.stderr and "converted to Integer" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1


def test_checkpoint_of_another_model_shape_is_refused(two_runs):
    result = run(["lmdni.cli_eval", str(two_runs / "bptt"), "--data-root", "x"])
    assert result.returncode == 0, result.stderr  # text data ignores data.root
    assert json.loads(result.stdout)["bpc"] > 0
    import torch

    payload = torch.load(two_runs / "bptt" / "best.pt", weights_only=True)
    payload["config"]["model"]["hidden_size"] = 32
    bad = two_runs / "bad_shape"
    bad.mkdir(exist_ok=True)
    torch.save(payload, bad / "best.pt")
    for program in ("lmdni.cli_eval", "lmdni.sample"):  # one loader, one error
        refused = run([program, str(bad)])
        assert refused.returncode != 0 and "does not match the configured model" in refused.stderr
        assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_sigterm_saves_and_exits_nonzero(tmp_path, text_file):
    import signal
    import time

    out = tmp_path / "term"
    args = [sys.executable, "-m", "lmdni", "data=text", f"data.path={text_file}", *TINY,
            "trainer.max_chars=100000000", f"hydra.run.dir={out}"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline:  # training is under way
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "interrupted at" in stderr and "to resume" in stderr and "Traceback" not in stderr
    import torch

    import re

    saved = torch.load(out / "last.pt", weights_only=True)
    interrupted_at = int(re.search(r"interrupted at ([\d,]+) characters", stderr).group(1).replace(",", ""))
    assert saved["chars"] == interrupted_at  # saved at the interruption itself, not at the last evaluation


@pytest.mark.parametrize("method", ["bptt", "dni"])
def test_torchrun_two_processes_match_one_process(tmp_path, text_file, method):
    """Data parallel on CPU (gloo): 2 ranks × 4 columns train like 1 process × 8 columns."""
    import torch

    common = [f"method={method}", "data=text", f"data.path={text_file}", "model.hidden_size=16",
              "model.embedding_size=8", "trainer.batch_size=8", "trainer.unroll=4", "trainer.max_chars=1600",
              "trainer.eval_every=800", "trainer.eval_batch_size=4", "threads=1", "dni.lr=0.01"]
    single = run(["lmdni", *common, f"hydra.run.dir={tmp_path / 'one'}"])
    assert single.returncode == 0, single.stderr[-2000:]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "lmdni", *common, f"hydra.run.dir={tmp_path / 'two'}"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = read_metrics(tmp_path / "one" / "metrics.jsonl"), read_metrics(tmp_path / "two" / "metrics.jsonl")
    assert len(one) == len(two) == 2  # rank 0 alone wrote its metrics, once per evaluation
    for a, b in zip(one, two):
        assert a["chars"] == b["chars"]
        for key in ("train_bpc", "valid_bpc"):
            assert b[key] == pytest.approx(a[key], rel=1e-5)
    wa = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    wb = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    for key, value in wa["model"].items():
        torch.testing.assert_close(wb["model"][key], value, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(wb["state"], wa["state"], rtol=1e-4, atol=1e-5)  # all 8 columns gathered
    assert not list(tmp_path.glob("two/*rank*"))  # no duplicate run dirs


def test_resuming_a_run_of_another_shape_is_a_one_line_error(two_runs):
    result = run(["lmdni", "method=bptt", "data=text", f"data.path={two_runs / 'corpus.txt'}", *TINY,
                  "model.hidden_size=24", f"hydra.run.dir={two_runs / 'bptt'}"])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("lmdni-train: error: model.hidden_size: this run has 16, the command asks 24 — "
                                     "use a new run dir")


@pytest.mark.parametrize("preset,data", [("cpu_ptb", "ptb"), ("paper_ptb", "ptb"), ("paper_copy", "copy"),
                                         ("unroll_ptb", "ptb")])
def test_experiment_presets_compose(preset, data):
    cfg = compose([f"+experiment={preset}"])
    assert cfg.data.name == data and cfg.model.hidden_size >= 256


@pytest.mark.parametrize("arm,method,unroll", [("bptt_T8", "bptt", 8), ("bptt_T20", "bptt", 20),
                                              ("bptt_T40", "bptt", 40), ("dni_T8", "dni", 8), ("dni_aux_T8", "dni_aux", 8)])
def test_unroll_comparison_arms_set_method_and_unroll_and_keep_the_regime(arm, method, unroll):
    cfg = compose(["+experiment=unroll_ptb", f"+arm={arm}"])
    assert (cfg.method, cfg.trainer.unroll) == (method, unroll)
    assert (cfg.trainer.batch_size, cfg.model.hidden_size, cfg.trainer.max_chars) == (16, 256, 15_000_000)


@pytest.mark.parametrize("symbols", ["embedding", "binary"])
def test_copy_task_resumes_from_its_checkpoint(tmp_path, symbols):
    common = ["lmdni", "data=copy", "method=dni", "model.hidden_size=16", "model.embedding_size=8", f"model.symbols={symbols}",
              "trainer.batch_size=4", "trainer.eval_every=1000", "threads=1", f"hydra.run.dir={tmp_path / 'c'}"]
    assert run([*common, "trainer.max_chars=2000"]).returncode == 0
    resumed = run([*common, "trainer.max_chars=4000"])
    assert resumed.returncode == 0, resumed.stderr[-1500:]
    assert "resuming from" in resumed.stderr + resumed.stdout
    assert json.loads((tmp_path / "c" / "results.json").read_text())["chars"] == 4000


@pytest.mark.parametrize("task", ["copy", "repeat_copy"])
def test_copy_tasks_bring_their_settings_and_the_command_line_still_wins(task):
    assert compose([]).dni.scale == 0.1  # text: the PTB-chosen default
    assert compose([f"data={task}"]).dni.scale == 0.5
    assert compose([]).dni.aux_weight == 0.1 and compose([f"data={task}"]).dni.aux_weight == 0.05
    assert compose([f"data={task}", "dni.scale=0.2"]).dni.scale == 0.2
    assert compose(["+experiment=paper_copy"]).dni.scale == 0.5
    assert compose([f"data={task}"]).model.symbols == "binary" and compose([]).model.symbols == "embedding"
    assert compose([f"data={task}", "model.symbols=embedding"]).model.symbols == "embedding"
    assert compose([f"data={task}"]).trainer.unroll == compose([]).trainer.unroll  # nothing else moved


def test_copy_phase_bad_value_is_one_line_error(tmp_path):
    result = run(["lmdni", "data=copy", "data.phase=sideways", *TINY, f"hydra.run.dir={tmp_path / 'c'}"])
    assert result.returncode != 0 and "data.phase must be random or aligned" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_schema_types_every_key_and_the_yaml_holds_every_value():
    """conf/train.yaml fills every key of lmdni.config.RunSchema (the schema has no values of its own), and the
    schema rejects a key it does not know and a value of the wrong type."""
    from omegaconf import OmegaConf
    from hydra.errors import ConfigCompositionException

    cfg = compose([])
    assert OmegaConf.missing_keys(cfg) == set()
    for override in ("trainer.max_chars=lots", "dni.scale=high", "model.hidden_size=1.5", "trainer.progress=sometimes"):
        with pytest.raises(ConfigCompositionException):
            compose([override])
    assert compose(["trainer.lr=1"]).trainer.lr == 1.0 and compose(["trainer.max_seconds=60"]).trainer.max_seconds == 60


def test_tensorboard_logs_what_metrics_jsonl_holds_and_a_resume_adds_no_duplicates(tmp_path, text_file):
    """`logger=tensorboard`: every number of every metrics.jsonl record is a scalar at step `chars`; a run resumed
    from a checkpoint older than its last records (killed between writing them and the next checkpoint) logs each
    step once."""
    import shutil

    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    base = ["lmdni", "method=dni", "data=text", f"data.path={text_file}", *TINY, "trainer.eval_every=500",
            "logger=tensorboard", f"hydra.run.dir={out}"]
    first = run([*base, "trainer.max_chars=1000"])
    assert first.returncode == 0, first.stderr[-1500:]
    shutil.copy(out / "last.pt", tmp_path / "at_1000.pt")
    assert run([*base, "trainer.max_chars=2000"]).returncode == 0
    shutil.copy(tmp_path / "at_1000.pt", out / "last.pt")  # as if killed after logging 1,504 and 2,000
    again = run([*base, "trainer.max_chars=2000"])
    assert again.returncode == 0, again.stderr[-1500:]
    records = read_metrics(out / "metrics.jsonl")
    assert [r["chars"] for r in records] == [512, 1008, 1504, 2000]  # windows of 16 characters
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    for key in ("train_bpc", "valid_bpc", "best_valid_bpc", "sg_loss", "sg_cosine", "grad_norm", "chars_per_sec"):
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [r["chars"] for r in records], key
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in records], rel=1e-6), key
    assert "config" in events.Tags()["tensors"] or "config" in str(events.Tags())


def test_tensorboard_name_is_checked():
    from lmdni.config import validate
    from lmdni.errors import ConfigError

    with pytest.raises(ConfigError, match="logger must be tensorboard or null"):
        validate(compose(["logger=wandb"]))
