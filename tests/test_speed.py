"""The optional speed settings (lmdni.speed): bf16 autocast and torch.compile change speed, not what is trained."""
import pytest
import torch

from lmdni.errors import ConfigError
from lmdni.resume import snapshot
from lmdni.speed import check_precision


def _cpu_runs_a_bf16_lstm() -> bool:
    try:
        check_precision("bf16", torch.device("cpu"))
    except ConfigError:
        return False
    return True


# oneDNN's bf16 LSTM needs a CPU with bf16 instructions (AVX-512 BF16 or AMX); elsewhere bf16 runs are refused in one
# line (test_bf16_without_an_lstm_kernel_is_a_one_line_error), and what they would train cannot be checked here
needs_bf16 = pytest.mark.skipif(not _cpu_runs_a_bf16_lstm(), reason="this CPU has no bf16 LSTM kernel (oneDNN)")


def window_losses(trainer, windows):
    losses = []
    for _ in range(windows):
        before = float(trainer.interval.nats)
        trainer.train_window()
        losses.append(float(trainer.interval.nats) - before)
    return losses


@needs_bf16
@pytest.mark.parametrize("method,symbols", [("bptt", "embedding"), ("dni", "embedding"), ("dni_aux", "embedding"),
                                            ("dni", "binary")])
def test_bf16_autocast_tracks_fp32_and_keeps_everything_stored_in_fp32(tmp_path, method, symbols, tiny_trainer):
    settings = ["dni.scale=0.5", f"model.symbols={symbols}"]
    reference = window_losses(tiny_trainer(tmp_path / "fp32", method, settings), 30)
    trainer = tiny_trainer(tmp_path / "bf16", method, [*settings, "trainer.precision=bf16"])
    losses = window_losses(trainer, 30)
    # bf16 keeps ~3 significant digits: the trajectories stay together, but are not identical (it did run in bf16)
    assert losses != reference
    for ours, theirs in zip(losses, reference):
        assert ours == pytest.approx(theirs, rel=2e-2)
    # what bf16 rounds (lmdni.speed): the LSTM's recurrence, so the carried state holds bf16 values in fp32 tensors
    assert trainer.state.dtype == torch.float32
    assert torch.equal(trainer.state, trainer.state.bfloat16().float())
    fp32_state = tiny_trainer(tmp_path / "fp32_state", method, settings)
    window_losses(fp32_state, 3)
    assert not torch.equal(fp32_state.state, fp32_state.state.bfloat16().float())  # fp32 runs keep fp32 values
    payload = snapshot(trainer)
    assert all(v.dtype == torch.float32 for v in payload["model"].values())
    # and what it does not: weights and Adam's state are fp32 values, not merely fp32 tensors
    weights = [v for v in payload["model"].values() if v.is_floating_point()]
    assert any(not torch.equal(v, v.bfloat16().float()) for v in weights)
    moments = [s["exp_avg"] for s in payload["optimizer"]["state"].values()]
    assert any(not torch.equal(m, m.bfloat16().float()) for m in moments)
    if method != "bptt":
        assert 0 < float(trainer.interval.sg_loss) < float("inf")
        with torch.no_grad():  # the SG head's product runs under autocast: its prediction is a bf16 value
            out, _ = trainer.window.forward(*trainer.stream.next_window()[:2], None, trainer.state, True)
        assert out.final_synthetic_gradient.dtype == torch.float32
        assert torch.equal(out.final_synthetic_gradient, out.final_synthetic_gradient.bfloat16().float())


@needs_bf16
def test_bf16_autocast_runs_the_forward_in_bf16(tmp_path, tiny_trainer):
    trainer = tiny_trainer(tmp_path, "dni", ["trainer.precision=bf16"])
    seen = []
    hook = trainer.model.decoder.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    trainer.train_window()
    hook.remove()
    assert seen == [torch.bfloat16]


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=needs_bf16)])
def test_compile_matches_eager_and_leaves_checkpoint_keys_plain(tmp_path, precision, tiny_trainer):
    settings = ["dni.scale=0.5", f"trainer.precision={precision}"]
    eager = tiny_trainer(tmp_path / "eager", "dni_aux", settings)
    compiled = tiny_trainer(tmp_path / "compiled", "dni_aux", [*settings, "trainer.compile=true"])
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    assert window_losses(compiled, 12) == pytest.approx(window_losses(eager, 12), rel=1e-5)
    assert counters["stats"]["unique_graphs"] >= 2  # it really ran compiled: the unroll and the loss
    for (name, ours), theirs in zip(compiled.model.state_dict().items(), eager.model.state_dict().values()):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6, msg=name)
    keys = snapshot(compiled)["model"].keys()
    assert keys == eager.model.state_dict().keys()
    assert not any("_orig_mod" in key for key in keys)


def test_bf16_without_an_lstm_kernel_is_a_one_line_error(tmp_path, monkeypatch, tiny_trainer):
    from lmdni.errors import ConfigError

    def no_bf16_kernel(self, inputs, hx=None):
        if torch.is_autocast_enabled(inputs.device.type):
            raise RuntimeError("\"_thnn_fused_lstm_cell_cuda\" not implemented for 'BFloat16'\nmore lines")
        return original(self, inputs, hx)

    original = torch.nn.LSTM.forward
    monkeypatch.setattr(torch.nn.LSTM, "forward", no_bf16_kernel)
    with pytest.raises(ConfigError, match=r"cannot run an LSTM in bfloat16 on cpu \(.*BFloat16'\); use trainer"):
        tiny_trainer(tmp_path, "dni", ["trainer.precision=bf16"])
    tiny_trainer(tmp_path, "dni", ["trainer.precision=fp32"])  # fp32 never probes


@needs_bf16
def test_the_bf16_probe_leaves_the_random_stream_alone(tmp_path, tiny_trainer):
    torch.manual_seed(0)
    tiny_trainer(tmp_path / "a", "bptt", ["trainer.precision=bf16"])
    after_bf16 = torch.rand(3)
    torch.manual_seed(0)
    tiny_trainer(tmp_path / "b", "bptt")
    assert torch.equal(after_bf16, torch.rand(3))
