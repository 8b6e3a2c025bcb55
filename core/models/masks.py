"""Where each token of a left-padded batch sits and what it may read: position ids from the
attention mask, and the additive attention mask with a shared prefix before every row."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def positions_from_mask(attention_mask: Tensor) -> Tensor:
    """Position ids (B, T) for a left-padded batch: the first real token is at position 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def causal_layout(time: int, prefix_len: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, ...]:
    """What the attention masks of every batch of T tokens after P prefix tokens share: which keys
    are at or before each query and which is the query itself (each (T, P + T)), and 0 and the
    dtype's minimum as tensors of `dtype`."""
    keys = torch.arange(prefix_len + time, device=device)
    queries = keys[prefix_len:, None]
    return (keys <= queries, keys == queries, torch.zeros((), dtype=dtype, device=device),
            torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=device))


def attention_bias(attention_mask: Tensor, prefix_len: int, dtype: torch.dtype, layout: tuple | None = None) -> Tensor:
    """(B, 1, T, P + T) additive mask: 0 where a query may attend, the dtype's minimum elsewhere.

    Causal, padding keys hidden, every row may read the P shared prefix tokens. Each position may
    also attend to itself, so a padding query never has an empty softmax row (which would be NaN);
    real queries never see padding keys, so their states are exact. `layout`: `causal_layout`'s
    tensors for this T, P, device and dtype, when kept from an earlier batch.
    """
    causal, itself, zero, minimum = layout or causal_layout(attention_mask.shape[1], prefix_len, attention_mask.device,
                                                            dtype)
    readable = F.pad(attention_mask.bool(), (prefix_len, 0), value=True)[:, None]  # (B, 1, P + T): prefix or real
    return torch.where(causal & readable | itself, zero, minimum)[:, None]
