"""Target ranks: the ground truth every metric is computed from (docs/method.md section 4).

A rank is the 0-based position of a user's target item in the model's ordering: 0 means the target
scored highest. Conventions, stated once for every function here:

- Item ids are 1..n_items; id 0 is padding, never a real item and never counted as a competitor.
- Ties are broken PESSIMISTICALLY: an item whose score equals the target's is counted as ranked
  above it. A model that gives every item the same score therefore ranks each target last, never
  first, so constant or collapsed models cannot look good by accident.
- History masking (full ranking): items in the user's history are left out of the count, except the
  target itself, which is always ranked (a repeated purchase is still a hit).
- Scores are compared in at least float32 (bf16 inputs are upcast), so bf16 rounding cannot create
  ties that would not exist at full precision.

`full_ranks` ranks against the whole catalogue in item chunks, so a 1M-item catalogue never needs
a (B, n_items) score matrix (`full_ranks_topk` also keeps a running top-K list per user, and
core/eval/batched.py drives either over user batches); `full_ranks_from_scores` does the same for
a model that returns scores directly, and the two agree exactly (tested). `sampled_ranks` is the secondary protocol of
docs/method.md section 4: the target against K sampled negatives.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

History = Sequence[Tensor] | Tensor | None


def pad_history(history: History, batch: int, device: torch.device) -> Tensor:
    """History as a (B, H) LongTensor on `device`, right-padded with 0 (H >= 1).

    Accepts a list of 1-D LongTensors (one per user, any lengths), an already padded (B, H) tensor
    with 0 as padding, or None (no history: a single column of padding).
    """
    if history is None:
        return torch.zeros(batch, 1, dtype=torch.long, device=device)
    if isinstance(history, Tensor):
        if history.dim() != 2 or history.shape[0] != batch:
            raise ValueError(f"history: expected a (B={batch}, H) tensor, got shape {tuple(history.shape)}")
        return history.to(device=device, dtype=torch.long)
    if len(history) != batch:
        raise ValueError(f"history: expected {batch} sequences (one per user), got {len(history)}")
    width = max([1] + [len(h) for h in history])
    padded = torch.zeros(batch, width, dtype=torch.long, device=device)
    for row, items in enumerate(history):
        padded[row, : len(items)] = torch.as_tensor(items, dtype=torch.long, device=device)
    return padded


def _score_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype scores are compared in: the inputs' common dtype, but at least float32."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _exact(device: torch.device):
    """Autocast off: a caller may compute user vectors in bf16, but scores are compared in at least
    float32 so that bf16 rounding never creates ties."""
    return torch.autocast(device_type=device.type, enabled=False)


def _excluded_items(targets: Tensor, history: History) -> Tensor:
    """(B, E) ids never counted above a target: padding 0, the target itself, and the history.

    Excluding the target from the count and excluding history items is the same as "mask the
    history except the target", since the target is never its own competitor.
    """
    batch = targets.shape[0]
    hist = pad_history(history, batch, targets.device)  # (B, H)
    padding = torch.zeros(batch, 1, dtype=torch.long, device=targets.device)
    return torch.cat([padding, targets[:, None], hist], dim=1)  # (B, H + 2)


def check_targets(targets: Tensor, n_items: int) -> None:
    """Refuse targets that are not a 1-D tensor of item ids in 1..n_items. It reads their range back,
    which on a GPU waits for the work queued before: a caller that checked them on the host passes
    validate=False to the ranking functions instead."""
    if targets.dim() != 1:
        raise ValueError(f"targets: expected a 1-D tensor (B,), got shape {tuple(targets.shape)}")
    if targets.numel() and (targets.min() < 1 or targets.max() > n_items):
        raise ValueError(f"targets: expected item ids in 1..{n_items} (0 is padding), "
                         f"got values in {targets.min().item()}..{targets.max().item()}")


def full_ranks_from_scores(scores: Tensor, targets: Tensor, history: History = None) -> Tensor:
    """0-based rank (B,) of each target among all real items, from a (B, n_items + 1) score matrix.

    Column 0 (padding) is ignored; ties are pessimistic; history items other than the target are
    not counted (pass history=None to rank against every item).
    """
    width = scores.shape[1]  # scores: (B, n_items + 1)
    targets = targets.long()
    check_targets(targets, width - 1)
    scores = scores.to(_score_dtype(scores))
    target_scores = scores.gather(1, targets[:, None])  # (B, 1)
    above = scores >= target_scores  # (B, n_items + 1), ties count as above
    above[_in_chunk(_excluded_items(targets, history), 0, width)] = False
    return above.sum(dim=1)


def _distinct(excluded: Tensor) -> Tensor:
    """The excluded ids (B, E) with each row's repeats (padding, a target also in the history)
    replaced by -1, which no chunk holds, so each id is discounted once."""
    ids = excluded.sort(dim=1).values
    repeat = torch.zeros_like(ids, dtype=torch.bool)
    repeat[:, 1:] = ids[:, 1:] == ids[:, :-1]
    return ids.masked_fill(repeat, -1)


def _excluded_above(above: Tensor, distinct: Tensor, start: int) -> Tensor:
    """(B,) how many of the distinct excluded ids fall in this chunk and are marked in `above`
    (B, width): computed on the device, with nothing read back to the host."""
    local = distinct - start
    inside = (local >= 0) & (local < above.shape[1])
    return (above.gather(1, local.clamp(0, above.shape[1] - 1)) & inside).sum(dim=1)


def _hide(scores: Tensor, hidden: Tensor, start: int, width: int) -> None:
    """Set the chunk's scores (the first `width` columns of `scores`) to -inf at the hidden ids
    (B, E), on the device. Ids outside the chunk write to column `width`, a target column already
    read; every write is -inf, so repeated ids cannot conflict."""
    local = hidden - start
    inside = (local >= 0) & (local < width)
    scores[:, :width + 1].scatter_(1, torch.where(inside, local, width), float("-inf"))


def _in_chunk(excluded: Tensor, start: int, width: int) -> tuple[Tensor, Tensor]:
    """(rows, columns) of the `excluded` ids (B, E) that fall in items start..start+width-1.

    Excluding by index costs O(B * E) per chunk instead of a (B, width) mask.
    """
    rows, slots = ((excluded >= start) & (excluded < start + width)).nonzero(as_tuple=True)
    return rows, excluded[rows, slots] - start


def _scan(user_vectors: Tensor, item_table: Tensor, targets: Tensor, history: History, item_chunk: int,
          top_k: int, validate: bool = True) -> tuple[Tensor, Tensor | None]:
    """The loop shared by `full_ranks` and `full_ranks_topk` (see their docstrings). It reads nothing
    back to the host (with validate=False), so a GPU caller can queue the next batch while one runs."""
    if item_chunk < 1:
        raise ValueError(f"item_chunk: expected >= 1, got {item_chunk}")
    n_rows = item_table.shape[0]  # n_items + 1
    targets = targets.long()
    if validate:
        check_targets(targets, n_rows - 1)
    if top_k > n_rows - 1:
        raise ValueError(f"top_k: expected at most the {n_rows - 1} items, got {top_k}")
    dtype = _score_dtype(user_vectors, item_table)
    users = user_vectors.to(dtype)  # (B, d)
    batch = users.shape[0]
    target_rows = item_table[targets]  # (B, d)
    excluded = _excluded_items(targets, history)  # (B, E): padding, target, history
    distinct = _distinct(excluded)
    # Top-K leaves out padding and the history, but not the target (a repeat is a fair pick).
    hidden = excluded.masked_fill(excluded == targets[:, None], 0)
    counts = torch.zeros(batch, dtype=torch.long, device=users.device)
    best_scores = torch.empty(batch, 0, dtype=dtype, device=users.device)
    best_items = torch.empty(batch, 0, dtype=torch.long, device=users.device)
    for start in range(0, n_rows, item_chunk):
        block = item_table[start:start + item_chunk]  # (C, d)
        width = block.shape[0]
        # The target rows ride along in the same matmul as the chunk, so a target and an item with
        # an identical embedding get bit-identical scores and the tie is counted as a tie.
        with _exact(users.device):
            scores = users @ torch.cat([block, target_rows]).to(dtype).T  # (B, C + B)
        target_scores = scores[:, width:].diagonal()  # (B,) user b against its own target
        chunk = scores[:, :width]  # (B, C)
        above = chunk >= target_scores[:, None]  # ties count as above
        counts += above.sum(dim=1) - _excluded_above(above, distinct, start)
        if top_k:  # `above` is counted: the target columns may now be overwritten
            _hide(scores, hidden, start, width)
            if start == 0:
                chunk[:, 0] = float("-inf")  # padding
            chunk_scores, chunk_items = chunk.topk(min(top_k, width), dim=1)  # (B, <= K) of this chunk
            merged_scores = torch.cat([best_scores, chunk_scores], dim=1)  # (B, <= 2K)
            best_scores, where = merged_scores.topk(min(top_k, merged_scores.shape[1]), dim=1)
            best_items = torch.cat([best_items, chunk_items + start], dim=1).gather(1, where)
    return counts, (best_items if top_k else None)


def full_ranks(user_vectors: Tensor, item_table: Tensor, targets: Tensor, history: History = None,
               item_chunk: int = 65536, *, validate: bool = True) -> Tensor:
    """0-based rank (B,) of each target among all real items, scored by dot product.

    user_vectors (B, d) and item_table (n_items + 1, d), row 0 being padding. Items are scored
    `item_chunk` at a time, counting per chunk the items that score >= the target (pessimistic
    ties), so memory is O(B * (item_chunk + B)) whatever the catalogue size. Same semantics as
    `full_ranks_from_scores(user_vectors @ item_table.T, targets, history)`. validate=False skips
    `check_targets`, the only read-back, for targets already checked on the host.
    """
    return _scan(user_vectors, item_table, targets, history, item_chunk, 0, validate)[0]


def full_ranks_topk(user_vectors: Tensor, item_table: Tensor, targets: Tensor, history: History = None,
                    top_k: int = 10, item_chunk: int = 65536) -> tuple[Tensor, Tensor]:
    """(ranks (B,) as `full_ranks`, top_k item ids (B, top_k) best first), in one pass over the items.

    The top-K list leaves out padding and history items other than the target, so the target is in
    it exactly when its rank is below top_k, up to the order of tied scores. It is merged chunk by
    chunk (a running top-K), so it never needs a (B, n_items) matrix either.
    """
    return _scan(user_vectors, item_table, targets, history, item_chunk, top_k)


def sampled_ranks(user_vectors: Tensor, item_table: Tensor, targets: Tensor, negatives: Tensor) -> Tensor:
    """0-based rank (B,) of each target among itself and its K sampled negatives (B, K).

    Scores are dot products; ties are pessimistic. Negative ids of 0 are padding and not counted
    (so users may have fewer than K negatives).
    """
    dtype = _score_dtype(user_vectors, item_table)
    targets, negatives = targets.long(), negatives.long()
    candidates = torch.cat([targets[:, None], negatives], dim=1)  # (B, 1 + K), target first
    vectors = item_table[candidates].to(dtype)  # (B, 1 + K, d)
    with _exact(user_vectors.device):
        scores = torch.einsum("bd,bkd->bk", user_vectors.to(dtype), vectors)  # (B, 1 + K)
    above = (scores[:, 1:] >= scores[:, :1]) & (negatives != 0)  # (B, K)
    return above.sum(dim=1)
