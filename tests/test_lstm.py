"""The step-loop LSTM (lmdni.lstm) is nn.LSTM: same outputs, same gradients, on nn.LSTM's own weights; and `auto`
takes it only where it is meant to."""
import pytest
import torch
from omegaconf import OmegaConf

from lmdni.config import upgrade
from lmdni.errors import ConfigError
from lmdni.lstm import STEPWISE_MAX_UNROLL, run_lstm, uses_stepwise
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


def test_auto_takes_the_step_loop_for_short_training_windows_on_cpu_only():
    short, long = torch.zeros(STEPWISE_MAX_UNROLL, 2, 3), torch.zeros(STEPWISE_MAX_UNROLL + 1, 2, 3)
    assert uses_stepwise("auto", short) and not uses_stepwise("auto", long)
    one_step = torch.zeros(1, 2, 3)  # DNI+Aux's recompute goes its window's way
    assert not uses_stepwise("auto", one_step, window=STEPWISE_MAX_UNROLL + 1)
    assert uses_stepwise("auto", one_step, window=STEPWISE_MAX_UNROLL)
    with torch.no_grad():  # evaluation: no backward, nn.LSTM
        assert not uses_stepwise("auto", short)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16: oneDNN's bf16 kernel
        assert not uses_stepwise("auto", short)
    assert uses_stepwise("stepwise", long) and not uses_stepwise("torch", short)


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


def _dni_aux_window(kernel: str, unroll: int):
    torch.manual_seed(0)
    model = LSTMCore(7, 6, 1, embedding_size=4, sg_hidden_size=0, aux_head=True, lstm_kernel=kernel)
    with torch.no_grad():
        model.aux_synthetic_gradient.weight.normal_()
    start = torch.randn(3, model.state_size, requires_grad=True)
    out = model(torch.randint(7, (unroll, 3)), start)
    (summed_loss(out.logits, torch.randint(7, (unroll, 3)), None) + out.aux_prediction.pow(2).sum()).backward()
    return [out.logits, out.aux_prediction, start.grad, *[p.grad for p in model.parameters() if p.grad is not None]]


def test_auto_is_nn_lstm_bit_for_bit_past_the_threshold_and_the_step_loop_below():
    """fp32: a run at a longer unroll computes exactly what it did before the step loop existed, recompute and all."""
    longer = STEPWISE_MAX_UNROLL + 1
    for a, b in zip(_dni_aux_window("auto", longer), _dni_aux_window("torch", longer)):
        assert torch.equal(a, b)
    for a, b in zip(_dni_aux_window("auto", STEPWISE_MAX_UNROLL), _dni_aux_window("stepwise", STEPWISE_MAX_UNROLL)):
        assert torch.equal(a, b)


def test_config_names_the_kernel_and_old_runs_keep_nn_lstm():
    cfg = compose_config(["model.lstm_kernel=stepwise"])
    assert build_model(cfg, 7).lstm_kernel == "stepwise"
    assert compose_config([]).model.lstm_kernel == "auto"
    old = OmegaConf.to_container(compose_config([]))
    del old["model"]["lstm_kernel"]
    assert upgrade(old)["model"]["lstm_kernel"] == "torch"  # what a run saved before the key existed ran


def test_a_bad_kernel_is_one_line():
    from lmdni.config import validate

    with pytest.raises(ConfigError, match="model.lstm_kernel must be one of auto, torch, stepwise") as info:
        validate(compose_config(["model.lstm_kernel=fast"]))
    assert "\n" not in str(info.value)
