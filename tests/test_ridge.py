"""`dni.ridge_decay`: the linear SG head is not stepped by Adam but solved each window by ridge regression on every
target it has seen, forgotten at that decay per window."""
import pytest
import torch

from lmdni.boundary import RIDGE_PENALTIES, RIDGE_PENALTY, regression_ridge
from lmdni.errors import ConfigError

from .conftest import assert_resume_equals_straight
from lmdni.head import SyntheticGradientHead


def _trainer(tmp_path, tiny_trainer, decay, method="dni", extra=()):
    return tiny_trainer(tmp_path, method, [f"dni.ridge_decay={decay}", "dni.scale=0.5", *extra])


def _weighted_ridge(batches, decay, penalty_scale=RIDGE_PENALTY):
    """The same solution written out: stacked rows weighted decay^age, the penalty on the weights only."""
    rows, targets, weights = [], [], []
    for age, (x, y) in enumerate(reversed(batches)):
        rows.append(torch.cat([x, torch.ones(len(x), 1)], 1).double())
        targets.append(y.double())
        weights.append(torch.full((len(x),), decay ** age, dtype=torch.float64))
    x, y, w = torch.cat(rows), torch.cat(targets), torch.cat(weights)
    gram = x.T @ (w[:, None] * x)
    penalty = torch.full((x.shape[1],), penalty_scale * gram.diagonal()[:-1].mean().item() + 1e-12,
                         dtype=torch.float64)
    penalty[-1] = 1e-12
    solution = torch.linalg.solve(gram + torch.diag(penalty), x.T @ (w[:, None] * y))
    return solution[:-1].T, solution[-1]


def test_the_head_is_the_forgotten_ridge_solution_of_its_targets():
    torch.manual_seed(0)
    head = SyntheticGradientHead(6)
    head.keep_ridge(0.5)
    batches = [(torch.randn(10, 6), torch.randn(10, 6)) for _ in range(4)]
    for x, y in batches:
        prediction = head(x).detach()
        loss = regression_ridge(prediction, y, x, head)
        assert torch.isclose(loss, (prediction - y).pow(2).mean())  # the loss is the prediction's, before the refit
    weight, bias = _weighted_ridge(batches, 0.5)
    torch.testing.assert_close(head.output.weight.double(), weight.float().double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(head.output.bias.double(), bias.float().double(), rtol=0, atol=1e-6)


def test_a_linear_future_gradient_is_recovered():
    """Targets that are a linear function of the input: the refitted head predicts them."""
    torch.manual_seed(1)
    head = SyntheticGradientHead(8)
    head.keep_ridge(0.9)
    true_map, true_bias = torch.randn(8, 8), torch.randn(8)
    for _ in range(20):
        x = torch.randn(32, 8)
        regression_ridge(head(x).detach(), x @ true_map.T + true_bias, x, head)
    x = torch.randn(100, 8)
    target = x @ true_map.T + true_bias
    explained = 1 - (head(x).detach() - target).pow(2).sum() / (target - target.mean(0)).pow(2).sum()
    assert explained > 0.99


def test_training_solves_the_head_and_never_steps_it(tmp_path, tiny_trainer):
    trainer = _trainer(tmp_path, tiny_trainer, 0.8, "dni_aux")
    head = trainer.model.synthetic_gradient
    for _ in range(5):
        trainer.train_window()
    assert head.output.weight.abs().sum() > 0  # solved: no longer the zero start
    assert all(p.grad is None for p in head.parameters())  # no gradient for Adam to step with
    assert all(not trainer.optimizer.state.get(p) for p in head.parameters())
    assert float(head.ridge_gram[-1, -1]) > 0  # the intercept column's count, forgotten: its rows have been seen


def test_resume_with_a_ridge_head_equals_straight(tmp_path, tiny_trainer):
    assert_resume_equals_straight(lambda name: _trainer(tmp_path / name, tiny_trainer, 0.7, "dni_aux"))


def test_off_keeps_the_state_dict(tmp_path, tiny_trainer):
    assert not any("ridge" in key for key in tiny_trainer(tmp_path, "dni").model.state_dict())


@pytest.mark.parametrize("extra", [["dni.ridge_decay=1.0"], ["dni.ridge_decay=-0.1"],
                                   ["dni.ridge_decay=0.9", "dni.head_hidden_size=8"],
                                   ["dni.ridge_decay=0.9", "dni.head_rank=4"],
                                   ["dni.ridge_decay=0.9", "dni.head_average=0.5"],
                                   ["dni.ridge_decay=0.9", "dni.fused=on"]])
def test_what_a_ridge_head_cannot_be_is_one_line(tmp_path, tiny_trainer, extra):
    with pytest.raises(ConfigError) as info:
        tiny_trainer(tmp_path, "dni", extra)
    assert "\n" not in str(info.value) and "dni.ridge_decay" in str(info.value)


def test_a_solution_beside_the_head_is_the_forgotten_ridge_solution_and_the_head_is_left_alone():
    torch.manual_seed(2)
    head = SyntheticGradientHead(6)
    head.keep_ridge(0.5, "injection")
    batches = [(torch.randn(10, 6), torch.randn(10, 6)) for _ in range(4)]
    for x, y in batches:
        regression_ridge(head(x).detach(), y, x, head)
    weight, bias = _weighted_ridge(batches, 0.5)
    torch.testing.assert_close(head.ridge_weight.double(), weight.float().double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(head.ridge_bias.double(), bias.float().double(), rtol=0, atol=1e-6)
    assert head.output.weight.abs().sum() == 0 and head.output.bias.abs().sum() == 0  # the head: still its zero start
    x = torch.randn(3, 6)
    torch.testing.assert_close(head.injected(x), x @ head.ridge_weight.T + head.ridge_bias)


def test_with_the_solution_injected_adam_trains_the_head_and_the_aux_head_predicts_it(tmp_path, tiny_trainer):
    """`dni.ridge_use=injection`: the window injects (and bootstraps from) the solution; Adam still steps the head
    on the same target, and the aux head's target is the head's own SG, not the injected one."""
    trainer = _trainer(tmp_path, tiny_trainer, 0.8, "dni_aux", ["dni.ridge_use=injection", "dni.lr=0.05"])
    model, head = trainer.model, trainer.model.synthetic_gradient
    for _ in range(6):
        trainer.train_window()
    assert all(trainer.optimizer.state.get(p) for p in head.parameters())  # stepped by Adam
    assert not torch.allclose(head.output.weight, head.ridge_weight)
    g = torch.Generator().manual_seed(7)
    inputs, targets = torch.randint(7, (3, 4), generator=g), torch.randint(7, (3, 4), generator=g)
    start = torch.randn(4, model.state_size, generator=g)
    captured = {}
    backward = trainer.window.boundary.backward

    def capture(loss_sum, n_tokens, final_state, injected, extra=None):
        captured["injected"] = injected.detach().clone()
        return backward(loss_sum, n_tokens, final_state, injected, extra)

    trainer.window.boundary.backward = capture
    weight, bias = head.ridge_weight.clone(), head.ridge_bias.clone()
    result = trainer.window(inputs, targets, None, start, ends_pass=False)
    with torch.no_grad():
        out = model(inputs, start)
        features = model.head_input(out.state)
        solution = features @ weight.T + bias  # the solution before this window's refit
        expected_aux = (out.aux_prediction - head(features)).pow(2).sum(1).mean()
    torch.testing.assert_close(captured["injected"], 0.5 * solution)
    torch.testing.assert_close(result.aux_loss, expected_aux)


def test_resume_with_the_solution_injected_equals_straight(tmp_path, tiny_trainer):
    assert_resume_equals_straight(lambda name: _trainer(tmp_path / name, tiny_trainer, 0.7, "dni_aux",
                                                        ["dni.ridge_use=injection"]))


def test_a_ridge_use_without_a_ridge_decay_is_one_line(tmp_path, tiny_trainer):
    with pytest.raises(ConfigError) as info:
        tiny_trainer(tmp_path, "dni", ["dni.ridge_use=injection"])
    assert "\n" not in str(info.value) and "dni.ridge_decay" in str(info.value)


def test_the_selected_penalty_is_the_one_with_the_least_forgotten_held_out_error():
    """Each candidate's solution from the windows before is scored on the next window's targets; the head is the
    solution of the candidate whose scores, forgotten at the decay, sum least."""
    torch.manual_seed(3)
    head = SyntheticGradientHead(6)
    head.keep_ridge(0.7, select=True)
    true_map = torch.randn(6, 6) * 0.3
    batches = []
    for _ in range(6):
        x = torch.randn(12, 6)
        batches.append((x, x @ true_map.T + torch.randn(12, 6)))
    scores = torch.zeros(len(RIDGE_PENALTIES), dtype=torch.float64)
    for t, (x, y) in enumerate(batches):
        regression_ridge(head(x).detach(), y, x, head)
        for k, scale in enumerate(RIDGE_PENALTIES):
            weight, bias = _weighted_ridge(batches[:t], 0.7, scale) if t else (torch.zeros(6, 6), torch.zeros(6))
            error = (x.double() @ weight.double().T + bias.double() - y.double()).pow(2).sum()
            scores[k] = 0.7 * scores[k] + error
    torch.testing.assert_close(head.ridge_scores, scores, rtol=1e-4, atol=0)
    best = int(scores.argmin())
    weight, bias = _weighted_ridge(batches, 0.7, RIDGE_PENALTIES[best])
    torch.testing.assert_close(head.output.weight.double(), weight.float().double(), rtol=0, atol=1e-5)
    torch.testing.assert_close(head.output.bias.double(), bias.float().double(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("signal", [True, False])
def test_selection_shrinks_noise_and_keeps_a_linear_map(signal):
    torch.manual_seed(4)
    head = SyntheticGradientHead(8)
    head.keep_ridge(0.95, select=True)
    true_map = torch.randn(8, 8)
    for _ in range(60):
        x = torch.randn(16, 8)
        y = x @ true_map.T if signal else torch.randn(16, 8)
        regression_ridge(head(x).detach(), y, x, head)
    chosen = RIDGE_PENALTIES[int(head.ridge_scores.argmin())]
    assert chosen == (min(RIDGE_PENALTIES) if signal else max(RIDGE_PENALTIES))


def test_before_any_evidence_the_most_shrunk_solution_is_used():
    head = SyntheticGradientHead(4)
    head.keep_ridge(0.9, select=True)
    assert RIDGE_PENALTIES[int(head.ridge_scores.argmin())] == max(RIDGE_PENALTIES)


def test_resume_with_a_selected_penalty_equals_straight(tmp_path, tiny_trainer):
    assert_resume_equals_straight(lambda name: _trainer(tmp_path / name, tiny_trainer, 0.7, "dni_aux",
                                                        ["dni.ridge_use=injection", "dni.ridge_select=true"]))


def test_selection_without_a_ridge_decay_is_one_line(tmp_path, tiny_trainer):
    with pytest.raises(ConfigError) as info:
        tiny_trainer(tmp_path, "dni", ["dni.ridge_select=true"])
    assert "\n" not in str(info.value) and "dni.ridge_decay" in str(info.value)
