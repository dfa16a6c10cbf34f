"""The trainer's loop as a user relies on it: what it logs, when it stops, what it injects where, what it saves."""
import copy
import inspect

import pytest
import torch
from omegaconf import open_dict

from lmdni import trainer as trainer_module
from lmdni.errors import DivergenceError
from lmdni.metrics import MetricsLog, read_metrics
from lmdni.model import LSTMCore
from lmdni.resume import restore, snapshot

from .conftest import compose

# the tiny trainer: 400 symbols, 4 columns of 99 steps, unroll 3: 33 windows of 12 characters per pass


def test_the_head_input_has_one_default():
    library = inspect.signature(LSTMCore).parameters["sg_input"].default
    assert compose([]).dni.head_input == library == "squashed"


@pytest.mark.parametrize("method", ["bptt", "dni"])
def test_grad_norm_is_logged_before_clipping_with_or_without_clipping(tmp_path, tiny_trainer, method):
    norms = {}
    for clip in (0, 1.0, 1e-3):
        trainer = tiny_trainer(tmp_path / str(clip), method, [f"trainer.clip={clip}", "trainer.eval_every=12"])
        trainer.train_window()
        norms[clip] = float(trainer.interval.grad_norm)
    assert norms[0] > 0
    assert norms[0] == pytest.approx(norms[1.0], rel=1e-6) == pytest.approx(norms[1e-3], rel=1e-6)


def test_a_non_finite_aux_loss_stops_the_run(tmp_path, tiny_trainer):
    trainer = tiny_trainer(tmp_path, "dni_aux", ["trainer.max_chars=2000"])
    trainer.train_window()
    trainer.interval.aux_loss = torch.tensor(float("inf"))
    with pytest.raises(DivergenceError, match="non-finite auxiliary loss"):
        trainer._check_finite()


def test_an_interrupt_after_divergence_keeps_the_good_checkpoint(tmp_path, tiny_trainer):
    trainer = tiny_trainer(tmp_path, "dni", ["trainer.max_chars=2000"])
    metrics = MetricsLog(tmp_path / "metrics.jsonl")
    for _ in range(5):
        trainer.train_window()
    trainer.evaluate_and_save(metrics)
    good = torch.load(tmp_path / "last.pt", weights_only=True)
    with torch.no_grad():  # diverged between two finiteness checks (every 50 windows)
        trainer.model.lstm.weight_hh_l0[0, 0] = float("nan")
    trainer.request_stop()
    with pytest.raises(DivergenceError, match="not saved; the last good checkpoint"):
        trainer.train(metrics)
    kept = torch.load(tmp_path / "last.pt", weights_only=True)
    assert kept["chars"] == good["chars"] and torch.equal(kept["model"]["lstm.weight_hh_l0"],
                                                          good["model"]["lstm.weight_hh_l0"])


def spy_on_windows(monkeypatch, trainer):
    """Record, per window, the start state the core read and the gradient injected at the final state."""
    seen = []
    forward, backward = trainer.window.forward, trainer.window.boundary.backward

    def recording_forward(x, y, mask, start, with_sg):
        seen.append({"start": start.detach().clone()})
        return forward(x, y, mask, start, with_sg)

    def recording_backward(loss_sum, n_tokens, final_state, injected, extra=None):
        seen[-1]["injected"] = None if injected is None else injected.clone()
        return backward(loss_sum, n_tokens, final_state, injected, extra)

    monkeypatch.setattr(trainer.window, "forward", recording_forward)
    monkeypatch.setattr(trainer.window.boundary, "backward", recording_backward)
    return seen


def test_no_injection_at_the_end_of_a_pass_and_a_reset_at_its_start(tmp_path, tiny_trainer, monkeypatch):
    trainer = tiny_trainer(tmp_path, "dni", ["dni.scale=0.5", "dni.lr=0.01"])
    seen = spy_on_windows(monkeypatch, trainer)
    for _ in range(35):  # one pass is 33 windows
        trainer.train_window()
    injected = [w["injected"] is not None and bool(w["injected"].abs().sum() > 0) for w in seen]
    assert injected[32] is False and seen[32]["injected"] is None  # the pass's last window: no future
    assert all(injected[5:32]) and all(injected[33:])  # everywhere else the (trained) head's SG goes in
    assert torch.count_nonzero(seen[33]["start"]) == 0  # the next pass starts from zeros
    assert torch.count_nonzero(seen[32]["start"]) > 0


def test_shuffle_ablation_injects_another_columns_synthetic_gradient(tmp_path, tiny_trainer, monkeypatch):
    plain = tiny_trainer(tmp_path / "a", "dni", ["dni.scale=0.5", "dni.lr=0.01"])
    # dni.lr=0: the head stays as set below, so its prediction can be recomputed after the window
    shuffled = tiny_trainer(tmp_path / "b", "dni", ["dni.scale=0.5", "dni.lr=0", "dni.ablation=shuffle"])
    shuffled.model.load_state_dict(plain.model.state_dict())
    with torch.no_grad():
        torch.nn.init.normal_(shuffled.model.synthetic_gradient.output.weight, 0, 0.5)
    seen = spy_on_windows(monkeypatch, shuffled)
    torch.manual_seed(0)
    permuted = 0
    for _ in range(6):
        shuffled.train_window()
        window = seen[-1]
        with torch.no_grad():
            honest = 0.5 * shuffled.model.synthetic_gradient(shuffled.model.head_input(shuffled.state))
        # rows are the SGs of the columns' final states, in another order (same values, wrong state)
        assert sorted(window["injected"].sum(1).tolist()) == pytest.approx(sorted(honest.sum(1).tolist()), rel=1e-5)
        permuted += not torch.allclose(window["injected"], honest)
    assert permuted >= 4  # with 4 columns a random permutation is the identity 1 time in 24


@pytest.mark.parametrize("setting,reason", [("trainer.max_epochs=1", "epochs"),
                                            ("trainer.max_seconds=0.01", "time budget"),
                                            ("trainer.patience=0", "early stopping")])
def test_each_stop_condition_ends_the_run_and_says_why(tmp_path, tiny_trainer, setting, reason):
    trainer = tiny_trainer(tmp_path, "bptt", [setting, "trainer.eval_every=24", "trainer.max_chars=100000"])
    if reason == "early stopping":  # a learning rate of zero never improves on the first evaluation
        for group in trainer.optimizer.param_groups:
            group["lr"] = 0.0
    result = trainer.train(MetricsLog(tmp_path / "metrics.jsonl"))
    assert result["stop_reason"] == reason
    if reason == "epochs":
        assert result["chars"] == 33 * 12  # exactly one pass
    if reason == "early stopping":
        assert len(read_metrics(tmp_path / "metrics.jsonl")) == 2  # the first, then one without improvement
    assert result["chars"] < 100000


def test_mlp_head_starts_at_zero_learns_and_uses_the_reference_path(tmp_path, tiny_trainer):
    trainer = tiny_trainer(tmp_path, "dni", ["dni.head_hidden_size=16", "dni.scale=0.5", "dni.lr=0.01",
                                             "dni.fused=auto"], periodic=True)
    head = trainer.model.synthetic_gradient
    assert not head.is_linear and len(head.hidden) == 2 and not trainer.window.boundary.fused
    assert torch.count_nonzero(head(torch.randn(5, trainer.model.state_size))) == 0
    cosines = []
    for _ in range(300):
        before = float(trainer.interval.sg_cosine)
        trainer.train_window()
        if trainer.step % 10 == 1:  # the cosine to its target is sampled every 10th window
            cosines.append(float(trainer.interval.sg_cosine) - before)
    assert torch.count_nonzero(head(torch.randn(5, trainer.model.state_size))) > 0
    assert cosines[0] == 0.0 and sum(cosines[-5:]) / 5 > 0.3  # it learns to point where its target points


@pytest.mark.parametrize("method,extra", [("bptt", []), ("dni_aux", []), ("dni", ["dni.scale=0.5"])])
def test_resuming_an_interrupt_mid_interval_logs_what_an_uninterrupted_run_logs(tmp_path, tiny_trainer, method, extra):
    settings = ["trainer.eval_every=120", "trainer.max_chars=360", "dni.lr=0.01", "model.dropout=0.1", *extra]
    (tmp_path / "whole").mkdir(), (tmp_path / "parts").mkdir()
    whole = tiny_trainer(tmp_path / "whole", method, settings)
    whole.train(MetricsLog(tmp_path / "whole" / "metrics.jsonl"))

    first = tiny_trainer(tmp_path / "parts", method, settings)
    original = first.train_window

    def stop_after_seven():
        original()
        if first.step == 17:  # mid-interval: evaluations fall after windows 10, 20 and 30
            first.request_stop()

    first.train_window = stop_after_seven
    with pytest.raises(trainer_module.Interrupted):
        first.train(MetricsLog(tmp_path / "parts" / "metrics.jsonl"))
    second = tiny_trainer(tmp_path / "parts", method, settings)
    restore(second, torch.load(tmp_path / "parts" / "last.pt", weights_only=True))
    second.train(MetricsLog(tmp_path / "parts" / "metrics.jsonl"))

    drop = ("seconds", "chars_per_sec", "peak_rss_mb")
    strip = lambda path: [{k: v for k, v in r.items() if k not in drop} for r in read_metrics(path)]  # noqa: E731
    assert strip(tmp_path / "parts" / "metrics.jsonl") == strip(tmp_path / "whole" / "metrics.jsonl")
    assert len(read_metrics(tmp_path / "whole" / "metrics.jsonl")) == 3


def test_the_task_decides_what_is_evaluated_what_is_better_and_what_is_reported(tmp_path, tiny_trainer):
    """The trainer asks its task (lmdni.tasks): here one whose score is higher-is-better picks best.pt and early
    stopping, fills metrics.jsonl and results.json, and the trainer knows nothing of it."""
    import math

    from lmdni.tasks import TextTask
    from lmdni.trainer import Trainer

    class Scripted(TextTask):
        best_initial = -math.inf

        def __init__(self, corpus, stream):
            super().__init__(corpus, stream, 4)
            self.scores = iter([3.0, 1.0, 7.0, 2.0, 5.0, 0.0])

        def evaluate(self, model, device):
            score = next(self.scores)
            return {"score": score}, score

        better = staticmethod(lambda score, best: score > best)
        best_fields = staticmethod(lambda best: {"best_score": best})
        describe = staticmethod(lambda record: f"score {record['score']}")

        def results(self, model, best, device):
            return {"best_score": best}, f"best score {best}"

    base = tiny_trainer(tmp_path, "dni", ["trainer.eval_every=24", "trainer.max_chars=120", "trainer.patience=10"])
    trainer = Trainer(base.cfg, base.model, Scripted(base.task.corpus, base.stream), tmp_path, base.device, base.window)
    result = trainer.train(MetricsLog(tmp_path / "metrics.jsonl"))
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["score"] for r in records] == [3.0, 1.0, 7.0, 2.0, 5.0]
    assert [r["best_score"] for r in records] == [3.0, 3.0, 7.0, 7.0, 7.0]
    assert "valid_bpc" not in records[0] and "sg_loss" in records[0]
    assert result["best_score"] == 7.0 and result["best_chars"] == 72 and trainer.bad_evals == 2
    assert torch.load(tmp_path / "best.pt", weights_only=True)["chars"] == 72


def test_the_trainer_has_no_task_specific_code():
    source = inspect.getsource(trainer_module)
    for word in ("curriculum", "copy", "solved", "valid_bpc", "corpus"):
        assert word not in source.lower(), word


def test_a_checkpoint_with_the_heads_adam_apart_resumes_exactly(tmp_path, tiny_trainer):
    """Checkpoints that stored the SG head's Adam as `sg_optimizer` load into the one optimizer's second group."""
    trained = tiny_trainer(tmp_path / "a", "dni", ["dni.lr=0.01"])
    for _ in range(5):
        trained.train_window()
    payload = copy.deepcopy(snapshot(trained))  # not the live tensors
    combined = payload["optimizer"]
    core_ids = combined["param_groups"][0]["params"]
    head_group = combined["param_groups"][1]
    offset = len(core_ids)
    old = {**payload,
           "optimizer": {"state": {i: combined["state"][i] for i in core_ids},
                         "param_groups": [combined["param_groups"][0]]},
           "sg_optimizer": {"state": {i - offset: combined["state"][i] for i in head_group["params"]},
                            "param_groups": [{**head_group, "params": [i - offset for i in head_group["params"]]}]}}
    resumed = tiny_trainer(tmp_path / "b", "dni", ["dni.lr=0.01"])
    restore(resumed, old)
    assert resumed.optimizer.param_groups[1]["lr"] == 0.01
    for _ in range(3):
        trained.train_window()
        resumed.train_window()
    for a, b in zip(trained.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("method,overrides,decay", [
    ("bptt", [], 0.0), ("dni", [], 0.0), ("dni_aux", [], 0.01),        # null (the default): the method's own
    ("bptt", ["trainer.weight_decay=0.2"], 0.2), ("dni_aux", ["trainer.weight_decay=0"], 0.0),  # a value wins
])
def test_weight_decay_default_is_the_methods_own(tmp_path, tiny_trainer, method, overrides, decay):
    """`trainer.weight_decay: null` gives DNI+Aux 0.01 (its aux loss grows the core's weights) and BPTT and plain DNI
    plain Adam; a number applies to every method. A config saved without the key is read as plain Adam."""
    from omegaconf import OmegaConf

    from lmdni.config import upgrade, weight_decay

    trainer = tiny_trainer(tmp_path, method, overrides)
    assert trainer.optimizer.param_groups[0]["weight_decay"] == decay
    assert all(group.get("weight_decay", 0) == 0 for group in trainer.optimizer.param_groups[1:])  # the SG head
    old = trainer.cfg.copy()
    with open_dict(old.trainer):
        del old.trainer["weight_decay"]
    assert weight_decay(OmegaConf.create(upgrade(OmegaConf.to_container(old)))) == 0.0


def test_weight_decay_shrinks_the_core_and_leaves_the_sg_head(tmp_path, tiny_trainer):
    """`trainer.weight_decay`: decoupled (AdamW) decay of the core (DNI+Aux's aux head included), none on the SG
    head. With every gradient zero Adam's step is zero, so one step multiplies each core weight by exactly
    1 - lr·decay and leaves the SG head as it was."""
    trainer = tiny_trainer(tmp_path, "dni_aux", ["trainer.weight_decay=0.5", "trainer.lr=0.02"])
    model = trainer.model
    torch.nn.init.normal_(model.synthetic_gradient.output.weight)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    trainer.optimizer.step()
    for name, p in model.named_parameters():
        factor = 1.0 if name.startswith("synthetic") else 1 - 0.02 * 0.5
        torch.testing.assert_close(p.detach(), before[name] * factor, rtol=1e-6, atol=0)
