"""How the backbone calls a decoder layer: with keys and values that come before the layer's own
(the shared prompt prefix, kept in a `PrefixKV`), and, for the top layer, at the last position
only. Everything here goes through the layer's own modules, so it works for any LLaMA-style layer
that transformers builds, whatever the release calls its cache argument.
"""

from __future__ import annotations

import functools
import inspect

import torch
from torch import nn


class PrefixKV:
    """One layer's keys and values of a prompt prefix that every row shares, in the shape of a
    Hugging Face cache: recorded at batch 1, then put (expanded, not copied) before the layer's keys
    and values for the whole batch. One object per layer, so the layer index never matters (and a
    compiled layer is reused by every layer). Gradients flow through it, so LoRA trains as before."""

    def __init__(self, before: "PrefixKV | None" = None) -> None:
        self.key: torch.Tensor | None = None
        self.value: torch.Tensor | None = None
        self.batch = 0  # 0 while the prefix itself is being run
        self.before = before  # keys and values that come before this prefix's own (recorded with them)

    def update(self, key: torch.Tensor, value: torch.Tensor, *args, **kwargs):
        if self.before is not None:
            key, value = self.before.update(key, value, *args, **kwargs)
        if not self.batch:
            self.key, self.value = key, value
            return key, value
        grow = (self.batch, -1, -1, -1)
        return torch.cat([self.key.expand(grow), key], dim=2), torch.cat([self.value.expand(grow), value], dim=2)


def call_layer(layer: nn.Module, hidden_states, mask, position_ids, position_embeddings, cache) -> torch.Tensor:
    extra = {cache_argument(type(layer)): cache} if cache is not None else {}
    out = layer(hidden_states, attention_mask=mask, position_ids=position_ids,
                position_embeddings=position_embeddings, **extra)
    return out[0] if isinstance(out, tuple) else out  # transformers < 5 returns (hidden_states, ...)


def splits_attention(layer: nn.Module) -> bool:
    """Whether the layer exposes the norm and attention module its keys and values come from."""
    return isinstance(getattr(layer, "input_layernorm", None), nn.Module) and \
        isinstance(getattr(layer, "self_attn", None), nn.Module)


def top_layer_at_last(layer: nn.Module, hidden_states, mask, position_ids, position_embeddings,
                       cache: "PrefixKV | None") -> torch.Tensor:
    """The top layer's output (B, 1, H) at the last position, without running its MLP (most of a
    layer's cost) at the other positions, whose outputs nothing reads.

    The attention module runs on the earlier positions only to record their keys and values (after
    the prefix's, if any; its output there is discarded); the whole layer then runs on the last
    position against them.
    """
    cos, sin = position_embeddings  # (B, T, head_dim) each
    earlier = PrefixKV(before=cache)
    # Its output is discarded and keys and values do not depend on the mask, so none is passed.
    layer.self_attn(hidden_states=layer.input_layernorm(hidden_states[:, :-1]), attention_mask=None,
                    position_ids=position_ids[:, :-1], position_embeddings=(cos[:, :-1], sin[:, :-1]),
                    **{cache_argument(type(layer.self_attn)): earlier})
    known = PrefixKV()
    known.key, known.value, known.batch = earlier.key, earlier.value, hidden_states.shape[0]
    return call_layer(layer, hidden_states[:, -1:], None if mask is None else mask[..., -1:, :],
                       position_ids[:, -1:], (cos[:, -1:], sin[:, -1:]), known)


def prefix_key(layers: nn.Module, prefix: torch.Tensor, dtype: torch.dtype) -> tuple:
    """What the prefix's keys and values depend on: every layer weight (storage and in-place version,
    so an optimizer step or a loaded checkpoint changes it), the prefix, and the autocast setting."""
    device = prefix.device.type
    weights = tuple((p.data_ptr(), p._version, p.dtype) for p in layers.parameters())
    return (weights, prefix.data_ptr(), prefix._version, prefix.dtype, prefix.device, dtype,
            torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))


@functools.cache
def cache_argument(module_type: type) -> str:
    """A layer or attention class's keyword for a key/value cache: renamed across transformers releases."""
    names = inspect.signature(module_type.forward).parameters
    for name in ("cache", "past_key_values", "past_key_value"):
        if name in names:
            return name
    raise TypeError(f"{module_type.__name__}.forward takes no key/value cache argument; "
                    "this transformers version is not supported")
