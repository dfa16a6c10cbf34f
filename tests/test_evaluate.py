import math

import pytest
import torch
import torch.nn.functional as F

from lmdni.evaluate import bits_per_character, split_bpc, split_nats, whole_splits_nats
from lmdni.hierarchical import HierarchicalCore
from lmdni.model import CoreOutput, LSTMCore


class Bigram(torch.nn.Module):
    """Logits that depend on the input symbol only: the BPC of a split can then be computed by hand."""

    def __init__(self, vocab, seed=0):
        super().__init__()
        self.log_probs = torch.log_softmax(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(seed)), 1)
        self.seen = 0

    def initial_state(self, batch, device=None):
        return torch.zeros(batch, 2)

    def forward(self, x, state, with_synthetic_gradient=False):
        self.seen += x.numel()
        return CoreOutput(self.log_probs[x], state, None, None)


@pytest.mark.parametrize("vocab,n,columns", [(50, 1001, 16), (7, 33, 64), (2, 2, 1), (5, 300, 1)])
def test_bigram_model_bpc_is_the_mean_of_its_log_probabilities(vocab, n, columns):
    model = Bigram(vocab)
    data = torch.randint(vocab, (n,), generator=torch.Generator().manual_seed(1))
    # each prediction's cost is the log-probability of its own target: a wrong pairing gives another number
    by_hand = -model.log_probs[data[:-1], data[1:]].double().sum().item() / (math.log(2) * (n - 1))
    assert split_bpc(model, data, columns) == pytest.approx(by_hand, rel=1e-6)
    model.seen = 0
    _, count = split_nats(model, data, columns)
    assert count == n - 1 == model.seen


def lstm(seed=0, vocab=9):
    torch.manual_seed(seed)
    return LSTMCore(vocab, 16, 2, embedding_size=8).double()


def by_hand_nats(model, data):
    """The whole split, one step at a time from one zero state: what published numbers compute."""
    state = model.initial_state(1).double()
    total = 0.0
    with torch.no_grad():
        for t in range(len(data) - 1):
            out = model(data[t].view(1, 1), state, with_synthetic_gradient=False)
            total += F.cross_entropy(out.logits[0], data[t + 1].view(1), reduction="sum").item()
            state = out.state
    return total


@pytest.mark.parametrize("chunk", [7, 64, None])
def test_whole_split_equals_a_one_step_unroll_across_chunk_boundaries(chunk):
    model = lstm()
    data = torch.randint(9, (150,), generator=torch.Generator().manual_seed(2))
    nats, count = split_nats(model, data, columns=1, chunk=chunk)
    assert count == 149
    assert nats == pytest.approx(by_hand_nats(model, data), rel=1e-7)  # the evaluation takes logits in float32


def test_columns_each_start_from_zero_and_the_tail_continues_the_last():
    model = lstm(1)
    data = torch.randint(9, (105,), generator=torch.Generator().manual_seed(3))  # 104 predictions: 3 × 34 + 2
    nats, count = split_nats(model, data, columns=3, chunk=5)
    # column k predicts symbols 34k+1 .. 34k+34 from a zero state; the last column then goes on over the tail
    expected = sum(by_hand_nats(model, data[34 * k: 34 * k + 35]) for k in range(2)) + by_hand_nats(model, data[68:])
    assert count == 104 and nats == pytest.approx(expected, rel=1e-7)  # the evaluation takes logits in float32
    whole, _ = split_nats(model, data, columns=1)
    assert whole != pytest.approx(nats, rel=1e-6)  # the two modes differ: each column's start lacks context


@pytest.mark.parametrize("kind", ["lstm", "hierarchical"])
def test_splits_side_by_side_each_equal_their_whole_split(kind):
    """Three splits of different lengths as columns of one batch, leaving it as they end, across chunk boundaries:
    each gets its own whole-split nats (the two-timescale model: its ticks stay on each split's characters)."""
    torch.manual_seed(0)
    model = lstm() if kind == "lstm" else HierarchicalCore(9, 8, 6, 3, 4, embedding_size=5).double()
    splits = [torch.randint(9, (n,), generator=torch.Generator().manual_seed(n)) for n in (40, 300, 7)]
    together = whole_splits_nats(model, splits)
    for data, (nats, count) in zip(splits, together):
        alone = split_nats(model, data, columns=1, chunk=11)
        assert count == alone[1] == len(data) - 1
        assert nats == pytest.approx(alone[0], rel=1e-9)
    assert together[0][0] != pytest.approx(together[1][0], rel=1e-3)  # not one split's number three times


def test_bits_per_character_units():
    assert bits_per_character(math.log(2) * 10, 10) == 1.0
