"""SLMRec loss terms against hand computations, and the block pairing rule."""

import math

import pytest
import torch
import torch.nn.functional as F

from core.config import ConfigError, DistillConfig
from core.config import block_pairs
from core.train.distill import cosine_term, norm_term, slmrec_loss, supervision_term


@pytest.mark.parametrize("m,n,b,pairs", [
    (8, 4, 4, [(2, 1), (4, 2), (6, 3), (8, 4)]),
    (30, 6, 3, [(10, 2), (20, 4), (30, 6)]),
    (30, 4, 2, [(15, 2), (30, 4)]),
])
def test_block_pairs(m, n, b, pairs):
    assert block_pairs(m, n, b) == pairs


def test_block_refusal_lists_valid_b():
    with pytest.raises(ConfigError, match="valid B: 1, 2"):
        block_pairs(30, 4, 4)


def test_cosine_term_by_hand():
    # block 1: identical directions (cos 1, cos 1); block 2: orthogonal (0) and opposite (-1)
    t = [torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 0.0], [1.0, 1.0]])]
    s = [torch.tensor([[3.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 1.0], [-1.0, -1.0]])]
    # mean cos = (1 + 1 + 0 - 1) / 4 = 0.25
    assert cosine_term(t, s).item() == pytest.approx(0.75)


def test_norm_term_is_squared_and_averaged():
    t = [torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0]])]
    s = [torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 1.0]])]
    # ||(3,4)||^2 / 2 = 12.5 for block 1, 0 for block 2 -> mean 6.25 (the public code's unsquared: 5 / 2)
    assert norm_term(t, s).item() == pytest.approx(6.25)


def test_supervision_term_by_hand():
    scores = [torch.tensor([[0.0, 0.0, math.log(2.0)]]), torch.tensor([[0.0, 0.0, 0.0]])]
    target = torch.tensor([2])
    # CE1 = -log(2/4) = log 2; CE2 = log 3
    assert supervision_term(scores, target).item() == pytest.approx((math.log(2) + math.log(3)) / 2)
    assert supervision_term([], target).item() == 0.0


def test_total_weights_every_term():
    torch.manual_seed(0)
    t = [torch.randn(3, 4) for _ in range(2)]
    s = [torch.randn(3, 4) for _ in range(2)]
    scores = [torch.randn(3, 5)]
    target = torch.tensor([1, 2, 3])
    ce = torch.tensor(2.0)
    cfg = DistillConfig(lambda_cos=1.0, lambda_norm=0.1, lambda_sup=0.5)
    total, terms = slmrec_loss(ce, t, s, scores, target, cfg)
    expected = 2.0 + cosine_term(t, s) + 0.1 * norm_term(t, s) + 0.5 * F.cross_entropy(scores[0], target)
    assert total.item() == pytest.approx(expected.item())
    assert set(terms) == {"total", "ce", "cos", "norm", "ms"}
    zero, _ = slmrec_loss(ce, t, s, scores, target, DistillConfig(lambda_cos=0, lambda_norm=0, lambda_sup=0))
    assert zero.item() == 2.0
