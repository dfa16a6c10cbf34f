"""`dni.calibration_decay`: the SG is injected times a gain in [0, 1], the least-squares scalar mapping the head's
held-out predictions onto their bootstrapped targets over recent windows."""
import pytest
import torch

from lmdni.boundary import update_calibration
from lmdni.errors import ConfigError
from lmdni.head import SyntheticGradientHead

from .conftest import assert_resume_equals_straight


def _trainer(tmp_path, tiny_trainer, decay, method="dni_aux", extra=()):
    # a head that learns fast, so that what it injects shows in a few windows
    return tiny_trainer(tmp_path, method, [f"dni.calibration_decay={decay}", "dni.scale=0.5", "dni.lr=0.02", *extra])


def _calibrated_head(decay):
    head = SyntheticGradientHead(6)
    head.keep_calibration(decay)
    return head


def test_the_gain_is_the_forgotten_least_squares_scalar():
    torch.manual_seed(0)
    head = _calibrated_head(0.5)
    pairs = [(torch.randn(10, 6), torch.randn(10, 6)) for _ in range(4)]
    pairs = [(p, 0.4 * p + 0.3 * y) for p, y in pairs]  # targets partly explained by the predictions
    for prediction, target in pairs:
        update_calibration(head, prediction, target)
    weights = [0.5 ** age for age in range(len(pairs))][::-1]
    product = sum(w * (p.double() * y.double()).sum() for w, (p, y) in zip(weights, pairs))
    square = sum(w * p.double().pow(2).sum() for w, (p, y) in zip(weights, pairs))
    assert float(head.gain) == pytest.approx(float(product / square), rel=1e-6)
    assert 0.2 < float(head.gain) < 0.6


@pytest.mark.parametrize("relation, expected", [("same", 1.0), ("double", 1.0), ("negated", 0.0), ("none", 0.0)])
def test_the_gain_is_one_for_a_head_that_predicts_its_target_and_zero_for_noise(relation, expected):
    torch.manual_seed(1)
    head = _calibrated_head(0.99)
    assert float(head.gain) == 0.0  # before any window: nothing is known, nothing injected
    for _ in range(200):
        prediction = torch.randn(32, 6)
        target = {"same": prediction, "double": 2 * prediction, "negated": -prediction,
                  "none": torch.randn(32, 6)}[relation]
        update_calibration(head, prediction, target)
    assert float(head.gain) == pytest.approx(expected, abs=0.05)


def _train(trainer, windows=8):
    for _ in range(windows):
        trainer.train_window()
    return trainer


def _assert_same_model(a, b):
    for key, value in a.model.state_dict().items():
        if "calibration" not in key:
            assert torch.equal(b.model.state_dict()[key], value), key


def test_a_gain_held_at_one_trains_as_plain_dni(tmp_path, tiny_trainer):
    """Sums so large that no window moves their ratio off 1: the calibrated run is the uncalibrated one."""
    calibrated = _trainer(tmp_path / "calibrated", tiny_trainer, 0.5)
    calibrated.model.synthetic_gradient.calibration_sums.fill_(1e200)
    _assert_same_model(_train(calibrated), _train(_trainer(tmp_path / "plain", tiny_trainer, 0.0)))


def test_a_gain_held_at_zero_trains_as_nothing_injected(tmp_path, tiny_trainer):
    """The core gets no SG (as with dni.scale=0), and the head's target is the in-window gradient alone; the aux
    head still predicts the head's own SG, which is not zero."""
    calibrated = _trainer(tmp_path / "calibrated", tiny_trainer, 0.5)
    calibrated.model.synthetic_gradient.calibration_sums.copy_(torch.tensor([-1e200, 1e200], dtype=torch.float64))
    _train(calibrated)
    assert calibrated.model.synthetic_gradient.output.weight.abs().sum() > 0
    assert float(calibrated.model.synthetic_gradient.gain) == 0.0
    _assert_same_model(calibrated, _train(_trainer(tmp_path / "unscaled", tiny_trainer, 0.0, extra=["dni.scale=0"])))


def test_the_gain_scores_predictions_made_before_the_head_saw_their_target(tmp_path, tiny_trainer, monkeypatch):
    import lmdni.boundary as boundary

    trainer = _trainer(tmp_path, tiny_trainer, 0.9)
    for _ in range(3):  # a head that has moved off zero
        trainer.train_window()
    model, head = trainer.model, trainer.model.synthetic_gradient
    before = {k: v.clone() for k, v in head.state_dict().items()}
    scored = []
    monkeypatch.setattr(boundary.Boundary, "calibrate",
                        staticmethod(lambda h, prediction, target: scored.append(prediction.clone())))
    start = trainer.state.clone()
    trainer.train_window()
    fresh = SyntheticGradientHead(model.state_size)
    fresh.keep_calibration(0.9)
    fresh.load_state_dict(before)
    torch.testing.assert_close(scored[0], fresh(model.head_input(start)).detach())
    assert not torch.equal(head.output.weight, before["output.weight"])  # the head has since been stepped


def test_the_probe_reads_the_injected_sg_times_the_gain(tmp_path, tiny_trainer):
    model = _train(_trainer(tmp_path, tiny_trainer, 0.9)).model
    head, state = model.synthetic_gradient, torch.randn(4, model.state_size)
    assert 0 < float(head.gain) < 1
    torch.testing.assert_close(model.injected_synthetic_gradient(state), head(model.head_input(state)) * head.gain)


def test_metrics_report_the_gain(tmp_path, tiny_trainer):
    import json

    from lmdni.metrics import MetricsLog

    trainer = _trainer(tmp_path, tiny_trainer, 0.9, extra=["trainer.max_chars=120", "trainer.eval_every=60"])
    trainer.train(MetricsLog(tmp_path / "metrics.jsonl"))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and records[-1]["sg_gain"] == pytest.approx(float(trainer.model.synthetic_gradient.gain))


def test_resume_with_a_calibrated_head_equals_straight(tmp_path, tiny_trainer):
    assert_resume_equals_straight(lambda name: _trainer(tmp_path / name, tiny_trainer, 0.7))


def test_off_keeps_the_state_dict(tmp_path, tiny_trainer):
    assert not any("calibration" in key for key in tiny_trainer(tmp_path, "dni").model.state_dict())


@pytest.mark.parametrize("extra", [["dni.calibration_decay=1.0"], ["dni.calibration_decay=-0.1"],
                                   ["dni.calibration_decay=0.9", "dni.head_average=0.5"],
                                   ["dni.calibration_decay=0.9", "model=hierarchical", "model.slow_hidden_size=8",
                                    "model.slow_every=3", "model.message_size=4", "model.slow_windows=2"]])
def test_what_a_calibrated_head_cannot_be_is_one_line(tmp_path, tiny_trainer, extra):
    with pytest.raises(ConfigError) as info:
        tiny_trainer(tmp_path, "dni", extra)
    assert "\n" not in str(info.value) and "dni.calibration_decay" in str(info.value)
