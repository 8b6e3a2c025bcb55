"""Target ranks against hand-computed examples and a brute-force sort-based reference."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.eval.metrics import metrics_from_ranks
from core.eval.ranking import full_ranks, full_ranks_from_scores, full_ranks_topk, pad_history, sampled_ranks

# Five items scored by the first coordinate (user vector [1, 0]):
#   item:  1  2  3  4  5      padding row 0 scores 100 but must never count.
#   score: 5  4  3  3  1
TABLE = torch.tensor([[100.0, 0.0], [5.0, 9.0], [4.0, 9.0], [3.0, 9.0], [3.0, 9.0], [1.0, 9.0]])
USER = torch.tensor([[1.0, 0.0]])


def ranks(target, history=None, **kwargs):
    targets = torch.tensor([target])
    return full_ranks(USER, TABLE, targets, history, **kwargs).item()


def test_hits_at_rank_zero_and_rank_k():
    assert ranks(1) == 0
    assert ranks(2) == 1
    assert ranks(5) == 4  # last of five items


def test_ties_are_pessimistic():
    # Items 3 and 4 both score 3: each is ranked below the other (items 1, 2 and the twin above).
    assert ranks(3) == 3
    assert ranks(4) == 3
    constant = torch.ones(6, 1)
    assert full_ranks(torch.ones(2, 1), constant, torch.tensor([1, 5])).tolist() == [4, 4]


def test_history_masking_removes_items_but_keeps_the_target():
    assert ranks(3, [torch.tensor([1])]) == 2  # item 1 no longer counts
    assert ranks(3, [torch.tensor([1, 2, 4])]) == 0  # everything above masked, tie partner too
    assert ranks(3, [torch.tensor([3, 1])]) == 2  # target in its own history is still ranked
    assert ranks(5, torch.tensor([[0, 0, 2, 0]])) == 3  # padded (B, H) history; 0 is padding


def test_padding_is_never_counted():
    # Row 0 scores 100, above everything, yet item 1 is still rank 0.
    assert ranks(1) == 0
    scores = USER @ TABLE.T  # (1, 6)
    assert full_ranks_from_scores(scores, torch.tensor([1])).item() == 0


def test_miss_beyond_k():
    # 30 items, item i scores 31 - i: target 26 is at rank 25, outside every K <= 20.
    table = torch.cat([torch.zeros(1, 1), torch.arange(30, 0, -1.0)[:, None]])
    r = full_ranks(torch.ones(1, 1), table, torch.tensor([26]))
    assert r.item() == 25
    assert metrics_from_ranks(r)["HR@20"] == 0.0


def test_bf16_inputs_are_compared_in_float32():
    # 256 + 1 = 257 is not a bf16 number (it rounds to 256), so bf16 scores would tie the items.
    user = torch.tensor([[1.0, 1.0]], dtype=torch.bfloat16)
    table = torch.tensor([[0.0, 0.0], [256.0, 1.0], [256.0, 0.0]], dtype=torch.bfloat16)
    assert full_ranks(user, table, torch.tensor([1])).item() == 0
    assert sampled_ranks(user, table, torch.tensor([1]), torch.tensor([[2]])).item() == 0


def test_scores_stay_float32_under_a_callers_bf16_autocast():
    user = torch.tensor([[1.0, 1.0]])
    table = torch.tensor([[0.0, 0.0], [256.0, 1.0], [256.0, 0.0]])
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        assert full_ranks(user, table, torch.tensor([1])).item() == 0
        assert full_ranks_topk(user, table, torch.tensor([1]), top_k=1)[1].tolist() == [[1]]
        assert sampled_ranks(user, table, torch.tensor([1]), torch.tensor([[2]])).item() == 0


def test_sampled_ranks_hand_example():
    # Scores are the first coordinate of each item (see TABLE).
    users = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    targets = torch.tensor([2, 3, 5])
    negatives = torch.tensor([[5, 3, 1],   # 1 scores 5 > 4: rank 1
                              [4, 5, 2],   # 4 ties 3 (pessimistic), 2 scores 4: rank 2
                              [1, 0, 0]])  # 0 is padding, not a negative: rank 1
    assert sampled_ranks(users, TABLE, targets, negatives).tolist() == [1, 2, 1]


def test_history_list_equals_padded_tensor():
    lists = [torch.tensor([1, 4]), torch.tensor([], dtype=torch.long), torch.tensor([2])]
    padded = pad_history(lists, 3, torch.device("cpu"))
    assert padded.tolist() == [[1, 4], [0, 0], [2, 0]]
    targets = torch.tensor([3, 3, 3])
    users = USER.expand(3, 2)
    assert full_ranks(users, TABLE, targets, lists).tolist() == [1, 3, 2]
    assert full_ranks(users, TABLE, targets, padded).tolist() == [1, 3, 2]


def test_chunked_equals_unchunked_on_random_data():
    gen = torch.Generator().manual_seed(0)
    batch, n_items, dim = 17, 203, 8
    users = torch.randn(batch, dim, generator=gen)
    table = torch.randn(n_items + 1, dim, generator=gen)
    table[7] = table[11]  # an exact duplicate: a tie the chunked path must also see
    targets = torch.randint(1, n_items + 1, (batch,), generator=gen)
    targets[0] = 7
    history = [torch.randint(0, n_items + 1, (int(n),), generator=gen)
               for n in torch.randint(0, 40, (batch,), generator=gen)]
    for hist in (None, history):
        reference = full_ranks_from_scores(users @ table.T, targets, hist)
        for chunk in (1, 3, 7, 64, 204, 65536):
            assert torch.equal(full_ranks(users, table, targets, hist, item_chunk=chunk), reference)
    assert full_ranks(users, table, targets)[0] >= 1  # item 11 ties item 7 and counts above it


def brute_force_rank(scores, target, history):
    """Sort-based reference: candidates by score descending, the target after its ties."""
    masked = set(history) - {target}
    candidates = [i for i in range(1, len(scores)) if i not in masked]
    order = sorted(candidates, key=lambda i: (-scores[i], i == target))
    return order.index(target)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_full_ranking_hr_matches_brute_force(data):
    batch = data.draw(st.integers(1, 6))
    n_items = data.draw(st.integers(1, 30))
    rows = data.draw(st.lists(st.lists(st.integers(0, 3), min_size=n_items + 1, max_size=n_items + 1),
                              min_size=batch, max_size=batch))
    targets = data.draw(st.lists(st.integers(1, n_items), min_size=batch, max_size=batch))
    history = data.draw(st.lists(st.lists(st.integers(0, n_items), max_size=8), min_size=batch, max_size=batch))
    expected = [brute_force_rank(rows[b], targets[b], history[b]) for b in range(batch)]

    scores = torch.tensor(rows, dtype=torch.float32)  # (B, n_items + 1), small ints: many ties
    t = torch.tensor(targets)
    hist = [torch.tensor(h, dtype=torch.long) for h in history]
    # Factorised form with the identity table gives exactly the same score matrix.
    got = full_ranks(scores, torch.eye(n_items + 1), t, hist, item_chunk=data.draw(st.integers(1, 8)))
    assert got.tolist() == expected
    assert full_ranks_from_scores(scores, t, hist).tolist() == expected
    metrics = metrics_from_ranks(got)
    for k in (1, 5, 10, 20):
        assert metrics[f"HR@{k}"] == sum(r < k for r in expected) / batch
