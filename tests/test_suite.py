"""The robustness suite's parts: generated corpora with the structure they claim, the SG-fidelity probe, quick mode."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lmdni.data import TrainStream
from lmdni.data.generated import BRACKETS, lag_text, nested_text
from lmdni.fidelity import sg_fidelity
from lmdni.model import LSTMCore

ROOT = Path(__file__).resolve().parents[1]


def test_lag_text_closes_each_bracket_exactly_its_span_later_with_its_digit():
    spans = (8, 16, 32)
    text = lag_text(20_000, spans=spans, seed=3)
    assert len(text) == 20_000 and text == lag_text(20_000, spans=spans, seed=3)
    for (opener, closer), span in zip(BRACKETS, spans):
        openings = [m.start() for m in re.finditer(re.escape(opener), text)]
        assert len(openings) > 20_000 / span / 10
        for i in openings:
            if i + span + 1 < len(text):
                assert text[i + 1].isdigit() and text[i + span] == closer and text[i + span + 1] == text[i + 1]
        assert text.count(closer) in (len(openings), len(openings) - 1)


def test_nested_text_is_balanced_and_its_counters_count():
    text = nested_text(30_000, seed=1)
    pairs = {")": "(", "]": "[", "}": "{"}
    lines = text.split("\n")[:-1]  # the last line may be cut
    counters = [line for line in lines if line.startswith("<")]
    assert len(counters) > 50 and any(len(c) > 30 for c in counters)
    for line in counters:
        xs, ys = line[1:-1].split("|")
        assert set(xs) == {"x"} and set(ys) == {"y"} and len(xs) == len(ys)
    depths = []
    for line in lines:
        if line.startswith("<"):
            continue
        stack, in_quote = [], False
        for ch in line:
            if ch == '"':
                in_quote = not in_quote
            elif ch in "([{":
                stack.append(ch)
                depths.append(len(stack))
            elif ch in pairs:
                assert stack.pop() == pairs[ch]
        assert not stack and not in_quote
    assert max(depths) == 4


def probe_model(head_weight=0.0, seed=0):
    torch.manual_seed(seed)
    model = LSTMCore(7, 12, 1, embedding_size=6, sg_hidden_size=0).double()
    torch.nn.init.normal_(model.synthetic_gradient.output.weight, 0, head_weight) if head_weight else None
    return model


def stream(seed=0):
    data = torch.randint(7, (4000,), generator=torch.Generator().manual_seed(seed))
    return TrainStream(data, 4, 3)


def test_probe_of_a_zero_head_explains_nothing():
    rows = sg_fidelity(probe_model(), stream(), scale=0.5, horizons=(1, 2, 4), boundaries=3, warmup=4)
    for row in rows:
        assert row["cosine"] == 0 and row["norm_ratio"] == 0 and row["explained"] == pytest.approx(0, abs=1e-12)


def test_probe_true_gradient_is_the_discounted_future_loss_gradient():
    """With scale 0 only the next window counts, at every horizon; the probe's G_1 is the next window's summed-loss
    gradient at the boundary, computed here independently."""
    model = probe_model(head_weight=0.3)
    at_zero = sg_fidelity(model, stream(), scale=0.0, horizons=(1, 2, 4), boundaries=2, warmup=4)
    assert at_zero[0]["cosine"] == pytest.approx(at_zero[1]["cosine"]) == pytest.approx(at_zero[2]["cosine"])
    at_half = sg_fidelity(model, stream(), scale=0.5, horizons=(1, 4), boundaries=2, warmup=4)
    assert at_half[0]["cosine"] == pytest.approx(at_zero[0]["cosine"])
    assert at_half[1]["cosine"] != pytest.approx(at_zero[0]["cosine"])
    # independently: the first probed boundary follows 4 warm-up windows
    s = stream()
    state = model.initial_state(4)
    with torch.no_grad():
        for _ in range(4):
            state = model(s.next_window()[0], state, with_synthetic_gradient=False).state
    x, y, *_ = s.next_window()
    start = state.clone().requires_grad_(True)
    out = model(x, start, with_synthetic_gradient=False)
    true = torch.autograd.grad(F.cross_entropy(out.logits.reshape(-1, 7), y.reshape(-1), reduction="sum"), start)[0]
    predicted = model.synthetic_gradient(model.head_input(state))
    one = sg_fidelity(model, stream(), scale=0.0, horizons=(1,), boundaries=1, warmup=4)[0]
    assert one["cosine"] == pytest.approx(F.cosine_similarity(predicted, true, dim=1).mean().item(), rel=1e-9)
    assert one["norm_ratio"] == pytest.approx((predicted.norm() / true.norm()).item(), rel=1e-9)
    beta = ((predicted * true).sum() / predicted.pow(2).sum()).item()  # the regression coefficient of G on the SG
    assert one["calibration"] == pytest.approx(beta, rel=1e-9)


def test_quick_suite_runs_and_measures_gains_against_bptt(tmp_path):
    corpora = ["lag", "nested", "code", "prose", "copy", "repeat_copy"]
    ptb = os.environ.get("LMDNI_TEST_PTB")
    env = dict(os.environ)
    if ptb and (Path(ptb) / "ptb.train.txt").is_file():
        corpora.insert(0, "ptb")
        env["LMDNI_DATA"] = ptb
    table = tmp_path / "table.md"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "suite.py"), "--quick", "--out", str(tmp_path),
                             "--corpora", *corpora, "--table", str(table)], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split(" | ") for line in table.read_text().splitlines()[2:]]
    assert [(r[0].strip("| "), r[1]) for r in rows] == [(c, m) for c in corpora for m in ("bptt", "dni", "dni_aux")]
    records = json.loads((tmp_path / "summary.json").read_text())
    by = {(r["corpus"], r["setting"]): r for r in records}
    for corpus in corpora:
        if corpus in ("copy", "repeat_copy"):
            continue
        gain = by[corpus, "bptt"]["results"]["valid_bpc"] - by[corpus, "dni"]["results"]["valid_bpc"]
        row = next(r for r in rows if r[0].strip("| ") == corpus and r[1] == "dni")
        assert row[3] == f"{gain:+.4f}"  # one seed in quick mode
        assert len(by[corpus, "dni"]["fidelity"]) == 5 and "fidelity" not in by[corpus, "bptt"]


def test_suite_bad_setting_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "suite.py"), "--quick", "--out", str(tmp_path),
                             "--corpora", "lag", "--methods", "--setting", "odd=method=dni dni.nope=1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("suite: error: bad override for odd")


def test_suite_at_another_size_runs_it_in_runs_of_its_own(tmp_path):
    """`--hidden`/`--batch`: every run of the suite at that size, in run directories named by it, so that a run
    made at the default size is never reused for another."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "suite.py"), "--quick", "--out", str(tmp_path),
                             "--corpora", "lag", "--methods", "bptt", "--hidden", "12", "--batch", "4",
                             "--no-probe"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    record, = json.loads((tmp_path / "summary.json").read_text())
    assert record["run_dir"].endswith("bptt_T4_H12_B4_seed1")
    assert {"model.hidden_size=12", "trainer.batch_size=4"} <= set(record["overrides"])


def _tiny_copy_run(run_dir, *overrides):
    cmd = [sys.executable, "-m", "lmdni", "data=repeat_copy", "model.hidden_size=12", "trainer.batch_size=4",
           "trainer.unroll=3", "trainer.max_chars=600", "trainer.eval_every=300", "trainer.progress=false",
           "device=cpu", f"hydra.run.dir={run_dir}", *overrides]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]


def test_target_parts_of_a_head_that_never_learned_are_the_in_window_gradient_alone(tmp_path):
    """scripts/sg_target_parts.py: with `dni.lr=0` the SG head stays at its zero start, so the SG, the pulled-back
    part of the target and the core's gradient from the injected SG are exactly zero, and so is everything of the
    aux task (its target is that SG, its head starts at zero too); the in-window gradient is not."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from sg_target_parts import parts

    _tiny_copy_run(tmp_path / "frozen", "method=dni_aux", "dni.lr=0", "dni.aux_weight=1.0")
    row = parts(str(tmp_path / "frozen"), windows=6, columns=4, level=(2, 2), warmup=2)
    assert row["sg"] == row["pulled_back"] == row["grad_sg"] == 0.0 and row["sg_head"] == 0.0
    assert row["aux_head"] == row["grad_aux"] == 0.0
    assert row["in_window"] > 0 and row["grad_loss"] > 0 and row["lstm_hh"] > 0

    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "sg_target_parts.py"), str(tmp_path / "none")],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is not an lmdni run" in result.stderr.strip().splitlines()[-1]
