"""SASRec: shapes, causality, padding, the tied loss, and memorising a tiny task."""

import pytest
import torch
import torch.nn.functional as F

from core.config import SASRecConfig
from core.models.sasrec import SASRec

CFG = SASRecConfig(hidden=16, layers=2, heads=2, dropout=0.2)


def model(n_items=20, max_len=6, cfg=CFG, seed=0):
    torch.manual_seed(seed)
    return SASRec(n_items, max_len, cfg).eval()


def test_shapes():
    m = model()
    inputs = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    assert m(inputs).shape == (2, 6, 16)
    assert m.user_vectors(inputs).shape == (2, 16)
    assert m.item_table().shape == (21, 16)
    assert m.item_table() is m.item_emb.weight  # tied: scoring uses the input table
    assert m.loss(inputs, inputs).dim() == 0


def test_causality():
    m = model()
    inputs = torch.tensor([[0, 2, 3, 4, 5, 6]])
    changed = inputs.clone()
    changed[0, 4] = 17
    before, after = m(inputs), m(changed)
    torch.testing.assert_close(before[:, :4], after[:, :4])
    assert not torch.allclose(before[:, 4:], after[:, 4:])


def test_extra_left_padding_changes_nothing():
    # Positions are right-aligned, and padding keys are masked.
    m = model(max_len=5)
    short = m.user_vectors(torch.tensor([[7, 8, 9]]))
    padded = m.user_vectors(torch.tensor([[0, 0, 7, 8, 9]]))
    torch.testing.assert_close(short, padded)


def test_padding_content_is_never_attended_and_all_padding_is_finite():
    m = model()
    inputs = torch.tensor([[0, 0, 0, 3, 4, 5], [0, 0, 0, 0, 0, 0]])
    before = m(inputs)
    assert torch.isfinite(before).all()
    with torch.no_grad():
        m.item_emb.weight[0].normal_(0, 5.0)  # garbage in the padding row
    after = m(inputs)
    torch.testing.assert_close(before[0, 3:], after[0, 3:])
    assert torch.isfinite(after).all()


def test_loss_equals_reference_and_ignores_padding_targets():
    m = model()
    inputs = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    targets = torch.tensor([[0, 0, 4, 5, 6, 7], [2, 3, 4, 5, 6, 7]])
    logits = m(inputs) @ m.item_table().T  # (B, L, n_items + 1)
    logits[..., 0] = float("-inf")
    reference = F.cross_entropy(logits.view(-1, 21), targets.view(-1), ignore_index=0)
    loss = m.loss(inputs, targets)
    torch.testing.assert_close(loss, reference)
    loss.backward()
    assert m.item_emb.weight.grad[0].eq(0).all()  # padding row never learns
    with pytest.raises(ValueError, match="every target is padding"):
        m.loss(inputs, torch.zeros_like(targets))


def test_rejects_sequences_longer_than_max_len():
    with pytest.raises(ValueError, match="max_len=6"):
        model()(torch.ones(1, 7, dtype=torch.long))


def test_memorises_a_tiny_task():
    torch.manual_seed(0)
    n_items, length = 20, 7
    # 8 sequences with distinct first items, so every prefix determines its next item.
    first = torch.randperm(n_items)[:8] + 1
    seqs = torch.stack([torch.cat([f.view(1), torch.randperm(n_items)[:length - 1] + 1]) for f in first])
    inputs, targets = seqs[:, :-1].clone(), seqs[:, 1:].clone()
    inputs[:4, :2], targets[:4, :2] = 0, 0  # half of them left-padded
    m = SASRec(n_items, length - 1, SASRecConfig(hidden=32, layers=2, heads=2, dropout=0.0)).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first_loss = m.loss(inputs, targets).item()
    for _ in range(60):
        opt.zero_grad()
        loss = m.loss(inputs, targets)
        loss.backward()
        opt.step()
    assert first_loss > 2.5  # about log(20) at the start
    assert loss.item() < 0.05
