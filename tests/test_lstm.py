"""The step-loop LSTM (lmdni.lstm) is nn.LSTM: same outputs, same gradients, on nn.LSTM's own weights; and it runs
where it is meant to (training, fp32 or fp64)."""
import pytest
import torch
from omegaconf import OmegaConf

from lmdni.config import upgrade
from lmdni.errors import ConfigError
from lmdni.lstm import run_lstm, uses_stepwise
from lmdni.model import LSTMCore
from lmdni.run import compose_config, build_model
from lmdni.window import summed_loss


def _outputs_and_gradients(lstm, x, h, c, kernel, used):
    """Everything the recurrence gives and takes: outputs, final state, and the gradient of a loss that reads
    `used` of them (weighted unevenly, so a mixed-up step or gate shows) w.r.t. inputs, start state and weights."""
    for tensor in (x, h, c, *lstm.parameters()):
        tensor.grad = None
    output, (h_last, c_last) = run_lstm(lstm, x, h, c, kernel)
    parts = {"output": output, "h": h_last, "c": c_last}
    loss = sum((parts[name] * torch.linspace(0.5, 1.5, parts[name].numel(), dtype=x.dtype).view_as(parts[name])).sum()
               for name in used)
    loss.backward()
    grads = [t.grad if t.grad is not None else torch.zeros_like(t) for t in (x, h, c, *lstm.parameters())]
    return [output.detach(), h_last.detach(), c_last.detach(), *grads]


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("steps", [1, 3, 7])
@pytest.mark.parametrize("used", [("output",), ("h", "c"), ("output", "c"), ("c",)])
def test_stepwise_equals_nn_lstm(layers, steps, used):
    torch.manual_seed(steps)
    lstm = torch.nn.LSTM(5, 6, layers).double()
    x = torch.randn(steps, 3, 5, dtype=torch.float64, requires_grad=True)
    h = torch.randn(layers, 3, 6, dtype=torch.float64, requires_grad=True)
    c = torch.randn(layers, 3, 6, dtype=torch.float64, requires_grad=True)
    expected = _outputs_and_gradients(lstm, x, h, c, "torch", used)
    got = _outputs_and_gradients(lstm, x, h, c, "stepwise", used)
    for a, b in zip(expected, got):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12)
    assert any(g.abs().sum() > 0 for g in got[3:])


def test_stepwise_matches_nn_lstm_in_fp32_at_a_real_shape():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(32, 64)
    x = torch.randn(2, 16, 32, requires_grad=True)
    h, c = (torch.randn(1, 16, 64, requires_grad=True) for _ in range(2))
    for a, b in zip(_outputs_and_gradients(lstm, x, h, c, "torch", ("output", "c")),
                    _outputs_and_gradients(lstm, x, h, c, "stepwise", ("output", "c"))):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_detached_start_gets_no_gradient_and_weights_still_do():
    """DNI+Aux's recompute: the start state is a constant, only the weights and the input learn."""
    lstm = torch.nn.LSTM(4, 5)
    x = torch.randn(1, 2, 4, requires_grad=True)
    h, c = torch.randn(1, 2, 5), torch.randn(1, 2, 5)
    output, _ = run_lstm(lstm, x, h, c, "stepwise")
    output.sum().backward()
    assert x.grad.abs().sum() > 0 and lstm.weight_hh_l0.grad.abs().sum() > 0
    assert h.grad is None and c.grad is None


def test_the_step_loop_runs_for_training_only():
    x = torch.zeros(3, 2, 3)
    assert uses_stepwise("stepwise", x) and not uses_stepwise("torch", x)
    with torch.no_grad():  # evaluation: no backward, nn.LSTM
        assert not uses_stepwise("stepwise", x)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16: nn.LSTM's own kernel
        assert not uses_stepwise("stepwise", x)


def test_dni_aux_window_is_the_same_on_either_kernel():
    """The whole forward of a DNI+Aux window (unroll, heads, aux recompute) and its gradients agree."""
    results = []
    for kernel in ("torch", "stepwise"):
        torch.manual_seed(0)
        model = LSTMCore(7, 6, 1, embedding_size=4, sg_hidden_size=0, aux_head=True, lstm_kernel=kernel).double()
        with torch.no_grad():
            model.aux_synthetic_gradient.weight.normal_()
            model.synthetic_gradient.output.weight.normal_()
        start = torch.randn(3, model.state_size, dtype=torch.float64, requires_grad=True)
        inputs, targets = torch.randint(7, (2, 3)), torch.randint(7, (2, 3))
        out = model(inputs, start)
        loss = summed_loss(out.logits, targets, None) + (out.aux_prediction ** 2).sum()
        loss.backward()
        results.append([out.logits, out.state, out.aux_prediction, start.grad,
                        *[p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12)


def test_config_names_the_kernel_and_old_runs_keep_nn_lstm():
    cfg = compose_config(["model.lstm_kernel=stepwise"])
    assert build_model(cfg, 7).lstm_kernel == "stepwise"
    assert compose_config([]).model.lstm_kernel == "torch"
    old = OmegaConf.to_container(compose_config([]))
    del old["model"]["lstm_kernel"]
    assert upgrade(old)["model"]["lstm_kernel"] == "torch"  # what a run saved before the key existed ran


def test_a_bad_kernel_is_one_line():
    from lmdni.config import validate

    with pytest.raises(ConfigError, match="model.lstm_kernel must be torch or stepwise") as info:
        validate(compose_config(["model.lstm_kernel=fast"]))
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="runs in fp32"):
        validate(compose_config(["model.lstm_kernel=stepwise", "trainer.precision=bf16"]))


@pytest.mark.parametrize("method", ["bptt", "dni_aux"])
def test_a_run_trains_the_same_on_either_kernel(tmp_path, tiny_trainer, method):
    """Twenty windows through the trainer (optimizer, clipping, boundary): the weights agree to fp32 rounding."""
    trained = []
    for kernel in ("torch", "stepwise"):
        trainer = tiny_trainer(tmp_path / kernel, method, [f"model.lstm_kernel={kernel}", "seed=1"])
        for _ in range(20):
            trainer.train_window()
        trained.append(trainer.model.state_dict())
    for name, value in trained[0].items():
        torch.testing.assert_close(trained[1][name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert any(not torch.equal(trained[0][n], trained[1][n]) for n in trained[0])  # two recurrences really ran
