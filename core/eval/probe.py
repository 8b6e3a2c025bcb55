"""Per-layer readout: rank every item with a user vector read from one layer.

Zero-shot readout of state l (the backbone's index convention: 0 = input embeddings, l = after
decoder layer l, before the final norm) applies the model's own final norm and score head to that
layer's last-position state: head(norm(h_l)). At l = num_layers this is exactly the model's own user
vector, so the readout of the last layer reproduces the model's evaluation. Adapter readout applies
SLMRec's trained block adapter k to the layer it was trained on: adapter_k(norm(h_l)).

States are computed once per user (`last_states`), and `lookup_user_vectors` turns precomputed
vectors into the `user_vectors(inputs)` function that `evaluate_split` takes: it finds each input
row's user by the row's content (a model's state is a function of its input row alone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from core.eval.evaluate import SplitRanks, UserVectors, evaluate_split


@torch.no_grad()
def last_states(model, inputs: Tensor, layers: Sequence[int], batch_size: int,
                on_batch: Callable[[int], None] | None = None) -> list[Tensor]:
    """Per requested layer, the (n, H) float32 last-position states of inputs (n, max_len), in batches."""
    parts: list[list[Tensor]] = [[] for _ in layers]
    for start in range(0, len(inputs), batch_size):
        for part, state in zip(parts, model.last_states(inputs[start:start + batch_size], layers)):
            part.append(state.float())
        if on_batch is not None:
            on_batch(min(start + batch_size, len(inputs)))
    return [torch.cat(part) for part in parts]


@torch.no_grad()
def _batched(fn: Callable[[Tensor], Tensor], states: Tensor, batch_size: int) -> Tensor:
    """fn applied to (B, H) slices of states (n, H): the batches the model's own evaluation uses."""
    return torch.cat([fn(states[i:i + batch_size]) for i in range(0, len(states), batch_size)]).float()


def readout_vectors(model, states: Sequence[Tensor], batch_size: int) -> dict[int, Tensor]:
    """{l: (n, item_dim)} zero-shot user vectors head(norm(h_l)) for states[l], l = 0..len(states)-1."""
    norm, head = model.backbone.norm, model.head
    return {layer: _batched(lambda h: head(norm(h)), h, batch_size) for layer, h in enumerate(states)}


@torch.no_grad()
def adapter_readout_vectors(model, states: Sequence[Tensor], batch_size: int) -> dict[int, Tensor]:
    """{l: (n, item_dim)} user vectors of each trained block adapter from its own layer's states."""
    layers = list(model.adapter_layers)
    parts: list[list[Tensor]] = [[] for _ in layers]
    for start in range(0, len(states[0]), batch_size):
        batch = [states[layer][start:start + batch_size] for layer in layers]
        for part, vectors in zip(parts, model.adapter_vectors(batch)):
            part.append(vectors.float())
    return {layer: torch.cat(part) for layer, part in zip(layers, parts)}


def lookup_user_vectors(inputs: np.ndarray, vectors: Tensor) -> UserVectors:
    """A `user_vectors(inputs (B, L)) -> (B, d)` function returning precomputed rows of `vectors`.

    inputs (n, L) and vectors (n, d) are aligned row by row; a batch row not among `inputs` is an error.
    """
    rows = np.ascontiguousarray(inputs, dtype=np.int64)
    index = {row.tobytes(): i for i, row in enumerate(rows)}

    def user_vectors(batch: Tensor) -> Tensor:
        keys = np.ascontiguousarray(batch.cpu().numpy(), dtype=np.int64)
        missing = [i for i, row in enumerate(keys) if row.tobytes() not in index]
        if missing:
            raise ValueError(f"readout: {len(missing)} input row(s) were not among the analysed users' inputs")
        positions = torch.tensor([index[row.tobytes()] for row in keys], device=vectors.device)
        return vectors[positions]
    return user_vectors


def evaluate_readouts(vectors: dict[int, Tensor], inputs: np.ndarray, item_table: Tensor, prepared, split: str,
                      max_len: int, users: np.ndarray, mask_history: bool) -> dict[int, SplitRanks]:
    """{l: ranks of `users` under both protocols} for per-layer user vectors aligned with inputs (n, L)."""
    return {layer: evaluate_split(lookup_user_vectors(inputs, v.to(item_table.device)), item_table, prepared, split,
                                  max_len, users=users, mask_history=mask_history)
            for layer, v in vectors.items()}
