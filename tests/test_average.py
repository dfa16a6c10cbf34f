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
