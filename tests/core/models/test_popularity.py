"""Most-popular baseline on a hand example, ranked by the shared ranking code."""

import numpy as np
import pytest
import torch

from core.eval.ranking import full_ranks
from core.models.popularity import Popularity, item_counts

SEQUENCES = [np.array([1, 2, 2, 3]), np.array([0, 2, 3]), np.array([4])]  # 0 is padding
# counts: item 1 -> 1, 2 -> 3, 3 -> 2, 4 -> 1, 5 -> 0


def test_counts_and_factorised_form():
    model = Popularity(5, SEQUENCES)
    assert model.item_table()[:, 0].tolist() == [0.0, 1.0, 3.0, 2.0, 1.0, 0.0]
    users = model.user_vectors(torch.zeros(3, 4, dtype=torch.long))
    assert users.shape == (3, 1) and users.eq(1).all()


def test_ranks_hand_example():
    model = Popularity(5, SEQUENCES)
    targets = torch.tensor([2, 3, 1, 4, 5])
    users = model.user_vectors(torch.zeros(5, 4, dtype=torch.long))
    # 2 is most popular; 3 second; 1 and 4 tie at count 1 (pessimistic: behind 2, 3 and each
    # other); 5 is last.
    assert full_ranks(users, model.item_table(), targets).tolist() == [0, 1, 3, 3, 4]
    history = [torch.tensor([2])] * 5  # masking item 2 lifts everyone else by one
    assert full_ranks(users, model.item_table(), targets, history).tolist() == [0, 0, 2, 2, 3]


def test_out_of_range_items_are_refused():
    with pytest.raises(ValueError, match="0..3"):
        item_counts([np.array([1, 4])], 3)
