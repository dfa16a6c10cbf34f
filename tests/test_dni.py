"""The equivalences DNI must satisfy. They are the spec of the boundary machinery."""
import copy

import pytest
import torch
import torch.nn.functional as F

from lmdni.boundary import aux_loss, backward_window, bootstrapped_target
from lmdni.model import LSTMCore

from .conftest import compose

V, H, L, B, T = 11, 16, 2, 3, 5


def make_model(head=True, seed=0):
    torch.manual_seed(seed)
    model = LSTMCore(V, H, L, embedding_size=8, sg_hidden_size=0 if head else None).double()
    return model


def window_loss(model, x, y, state):
    out = model(x, state)
    return F.cross_entropy(out.logits.reshape(-1, V), y.reshape(-1), reduction="sum"), out


def data(seed=1, steps=2 * T):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(V, (steps + 1, B), generator=g)
    return seq[:-1], seq[1:]


def grads(model, names_prefix="synthetic"):
    return {n: p.grad.clone() for n, p in model.named_parameters() if not n.startswith(names_prefix) and p.grad is not None}


def test_fresh_head_gives_tbptt_gradients():
    x, y = data(steps=T)
    state0 = torch.randn(B, 2 * L * H, dtype=torch.double)
    dni_model, bptt_model = make_model(True), make_model(False)
    # tbptt
    loss, _ = window_loss(bptt_model, x, y, state0)
    (loss / y.numel()).backward()
    # dni with a fresh (zero-output) head: it predicts exactly zero and injects it
    start = state0.clone().requires_grad_()
    loss_d, out = window_loss(dni_model, x, y, start)
    assert torch.count_nonzero(out.final_synthetic_gradient) == 0
    backward_window(loss_d, y.numel(), out.state, out.final_synthetic_gradient)
    g_bptt, g_dni = grads(bptt_model), grads(dni_model)
    assert g_bptt.keys() == g_dni.keys()
    for name in g_bptt:
        torch.testing.assert_close(g_dni[name], g_bptt[name], rtol=0, atol=0)


def test_oracle_synthetic_gradient_recovers_full_bptt():
    """SG = exact gradient of the next window's loss w.r.t. the boundary state, scale 1: the DNI update of window 1
    plus the truncated update of window 2 equals full BPTT over both windows."""
    x, y = data(steps=2 * T)
    (x1, x2), (y1, y2) = x.split(T), y.split(T)
    state0 = torch.randn(B, 2 * L * H, dtype=torch.double)
    model = make_model(True)

    # full BPTT over both windows, summed loss
    reference = copy.deepcopy(model)
    l1, o1 = window_loss(reference, x1, y1, state0)
    l2, _ = window_loss(reference, x2, y2, o1.state)
    (l1 + l2).backward()
    g_full = grads(reference)

    # the oracle: d(window-2 loss)/d(boundary state), by backprop through window 2 from a leaf
    oracle_model = copy.deepcopy(model)
    with torch.no_grad():
        _, o1_tmp = window_loss(oracle_model, x1, y1, state0)
    boundary = o1_tmp.state.clone().requires_grad_()
    l2_only, _ = window_loss(oracle_model, x2, y2, boundary)
    l2_only.backward()  # also the truncated update of window 2: its own use of the parameters
    oracle = boundary.grad
    g_window2 = grads(oracle_model)

    dni_model = copy.deepcopy(model)
    l1_d, o1_d = window_loss(dni_model, x1, y1, state0.clone().requires_grad_())
    n = y1.numel()
    backward_window(l1_d, n, o1_d.state, oracle)  # scale 1
    g_dni = {k: v * n for k, v in grads(dni_model).items()}  # back to summed units

    for name in g_full:
        torch.testing.assert_close(g_dni[name] + g_window2[name], g_full[name], rtol=1e-10, atol=1e-12)
    # and truncation alone is not enough: the oracle SG carries real signal
    assert max((g_full[k] - g_window2[k] - grads_tbptt_summed(model, x1, y1, state0)[k]).abs().max()
               for k in g_full) > 1e-6


def grads_tbptt_summed(model, x, y, state):
    m = copy.deepcopy(model)
    loss, _ = window_loss(m, x, y, state)
    loss.backward()
    return grads(m)


@pytest.mark.parametrize("scale", [0.0, 0.3, 1.0])
def test_bootstrapped_target_is_gradient_of_window_objective(scale):
    x, y = data(steps=T)
    state0 = torch.randn(B, 2 * L * H, dtype=torch.double)
    model = make_model(True)
    with torch.no_grad():  # a non-trivial head, so the SG term matters
        model.synthetic_gradient.output.weight.normal_(0, 0.1)
        model.synthetic_gradient.output.bias.normal_(0, 0.1)
    start = state0.clone().requires_grad_()
    loss, out = window_loss(model, x, y, start)
    injected = scale * out.final_synthetic_gradient.detach() if scale else None
    backward_window(loss, y.numel(), out.state, injected)
    target = bootstrapped_target(start, y.numel())

    # independently: gradient of (window loss sum + scale·<SG(final), final>) with the SG held constant
    independent = copy.deepcopy(model)
    s = state0.clone().requires_grad_()
    loss_i, out_i = window_loss(independent, x, y, s)
    sg = independent.synthetic_gradient(independent.head_input(out_i.state.detach())).detach()
    objective = loss_i + scale * (sg * out_i.state).sum()
    expected = torch.autograd.grad(objective, s)[0]
    torch.testing.assert_close(target, expected, rtol=1e-10, atol=1e-12)


def test_dni_scale_zero_trains_exactly_like_bptt(tmp_path, tiny_trainer):
    bptt = tiny_trainer(tmp_path / "a", "bptt")
    dni = tiny_trainer(tmp_path / "b", "dni", ["dni.scale=0", "dni.lr=0.01"])
    losses = {"bptt": [], "dni": []}
    for _ in range(40):  # crosses a pass boundary (400 symbols / 4 columns / unroll 3)
        for name, trainer in (("bptt", bptt), ("dni", dni)):
            before = float(trainer.interval.nats)
            trainer.train_window()
            losses[name].append(float(trainer.interval.nats) - before)
    assert losses["bptt"] == losses["dni"]
    core = {k: v for k, v in dni.model.state_dict().items() if not k.startswith("synthetic")}
    for k, v in bptt.model.state_dict().items():
        assert torch.equal(core[k], v), k
    # while the head did learn something
    assert dni.model.synthetic_gradient.output.weight.abs().sum() > 0


def test_dni_head_learns_its_target(tmp_path, tiny_trainer):
    trainer = tiny_trainer(tmp_path, "dni", ["dni.lr=0.003", "dni.scale=0.5"], periodic=True)
    cosines = []
    for _ in range(300):
        before = float(trainer.interval.sg_cosine)
        trainer.train_window()
        if trainer.step % 10 == 1:  # the cosine is sampled every 10th window (step counted before increment)
            cosines.append(float(trainer.interval.sg_cosine) - before)
    assert cosines[0] == 0.0  # a fresh head predicts exactly zero
    assert sum(cosines[-5:]) / 5 > 0.3


def test_dni_aux_loss_is_nonzero_and_falls(tmp_path, tiny_trainer):
    trainer = tiny_trainer(tmp_path, "dni_aux", ["dni.lr=0.003", "dni.scale=0.5", "dni.aux_weight=1.0",
                                                 "trainer.lr=0.01"], periodic=True)
    assert trainer.model.aux_synthetic_gradient is not None
    losses = []
    for _ in range(600):
        before = float(trainer.interval.aux_loss)
        trainer.train_window()
        losses.append(float(trainer.interval.aux_loss) - before)
    early, late = max(losses[20:120]), sum(losses[-100:]) / 100
    assert early > 0 and late < 0.5 * early


def test_non_finite_loss_stops_with_a_clear_message(tmp_path, tiny_trainer):
    from lmdni.errors import DivergenceError
    from lmdni.metrics import MetricsLog

    trainer = tiny_trainer(tmp_path, "dni", ["trainer.eval_every=96", "trainer.max_chars=2000"])
    metrics = MetricsLog(tmp_path / "metrics.jsonl")
    for _ in range(10):
        trainer.train_window()
    trainer.evaluate_and_save(metrics)  # a good checkpoint exists
    good = torch.load(tmp_path / "last.pt", weights_only=True)["model"]["decoder.bias"].clone()
    with torch.no_grad():
        trainer.model.decoder.bias[0] = float("nan")
    with pytest.raises(DivergenceError, match=r"non-finite training loss by step \d+"):
        trainer.train(metrics)
    kept = torch.load(tmp_path / "last.pt", weights_only=True)["model"]["decoder.bias"]
    assert torch.equal(kept, good)  # the last good checkpoint was not overwritten


def test_skip_mode_drops_non_finite_windows_and_goes_on(tmp_path, tiny_trainer):
    trainer = tiny_trainer(tmp_path, "bptt", ["trainer.on_nonfinite=skip"])
    with torch.no_grad():
        trainer.model.embedding.weight[3] = float("nan")  # every window that reads symbol 3 is non-finite
    for _ in range(20):
        trainer.train_window()
    assert trainer.skipped > 0 and trainer.step == 20
    assert torch.isfinite(trainer.interval.nats)  # the windows that were trained on stayed finite


def test_squashed_head_input_bounds_the_synthetic_gradient():
    """A linear head on the raw cell state predicts an SG that grows with c; on tanh(c) it cannot."""
    torch.manual_seed(0)
    raw = LSTMCore(V, H, L, embedding_size=8, sg_hidden_size=0, sg_input="raw")
    squashed = LSTMCore(V, H, L, embedding_size=8, sg_hidden_size=0, sg_input="squashed")
    squashed.load_state_dict(raw.state_dict())
    for model in (raw, squashed):
        torch.nn.init.normal_(model.synthetic_gradient.output.weight, 0, 0.1)
    state = torch.randn(B, 2 * L * H)
    state[:, L * H:] *= 1e4  # a cell state that has grown large, as on counting tasks
    x = torch.randint(V, (1, B))
    assert raw(x, state).start_synthetic_gradient.abs().max() > 100
    bounded = squashed(x, state).start_synthetic_gradient.abs().max()
    weights = squashed.synthetic_gradient.output.weight.abs().sum(1).max() + squashed.synthetic_gradient.output.bias.abs().max()
    h_max = state[:, : L * H].abs().max()
    assert bounded <= weights * max(1.0, float(h_max)) + 1e-5
    torch.testing.assert_close(squashed.head_input(state)[:, : L * H], state[:, : L * H])


def test_binary_symbols_are_independent_bernoulli_bits():
    """model.symbols=binary: a symbol goes in as its bit vector, and comes out as a product of one Bernoulli per bit."""
    torch.manual_seed(0)
    vocab = 16  # 4 bits: every code is a symbol, so the distribution over symbols is exactly the product of bits
    model = LSTMCore(vocab, H, 1, embedding_size=8, symbols="binary").double()
    x = torch.tensor([[5, 0], [15, 9]])
    out = model(x, model.initial_state(2).double())
    torch.testing.assert_close(out.logits.exp().sum(-1), torch.ones(2, 2, dtype=torch.float64))
    bits = torch.tensor([(9 >> j) & 1 for j in range(4)], dtype=torch.float64)
    output = model.unroll(x, model.initial_state(2).double()).output
    bit_logits = model.binary.decode(output[1, 1])
    by_hand = (bits * F.logsigmoid(bit_logits) + (1 - bits) * F.logsigmoid(-bit_logits)).sum()
    torch.testing.assert_close(out.logits[1, 1, 9], by_hand)
    # the input side is linear in the bits: symbol 5 = bits 0 and 2
    encode = model.binary.encode
    torch.testing.assert_close(model.embedding(torch.tensor(5)) - encode.bias, encode.weight[:, 0] + encode.weight[:, 2])
    assert all(not name.endswith("codes") for name in model.state_dict())  # rebuilt from the config, not stored


def test_aux_loss_trains_the_core_but_stays_out_of_the_bootstrapped_target():
    """DNI+Aux: the aux loss's gradient reaches the core's weights exactly as if the aux head read the unrolled
    first output, and nothing of it reaches the start state (whose gradient is the SG's regression target)."""
    torch.manual_seed(0)
    model = LSTMCore(V, H, L, embedding_size=8, sg_hidden_size=0, aux_head=True).double()
    for head in (model.synthetic_gradient.output, model.aux_synthetic_gradient):
        torch.nn.init.normal_(head.weight, 0, 0.3)
        torch.nn.init.normal_(head.bias, 0, 0.3)
    x, y = data()
    x, y = x[:T], y[:T]
    start0 = torch.randn(B, model.state_size, dtype=torch.float64)

    def window(with_aux, read_unrolled=False):
        model.zero_grad(set_to_none=True)
        start = start0.clone().requires_grad_(True)
        out = model(x, start)
        loss_sum = F.cross_entropy(out.logits.reshape(-1, V), y.reshape(-1), reduction="sum")
        extra = None
        if with_aux:
            prediction = out.aux_prediction
            if read_unrolled:  # dni.aux_in_target=true: the head on the unrolled output, which depends on `start`
                model.aux_in_target = True
                prediction = model(x, start).aux_prediction
                model.aux_in_target = False
            extra = 0.5 * aux_loss(prediction, out.final_synthetic_gradient)
        backward_window(loss_sum, B * T, out.state, 0.5 * out.final_synthetic_gradient, extra)
        core = {n: p.grad.clone() for n, p in model.named_parameters() if n.startswith("lstm") and p.grad is not None}
        return bootstrapped_target(start, B * T), core

    plain_target, plain_core = window(with_aux=False)
    aux_target, aux_core = window(with_aux=True)
    unrolled_target, unrolled_core = window(with_aux=True, read_unrolled=True)
    torch.testing.assert_close(aux_target, plain_target)  # the aux loss stays out of the target
    assert not torch.allclose(unrolled_target, plain_target)  # it would not, reading the unrolled output
    for name in plain_core:
        torch.testing.assert_close(aux_core[name], unrolled_core[name])  # the core learns the same from it
    assert any(not torch.allclose(aux_core[n], plain_core[n]) for n in plain_core)  # and does learn from it


def test_aux_input_reads_the_first_step_exactly_as_the_unroll_did_under_dropout():
    """The recomputed first step sees the same dropout mask as the unrolled one, so the aux loss's gradient on the
    core's weights is exactly that of reading the unrolled output (one layer; see `LSTMCore.aux_input`)."""
    torch.manual_seed(0)
    model = LSTMCore(V, H, 1, embedding_size=8, dropout=0.5, sg_hidden_size=0, aux_head=True).double().train()
    torch.nn.init.normal_(model.aux_synthetic_gradient.weight, 0, 0.3)
    x, _ = data()
    start = torch.randn(B, model.state_size, dtype=torch.float64)
    unrolled = model.unroll(x[:T], start)
    target = torch.randn(B, model.state_size, dtype=torch.float64)

    def core_gradient(first_output):
        loss = aux_loss(model.aux_synthetic_gradient(first_output), target)
        names = [n for n, p in model.named_parameters() if n.startswith(("lstm", "embedding"))]
        params = [p for n, p in model.named_parameters() if n in names]
        return dict(zip(names, torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)))

    recomputed = core_gradient(model.aux_input(unrolled.first_input, start))
    read = core_gradient(unrolled.output[0])
    for name in read:
        torch.testing.assert_close(recomputed[name], read[name], rtol=1e-12, atol=1e-14)
    assert any(g is not None and g.abs().sum() > 0 for g in read.values())


@pytest.mark.parametrize("batch,state,in_size,loss_weight", [(3, 5, 5, 1.0), (16, 24, 24, 0.7), (7, 12, 30, 2.0)])
def test_closed_form_regression_equals_autograd(batch, state, in_size, loss_weight):
    """The linear head's regression in closed form: the loss and the head's gradients autograd gives (float64)."""
    from lmdni.boundary import regress_synthetic_gradient, regression_loss_reference

    g = torch.Generator().manual_seed(batch)
    head = torch.nn.Linear(in_size, state).double()
    x, target = torch.randn(batch, in_size, generator=g).double(), torch.randn(batch, state, generator=g).double()
    expected = regression_loss_reference(head(x), target, loss_weight)
    expected.backward()
    grads = head.weight.grad.clone(), head.bias.grad.clone()
    head.zero_grad(set_to_none=True)

    class Head:
        output, down = head, None

    with torch.no_grad():
        prediction = head(x)
    loss = regress_synthetic_gradient(Head, x, prediction, target, loss_weight, fused=False)
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(head.weight.grad, grads[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(head.bias.grad, grads[1], rtol=1e-12, atol=1e-14)


def test_low_rank_head_closed_form_equals_autograd_and_starts_at_zero():
    """`dni.head_rank=r`: state -> r -> state, output zero-initialised; its closed-form regression gradients (both
    factors and the bias) are autograd's (float64)."""
    from lmdni.boundary import regress_synthetic_gradient, regression_loss_reference
    from lmdni.head import SyntheticGradientHead

    torch.manual_seed(0)
    head = SyntheticGradientHead(20, rank=4).double()
    assert head.closed_form and not head.is_linear
    assert sum(p.numel() for p in head.parameters()) == 4 * 20 + 20 * 4 + 20
    x, target = torch.randn(6, 20).double(), torch.randn(6, 20).double()
    assert head(x).abs().max() == 0  # a fresh head injects nothing
    torch.nn.init.normal_(head.output.weight)  # a head that has learned something, so every gradient is non-zero
    expected = regression_loss_reference(head(x), target, 0.5)
    expected.backward()
    grads = [p.grad.clone() for p in (head.down.weight, head.output.weight, head.output.bias)]
    head.zero_grad(set_to_none=True)
    with torch.no_grad():
        prediction = head(x)
    loss = regress_synthetic_gradient(head, x, prediction, target, 0.5, fused=False)
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-12, atol=0)
    for got, want in zip((head.down.weight.grad, head.output.weight.grad, head.output.bias.grad), grads):
        assert want.abs().max() > 0
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_low_rank_head_trains_like_tbptt_at_first_then_learns(tmp_path, tiny_trainer):
    """The first window of `dni.head_rank=2` is exactly TBPTT's (nothing injected); then the head learns."""
    bptt = tiny_trainer(tmp_path / "b", "bptt")
    low = tiny_trainer(tmp_path / "l", "dni", ["dni.head_rank=2", "dni.lr=0.05"])
    assert low.model.synthetic_gradient.down.weight.shape == (2, low.model.state_size)
    bptt.train_window()
    low.train_window()
    for name, p in bptt.model.named_parameters():
        assert torch.equal(p, dict(low.model.named_parameters())[name]), name
    for _ in range(20):
        low.train_window()
    assert low.model.synthetic_gradient.output.weight.abs().max() > 0
    assert low.model.synthetic_gradient.down.weight.grad.abs().max() > 0


def test_low_rank_and_mlp_heads_exclude_each_other_and_the_kernel():
    from lmdni.config import validate
    from lmdni.errors import ConfigError

    with pytest.raises(ConfigError, match="exclude each other"):
        validate(compose(["method=dni", "dni.head_rank=4", "dni.head_hidden_size=8"]))
    from lmdni.boundary import resolve_fused
    from lmdni.head import SyntheticGradientHead

    with pytest.raises(ConfigError, match="full-rank linear SG head only"):
        resolve_fused("on", torch.device("cuda"), SyntheticGradientHead(8, rank=2))
    assert resolve_fused("auto", torch.device("cuda"), SyntheticGradientHead(8, rank=2)) is False
    # auto: the kernel only where it was measured faster, bf16 inputs on CUDA (fp32 inputs: 0.5x the torch path)
    assert resolve_fused("auto", torch.device("cuda"), SyntheticGradientHead(8), "fp32") is False
    assert resolve_fused("auto", torch.device("cpu"), SyntheticGradientHead(8), "bf16") is False


def test_warmup_injects_nothing_while_the_head_learns_then_injects(tmp_path, tiny_trainer):
    """`dni.warmup_chars=N`: for the first N characters the core trains exactly as TBPTT while the head learns;
    after them the head's SG is injected."""
    bptt = tiny_trainer(tmp_path / "b", "bptt")
    warm = tiny_trainer(tmp_path / "w", "dni", ["dni.warmup_chars=60", "dni.lr=0.05", "dni.scale=0.5"])
    core = lambda t: {n: p for n, p in t.model.named_parameters() if not n.startswith("synthetic_gradient")}  # noqa
    for _ in range(5):  # 5 windows of 12 characters: the warm-up
        bptt.train_window()
        warm.train_window()
    for name, p in core(bptt).items():
        assert torch.equal(p, core(warm)[name]), name
    assert warm.model.synthetic_gradient.output.weight.abs().max() > 0  # the head has learned meanwhile
    bptt.train_window()
    warm.train_window()
    assert any(not torch.equal(p, core(warm)[name]) for name, p in core(bptt).items())
