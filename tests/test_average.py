"""`dni.head_average`: the window injects (and bootstraps from) an exponential moving average of the SG head's
weights, while the regression trains the head itself."""
import pytest
import torch

from lmdni.errors import ConfigError

from .conftest import assert_resume_equals_straight


def _trainer(tmp_path, tiny_trainer, average, method="dni", extra=()):
    return tiny_trainer(tmp_path, method, [f"dni.head_average={average}", "dni.lr=0.05", "dni.scale=0.5", *extra])


def test_the_average_is_the_ema_of_the_trained_weights(tmp_path, tiny_trainer):
    trainer = _trainer(tmp_path, tiny_trainer, 0.8)
    head = trainer.model.synthetic_gradient
    expected = head.output.weight.detach().clone()
    for _ in range(6):
        trainer.train_window()
        # the next window averages in the weights the last step left
        expected = 0.8 * expected + 0.2 * head.output.weight.detach()
    trainer.train_window()
    torch.testing.assert_close(head.average_output_weight, expected, rtol=0, atol=1e-7)
    assert not torch.allclose(head.average_output_weight, head.output.weight)


def test_the_window_injects_the_average_and_regresses_the_head(tmp_path, tiny_trainer):
    trainer = _trainer(tmp_path, tiny_trainer, 0.9)
    for _ in range(5):
        trainer.train_window()
    model, head = trainer.model, trainer.model.synthetic_gradient
    start = torch.randn(4, model.state_size)
    out = model(torch.randint(7, (3, 4)), start)
    with torch.no_grad():
        averaged = torch.nn.functional.linear(model.head_input(out.state), head.average_output_weight,
                                              head.average_output_bias)
        trained = head(model.head_input(start))
    torch.testing.assert_close(out.final_synthetic_gradient, averaged)
    torch.testing.assert_close(out.start_synthetic_gradient, trained)
    torch.testing.assert_close(model.injected_synthetic_gradient(out.state), averaged)
    assert not torch.allclose(head(model.head_input(out.state)), averaged)  # the two weight sets differ by now


def test_no_average_keeps_the_state_dict_and_the_run(tmp_path, tiny_trainer):
    """Off (the default): no buffers (old checkpoints load), and the model trains as before the setting existed."""
    trainer = tiny_trainer(tmp_path, "dni_aux")
    assert not any("average" in key for key in trainer.model.state_dict())
    averaged = _trainer(tmp_path / "a", tiny_trainer, 0.5, "dni_aux")
    assert {"synthetic_gradient.average_output_weight", "synthetic_gradient.average_output_bias"} <= set(
        averaged.model.state_dict())


def test_resume_with_an_average_equals_straight(tmp_path, tiny_trainer):
    assert_resume_equals_straight(lambda name: _trainer(tmp_path / name, tiny_trainer, 0.7, "dni_aux"))


@pytest.mark.parametrize("value", ["1.0", "-0.1"])
def test_a_decay_outside_0_1_is_one_line(tmp_path, tiny_trainer, value):
    with pytest.raises(ConfigError) as info:
        tiny_trainer(tmp_path, "dni", [f"dni.head_average={value}"])
    assert "\n" not in str(info.value) and "dni.head_average" in str(info.value)


def _window_by_hand(model, inputs, targets, start, injected_sg_of, target_sg_of, scale):
    """The core's gradients and the start state's bootstrapped target of one plain-DNI window, written out: the
    core learns from the loss plus `injected_sg_of`'s SG at the final state; the target is the gradient at the
    start of the loss plus `target_sg_of`'s SG there (summed units)."""
    from lmdni.window import summed_loss

    start = start.clone().requires_grad_()
    unrolled = model.unroll(inputs, start)
    loss_sum = summed_loss(unrolled.logits, targets, None)
    n = targets.numel()
    with torch.no_grad():
        features = model.head_input(unrolled.state)
        injected, target_sg = injected_sg_of(features), target_sg_of(features)
    core = [p for name, p in model.named_parameters() if not name.startswith("synthetic_gradient")]
    grads = torch.autograd.grad((loss_sum + scale * (injected * unrolled.state).sum()) / n, core, retain_graph=True,
                                allow_unused=True)
    target = torch.autograd.grad(loss_sum + scale * (target_sg * unrolled.state).sum(), start)[0]
    return [torch.zeros_like(p) if g is None else g for p, g in zip(core, grads)], target


@pytest.mark.parametrize("use", ["injection", "target"])
def test_the_average_is_injected_or_bootstrapped_from_not_both(tmp_path, tiny_trainer, use):
    """`injection`: the core learns from the average's SG while the head's target bootstraps from the head's own;
    `target`: the reverse. Either way the target is what it would be were its SG the one injected."""
    trainer = _trainer(tmp_path, tiny_trainer, 0.8, "dni", [f"dni.head_average_use={use}"])
    for _ in range(6):
        trainer.train_window()
    model, window, head = trainer.model, trainer.window, trainer.model.synthetic_gradient
    captured = {}
    regress = window.boundary.regress

    def capture(head_, head_input, prediction, target):
        captured["target"] = target.detach().clone()
        return regress(head_, head_input, prediction, target)

    window.boundary.regress = capture
    g = torch.Generator().manual_seed(5)
    inputs, targets = torch.randint(7, (3, 4), generator=g), torch.randint(7, (3, 4), generator=g)
    start = torch.randn(4, model.state_size, generator=g)
    model.zero_grad(set_to_none=True)
    window(inputs, targets, None, start, ends_pass=False)  # the average is updated first, then used
    assert not torch.allclose(head.average_output_weight, head.output.weight)
    own, average = head, head.averaged
    injected_of, target_of = (average, own) if use == "injection" else (own, average)
    expected_grads, expected_target = _window_by_hand(model, inputs, targets, start, injected_of, target_of, 0.5)
    core = [p for name, p in model.named_parameters() if not name.startswith("synthetic_gradient")]
    for parameter, expected in zip(core, expected_grads):
        got = torch.zeros_like(parameter) if parameter.grad is None else parameter.grad
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(captured["target"], expected_target, rtol=1e-5, atol=1e-6)
    # and the two SGs differ, so this tells the arrangements apart
    _, swapped = _window_by_hand(model, inputs, targets, start, target_of, injected_of, 0.5)
    assert not torch.allclose(captured["target"], swapped, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("use", ["injection", "target"])
def test_the_aux_head_predicts_the_heads_own_sg(tmp_path, tiny_trainer, use):
    trainer = _trainer(tmp_path, tiny_trainer, 0.8, "dni_aux", [f"dni.head_average_use={use}"])
    for _ in range(6):
        trainer.train_window()
    model, head = trainer.model, trainer.model.synthetic_gradient
    g = torch.Generator().manual_seed(6)
    inputs, targets = torch.randint(7, (3, 4), generator=g), torch.randint(7, (3, 4), generator=g)
    start = torch.randn(4, model.state_size, generator=g)
    result = trainer.window(inputs, targets, None, start, ends_pass=False)
    with torch.no_grad():
        out = model(inputs, start)
        own = head(model.head_input(out.state))
        expected = (out.aux_prediction - own).pow(2).sum(1).mean()
    torch.testing.assert_close(result.aux_loss, expected)
    injected = head.averaged if use == "injection" else head
    torch.testing.assert_close(model.injected_synthetic_gradient(out.state), injected(model.head_input(out.state)))


def test_resume_with_the_average_injected_equals_straight(tmp_path, tiny_trainer):
    assert_resume_equals_straight(lambda name: _trainer(tmp_path / name, tiny_trainer, 0.7, "dni_aux",
                                                        ["dni.head_average_use=injection"]))


@pytest.mark.parametrize("overrides", [["dni.head_average_use=injection"],
                                       ["dni.head_average=0.5", "dni.head_average_use=target",
                                        "dni.ablation=shuffle"],
                                       ["dni.head_average=0.5", "dni.head_average_use=critic"]])
def test_a_use_without_an_average_or_with_an_ablation_is_one_line(tmp_path, tiny_trainer, overrides):
    with pytest.raises(ConfigError) as info:
        tiny_trainer(tmp_path, "dni", overrides)
    assert "\n" not in str(info.value) and "dni.head_average" in str(info.value)
