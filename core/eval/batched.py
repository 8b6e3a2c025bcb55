"""Full ranking for a whole user population: user batches x item chunks (docs/method.md section 4).

`rank_users` walks the users `batch_size` at a time and, inside `full_ranks_topk`, the items
`item_chunk` at a time, so peak memory is about batch_size x (item_chunk + batch_size) scores
whatever the number of users or items: no users x items matrix is ever built, and each batch
yields its target ranks (and optionally its top-K items) before the next starts. Histories come
as a `Ragged` (core.data.sequences, e.g. `examples.history(prepared, split)`) and are padded one
batch at a time, without a Python loop over users.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from core.data.sequences import Ragged
from core.eval.ranking import full_ranks_topk
from core.runtime.device import host_to_device

VectorsOf = Callable[[np.ndarray], torch.Tensor]


@torch.no_grad()
def rank_users(user_vectors: torch.Tensor | VectorsOf, item_table: torch.Tensor, targets: np.ndarray,
               history: Ragged | None = None, *, users: np.ndarray | None = None, batch_size: int = 1024,
               item_chunk: int = 65536, top_k: int = 0,
               on_batch: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(0-based target rank per user (U,), top_k item ids per user (U, top_k) or None).

    user_vectors: a (n_users, d) tensor, or a function from user ids (B,) to their (B, d) vectors
    (so a model can compute them batch by batch); item_table (n_items + 1, d) on the device to
    score on; targets: (n_users,) target item per user; history: items to mask per user (None:
    no masking); users: which users (default all). on_batch(done, total) reports progress.
    """
    users = np.arange(len(targets)) if users is None else np.asarray(users)
    device = item_table.device
    ranks = np.empty(len(users), dtype=np.int64)
    top = np.empty((len(users), top_k), dtype=np.int64) if top_k else None
    for start in range(0, len(users), batch_size):
        rows = users[start:start + batch_size]
        vectors = user_vectors(rows) if callable(user_vectors) else user_vectors[torch.as_tensor(rows)]
        target = host_to_device(targets[rows], device)
        masked = host_to_device(history.padded(rows), device) if history is not None else None
        batch_ranks, batch_top = full_ranks_topk(vectors.to(device), item_table, target, masked, top_k, item_chunk)
        ranks[start:start + len(rows)] = batch_ranks.cpu().numpy()
        if top is not None:
            top[start:start + len(rows)] = batch_top.cpu().numpy()
        if on_batch is not None:
            on_batch(start + len(rows), len(users))
    return ranks, top
