"""The two-timescale system (lmdni.hierarchical, lmdni.hierarchical_training): the equivalences it must satisfy."""
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmdni import trainer as trainer_module
from lmdni.errors import ConfigError
from lmdni.hierarchical import STEPWISE_BATCH, HierarchicalCore
from lmdni.boundary import Boundary
from lmdni.hierarchical_training import TwoTimescaleWindow
from lmdni.metrics import MetricsLog, read_metrics
from lmdni.resume import restore

from .conftest import compose

V, FAST, SLOW, MESSAGE, EVERY = 7, 10, 6, 4, 2
T, B, W = 4, 3, 3  # unroll (2 ticks a window), batch, fast windows in the slow window
HIERARCHICAL = ["model=hierarchical", "model.slow_every=3", "model.slow_hidden_size=10", "model.message_size=5",
                "model.slow_windows=3"]


def make_model(heads=True, aux=False):
    torch.manual_seed(0)
    return HierarchicalCore(V, FAST, SLOW, EVERY, MESSAGE, embedding_size=5, heads=heads, aux=aux).double()


def sequence(steps):
    seq = torch.randint(V, (steps + 1, B), generator=torch.Generator().manual_seed(1))
    return seq[:-1].split(T), seq[1:].split(T)


def start_state(model):
    state = torch.randn(B, model.state_size, dtype=torch.double, generator=torch.Generator().manual_seed(2))
    state[:, -1] = 0  # phase: a window starts on a tick boundary
    return state


def core_names(model):
    return [n for n, _ in model.named_parameters() if not n.startswith("synthetic_gradient")]


class Oracle(nn.Module):
    """A stand-in head: returns the given output for an input equal to a given one, zeros otherwise."""

    def __init__(self, pairs, out_size):
        super().__init__()
        self.pairs, self.out_size = pairs, out_size
        self.anchor = nn.Parameter(torch.zeros((), dtype=torch.double))  # so that its regression has a graph

    def forward(self, x):
        for given, output in self.pairs:
            if given.shape == x.shape and torch.allclose(given, x, rtol=0, atol=1e-13):
                return output + 0 * self.anchor
        return torch.zeros(x.shape[0], self.out_size, dtype=x.dtype) + 0 * self.anchor


def test_oracle_synthetic_gradients_recover_full_backprop_through_both_cores():
    """Fast SG = the true gradient of all later loss w.r.t. the fast state at each window's end, interface SG = the
    true gradient each message gets from later windows through the slow core: the fast core's updates summed over
    the windows, and the slow core's update at its window's end, equal backpropagation through the whole sequence."""
    model, (xs, ys) = make_model(), sequence(W * T)
    state0 = start_state(model)

    full = copy.deepcopy(model)
    state, losses, finals, interfaces = state0.clone().requires_grad_(), [], [], []
    for x, y in zip(xs, ys):
        logits, state, interface = full.unroll(x, state, record=True)
        losses.append(F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), reduction="sum"))
        finals.append(state)
        interfaces.append(interface)
    params = dict(full.named_parameters())
    g_full = dict(zip(core_names(full), torch.autograd.grad(sum(losses), [params[n] for n in core_names(full)],
                                                            retain_graph=True)))
    procedure = TwoTimescaleWindow(model, slow_windows=W, boundary=Boundary(1.0), interface_scale=1.0)
    fast_pairs, interface_pairs = [], []
    for i in range(W - 1):
        later = torch.autograd.grad(sum(losses[i + 1:]), finals[i], retain_graph=True)[0]
        fast_pairs.append((model.squashed(finals[i][:, :2 * FAST].detach()), later[:, :2 * FAST]))
        # a message's later gradient through the slow core alone (the paths that come back into the fast core
        # inside the window are the window's own backward's: it carries the injected gradient along them)
        slow_start = (state0 if i == 0 else finals[i - 1])[:, 2 * FAST:-1].detach()
        leaves = [m.detach().requires_grad_() for m in interfaces[i].messages]
        _, states = model.slow_steps(slow_start, leaves)
        got = torch.autograd.grad(torch.cat(states[-1], 1), leaves, later[:, 2 * FAST:-1])
        key = procedure._interface_input([m.detach() for m in interfaces[i].messages], interfaces[i].slow_before)
        interface_pairs.append((key, torch.cat(got)))
    model.synthetic_gradient["fast"] = Oracle(fast_pairs, 2 * FAST)
    model.synthetic_gradient["interface"] = Oracle(interface_pairs, MESSAGE)
    procedure.heads = model.synthetic_gradient

    regressed = []  # (prediction, target) of every head regression, in call order
    procedure.observe = lambda name, prediction, target: regressed.append((prediction, target))
    procedure.learn_heads = False  # the oracles are not trained
    state, n = state0, T * B
    summed = {name: torch.zeros_like(p) for name, p in model.named_parameters() if name in g_full}
    for i, (x, y) in enumerate(zip(xs, ys)):
        model.zero_grad(set_to_none=True)
        state = procedure(x, y, None, state, ends_pass=i == W - 1).state
        for name, p in model.named_parameters():
            if name in summed and p.grad is not None:
                summed[name] += p.grad * (n if not name.startswith("slow.") else W * n)
    for name in g_full:
        torch.testing.assert_close(summed[name], g_full[name], rtol=1e-9, atol=1e-11, msg=name)
    # the interface head's target, formed by the slow core's backward, is that true later gradient
    interface_target = regressed[-1][1]
    torch.testing.assert_close(interface_target[:B * 2 * (W - 1)], torch.cat([out for _, out in interface_pairs]),
                               rtol=1e-9, atol=1e-12)
    assert torch.count_nonzero(interface_target[B * 2 * (W - 1):]) == 0  # the last window's: no later windows
    # and without the oracles (plain truncation at both boundaries) the fast core's gradient is not the full one
    plain = TwoTimescaleWindow(make_model(heads=False), slow_windows=W, boundary=None, interface_scale=1.0)
    state, gap = state0, torch.zeros(())
    for i, (x, y) in enumerate(zip(xs, ys)):
        plain.model.zero_grad(set_to_none=True)
        state = plain(x, y, None, state, ends_pass=i == W - 1).state
        gap = gap + plain.model.fast.weight_hh_l0.grad * n
    assert (gap - g_full["fast.weight_hh_l0"]).abs().max() > 1e-6


def test_evaluation_in_any_chunking_ticks_at_the_same_characters():
    model, (xs, _) = make_model(heads=False), sequence(3 * T + 1)
    x = torch.cat(xs)
    whole = model(x, start_state(model)).logits
    state, pieces = start_state(model), []
    for part in x.split([1, 2, 3, 1, 4, 2]):
        out = model(part, state)
        pieces.append(out.logits)
        state = out.state
    torch.testing.assert_close(torch.cat(pieces), whole, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("phase", [0, 1])
def test_evaluation_reads_as_the_training_unroll(phase):
    """forward (evaluation and sampling: the fast core step by step) computes what unroll (training: nn.LSTM per
    segment) does, from a state on or off a tick boundary; checked to fail when the context's share of the gates
    is left out."""
    model, (xs, _) = make_model(heads=False), sequence(3 * T + 1)
    x, state = torch.cat(xs), start_state(model)
    state[:, -1] = phase
    assert x.shape[1] <= STEPWISE_BATCH  # the stepwise path
    logits, final, _ = model.unroll(x, state)
    out = model(x, state)
    torch.testing.assert_close(out.logits, logits, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.state, final, rtol=1e-12, atol=1e-12)


def test_zero_scales_train_exactly_as_plain_truncation(tmp_path, tiny_trainer):
    """method=dni with every SG scaled to 0: the time-boundary heads learn, nothing is injected, and the cores follow
    plain truncation (method=bptt) exactly, the slow core on its own schedule in both. The interface head, unused at
    interface_scale 0, is not trained at all."""
    runs = {}
    for method, extra in (("bptt", []), ("dni", ["dni.scale=0", "model.interface_scale=0"])):
        trainer = tiny_trainer(tmp_path / method, method, [*HIERARCHICAL, "dni.lr=0.01", *extra])
        for _ in range(9):
            trainer.train_window()
        runs[method] = trainer
    bptt, dni = (dict(runs[m].model.named_parameters()) for m in ("bptt", "dni"))
    for name, value in bptt.items():
        assert torch.equal(value, dni[name]), name
    heads = runs["dni"].model.synthetic_gradient
    assert all(torch.count_nonzero(heads[k].output.weight) > 0 for k in ("fast", "slow"))
    assert torch.count_nonzero(heads["interface"].weight) == torch.count_nonzero(heads["interface"].bias) == 0


def test_a_fast_window_computes_no_slow_core_gradient(tmp_path, tiny_trainer):
    """The slow core's gradient is its own backward's, at its window's end: a fast window's backward does not form
    it (checked to fail when the window's backward fills every parameter)."""
    trainer = tiny_trainer(tmp_path, "dni", [*HIERARCHICAL, "model.interface_scale=0.5"])
    formed = []
    for p in trainer.model.slow.parameters():
        p.register_hook(lambda grad: formed.append(trainer.window.messages))
    for _ in range(2):  # model.slow_windows=3: neither window closes the slow window
        trainer.train_window()
    assert formed == []
    trainer.train_window()
    assert formed  # the slow window's own backward


def test_slow_scale_alone_injects_at_the_slow_boundary_only(tmp_path, tiny_trainer):
    """dni.scale=0, model.slow_scale>0: the fast core gets no SG, so everything but the slow core follows plain
    truncation until the slow core's SG-shaped updates reach it; the slow core's second update (its head learned in
    the first slow window) differs."""
    runs = {}
    for method, extra in (("bptt", []), ("dni", ["dni.scale=0", "model.slow_scale=0.5"])):
        trainer = tiny_trainer(tmp_path / method, method, [*HIERARCHICAL, "dni.lr=0.01", *extra])
        for _ in range(6):  # two slow windows of 3
            trainer.train_window()
        runs[method] = dict(trainer.model.named_parameters())
    for name, value in runs["bptt"].items():
        assert torch.equal(value, runs["dni"][name]) != name.startswith("slow."), name


def test_slow_core_is_updated_once_per_slow_window(tmp_path, tiny_trainer):
    trainer = tiny_trainer(tmp_path, "dni", HIERARCHICAL)
    slow = trainer.model.slow.weight_hh
    seen = [slow.detach().clone()]
    for _ in range(6):
        trainer.train_window()
        seen.append(slow.detach().clone())
    changed = [not torch.equal(a, b) for a, b in zip(seen, seen[1:])]
    assert changed == [False, False, True, False, False, True]


@pytest.mark.parametrize("method", ["dni", "dni_aux"])
def test_resume_mid_slow_window_is_bitwise(tmp_path, tiny_trainer, method):
    settings = [*HIERARCHICAL, "trainer.eval_every=120", "trainer.max_chars=360", "dni.lr=0.01"]
    (tmp_path / "whole").mkdir(), (tmp_path / "parts").mkdir()
    whole = tiny_trainer(tmp_path / "whole", method, settings)
    whole.train(MetricsLog(tmp_path / "whole" / "metrics.jsonl"))
    first = tiny_trainer(tmp_path / "parts", method, settings)
    original = first.train_window

    def stop_inside_a_slow_window():
        original()
        if first.step == 17:  # 17 = 5 slow windows of 3 and 2 fast windows into the sixth
            first.request_stop()

    first.train_window = stop_inside_a_slow_window
    with pytest.raises(trainer_module.Interrupted):
        first.train(MetricsLog(tmp_path / "parts" / "metrics.jsonl"))
    second = tiny_trainer(tmp_path / "parts", method, settings)
    restore(second, torch.load(tmp_path / "parts" / "last.pt", weights_only=True))
    second.train(MetricsLog(tmp_path / "parts" / "metrics.jsonl"))
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[name]), name
    drop = ("seconds", "chars_per_sec", "peak_rss_mb")
    strip = lambda path: [{k: v for k, v in r.items() if k not in drop} for r in read_metrics(path)]  # noqa: E731
    assert strip(tmp_path / "parts" / "metrics.jsonl") == strip(tmp_path / "whole" / "metrics.jsonl")


def test_dni_aux_at_weight_zero_trains_exactly_as_dni(tmp_path, tiny_trainer):
    runs = {}
    for method in ("dni", "dni_aux"):
        trainer = tiny_trainer(tmp_path / method, method, [*HIERARCHICAL, "dni.lr=0.01", "dni.aux_weight=0",
                                                           "trainer.weight_decay=0"])
        for _ in range(9):
            trainer.train_window()
        runs[method] = dict(trainer.model.named_parameters())
    assert set(runs["dni_aux"]) - set(runs["dni"]) == {f"aux_synthetic_gradient.{core}.{p}"
                                                       for core in ("fast", "slow") for p in ("weight", "bias")}
    for name, value in runs["dni"].items():
        assert torch.equal(value, runs["dni_aux"][name]), name


def test_aux_loss_trains_both_cores_but_leaves_every_heads_target_alone():
    """The aux heads read outputs recomputed from detached states: their loss reaches the fast and slow cores'
    weights, never the gradients the SG heads regress on (the start states', the contexts', the messages')."""
    xs, ys = sequence(W * T)
    seen = {}
    for weight in (0.0, 1.0):
        model = make_model(aux=True)
        with torch.no_grad():
            for layer in [*model.aux_synthetic_gradient.values(), *model.synthetic_gradient.values()]:
                out = layer.output if hasattr(layer, "output") else layer
                out.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(out.weight.numel()))
        procedure = TwoTimescaleWindow(model, W, Boundary(0.5, aux_weight=weight), interface_scale=0.5)
        targets, grads = [], {}
        procedure.observe = lambda name, prediction, target, into=targets: into.append(target)
        procedure.learn_heads = False
        state = start_state(model)
        for i, (x, y) in enumerate(zip(xs, ys)):
            model.zero_grad(set_to_none=True)
            state, _, _, aux, _ = procedure(x, y, None, state, ends_pass=False)
            grads.update({f"{name}@{i}": p.grad.clone() for name, p in model.named_parameters()
                          if p.grad is not None and not name.startswith(("synthetic", "aux"))})
        seen[weight] = targets, grads, aux
    (targets0, grads0, aux0), (targets1, grads1, aux1) = seen[0.0], seen[1.0]
    assert len(targets1) == W + 2 and float(aux1) > 0 and float(aux0) == float(aux1)
    for before, after in zip(targets0, targets1):
        torch.testing.assert_close(after, before, rtol=0, atol=0)
    for name in ("fast.weight_hh_l0@0", "embedding.weight@0", f"slow.weight_hh@{W - 1}"):
        assert not torch.allclose(grads0[name], grads1[name]), name
    assert torch.equal(grads0["message.weight@0"], grads1["message.weight@0"])


@pytest.mark.parametrize("overrides, message", [
    (["trainer.unroll=5"], "must be a multiple of model.slow_every"),
    (["model.slow_windows=0"], "model.slow_windows must be an integer >= 1"),
])
def test_hierarchical_settings_are_checked(overrides, message):
    from lmdni.config import validate

    cfg = compose(["model=hierarchical", "trainer.unroll=8", *overrides])
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_command_line_trains_evaluates_samples_and_compares_it(tmp_path, text_file):
    from .test_cli import TINY, run

    out = tmp_path / "hier"
    common = ["lmdni", "model=hierarchical", "method=dni", "data=text", f"data.path={text_file}", *TINY,
              "model.slow_every=2", "model.slow_hidden_size=12", "model.message_size=4", "model.slow_windows=2",
              f"hydra.run.dir={out}"]
    trained = run(common)
    assert trained.returncode == 0, trained.stderr[-1500:]
    assert (out / "results.json").is_file() and (out / "best.pt").is_file()
    evaluated = run(["lmdni.cli_eval", str(out), "--split", "valid"])
    assert evaluated.returncode == 0 and '"bpc"' in evaluated.stdout, evaluated.stderr[-1500:]
    sampled = run(["lmdni.sample", str(out), "--prime", "the ", "--length", "20", "--seed", "1"])
    assert sampled.returncode == 0 and sampled.stdout.startswith("the "), sampled.stderr[-1500:]
    compared = run(["lmdni.compare", str(out), "--no-plot"])
    assert compared.returncode == 0 and "dni (hierarchical)" in compared.stdout
    script = Path(__file__).resolve().parents[1] / "scripts" / "hierarchical_fidelity.py"
    probed = subprocess.run([sys.executable, str(script), str(out), "--slow-windows", "2"], capture_output=True,
                            text=True)
    assert probed.returncode == 0, probed.stderr[-1500:]
    rows = [line.split("|")[2].strip() for line in probed.stdout.splitlines() if line.startswith("| hier")]
    assert rows == ["fast", "slow", "interface"]
