import math

import pytest
import torch

from lmdni.evaluate import split_bpc, split_nats
from lmdni.model import CoreOutput


class Uniform(torch.nn.Module):
    """Logits all zero: every symbol has probability 1/V, whatever the state."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.seen = 0

    def initial_state(self, batch, device=None):
        return torch.zeros(batch, 2)

    def forward(self, x, state, with_synthetic_gradient=False):
        self.seen += x.numel()
        return CoreOutput(torch.zeros(*x.shape, self.vocab), state, None, None)


@pytest.mark.parametrize("vocab,n,batch", [(50, 1001, 16), (7, 33, 64), (2, 2, 1)])
def test_uniform_model_has_log2_vocab_bpc(vocab, n, batch):
    model = Uniform(vocab)
    data = torch.randint(vocab, (n,))
    assert split_bpc(model, data, batch) == pytest.approx(math.log2(vocab), rel=1e-6)  # float32 log
    model.seen = 0
    _, count = split_nats(model, data, batch)
    assert count == n - 1 == model.seen
