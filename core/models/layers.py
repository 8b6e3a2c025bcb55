"""One decoder layer of the LLaMA family and its parts, in plain PyTorch (core/models/decoder.py
runs a stack of them): RMSNorm, rotary embeddings, grouped-query attention through
`F.scaled_dot_product_attention`, SwiGLU. q/k/v and gate/up are each one fused projection with
LoRA as explicit low-rank products (core/models/projection.py). A layer works on rows (R, H): the
batch's tokens flattened, laid out as `Rows` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.models.projection import LoRASettings, Projection, in_dtype


@dataclass(frozen=True)
class DecoderShape:
    """The sizes a decoder layer needs, read once from the base model's config."""

    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    qkv_bias: bool = False  # Qwen2 has biases on q, k and v
    max_positions: int = 8192  # rotary angles are tabled up to this position


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # one fused kernel on CUDA, which accumulates in float32 whatever x is
        return F.rms_norm(x, self.weight.shape, in_dtype(self.weight, x.dtype), self.eps)


class Rows(NamedTuple):
    """How a layer's input rows (R, H) are laid out: `batch` x `time` rows, after one more row of
    `time` holding the shared prefix, left-padded, when `prefix_row` (it runs along with the batch,
    in the same attention call, so that gradients reach it). `offset`: the prefix's length, which
    the batch's positions start after (its row present or not). A named tuple, not a dataclass: a
    compiled stack reuses one layer's trace for every layer only when the layers' arguments are
    tensors, constants and tuples of them (see Decoder.compile_stack)."""

    batch: int
    time: int
    prefix_row: bool = False
    offset: int = 0

    @property
    def prefix(self) -> int:
        """How many of the rows come before the batch's."""
        return self.time if self.prefix_row else 0


class Attention(nn.Module):
    def __init__(self, shape: DecoderShape, lora: LoRASettings) -> None:
        super().__init__()
        self.shape = shape
        kv = shape.num_kv_heads * shape.head_dim
        self.qkv_proj = Projection(shape.hidden_size, {"q_proj": shape.num_heads * shape.head_dim, "k_proj": kv,
                                                        "v_proj": kv}, shape.qkv_bias, lora)
        self.o_proj = Projection(shape.num_heads * shape.head_dim, {"o_proj": shape.hidden_size}, False, lora)

    def forward(self, x: Tensor, rope, mask: Tensor, rows: Rows, prefix: Tensor | None, top: bool,
                last_only: bool) -> tuple[Tensor, Tensor]:
        """(output rows, the rows' own keys and values (rows, 2 nkv, T, D)) for x (R, H).

        Output rows as the input's, less the prefix row's at the `top` layer (nothing reads them)
        and only each row's last position with `last_only`. `prefix` (1, 2 nkv, P, D): the shared
        prefix's keys and values when they are given rather than computed in a prefix row.
        """
        s = self.shape
        # every row's q, k and v heads, rotated at once (the v heads' rotation is the identity)
        qkv = rotate(self.qkv_proj(x).view(x.shape[0], -1, s.head_dim), *rope)  # (R, heads, D)
        q, own = heads(qkv, rows.batch + rows.prefix_row, rows.time).split([s.num_heads, 2 * s.num_kv_heads], dim=1)
        if rows.prefix_row:
            # the prefix row's keys and values fill every row's prefix slots (the mask keeps the
            # prefix row itself to its own row's), so one attention call serves all rows
            prefix = own[:1, :, -rows.offset:]
            if top:
                q, own, mask = q[1:], own[1:], mask[1:]
        kv = own if prefix is None else torch.cat([prefix.expand(q.shape[0], -1, -1, -1), own], dim=2)
        if last_only:
            q, mask = q[:, :, -1:], mask[:, :, -1:]
        return self.o_proj(flat(attend(q, *kv.split(s.num_kv_heads, dim=1), mask))), own


def heads(rows: Tensor, batch: int, time: int) -> Tensor:
    """(B * T, heads, D) rows as (B, heads, T, D), the layout attention takes."""
    return rows.view(batch, time, *rows.shape[1:]).transpose(1, 2)


def flat(attended: Tensor) -> Tensor:
    """(B, heads, T, D) back to rows (B * T, heads * D)."""
    batch, _, time, _ = attended.shape
    return attended.transpose(1, 2).reshape(batch * time, -1)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, repeat_heads: bool | None = None) -> Tensor:
    """SDPA with grouped key/value heads; no mask means causal. CPU kernels take the groups as they
    are; on other devices a masked grouped call falls back to the slow math kernel, so the key/value
    heads are repeated there (`repeat_heads` None: as the device needs)."""
    grouped = q.shape[1] != k.shape[1]
    if repeat_heads is None:
        repeat_heads = mask is not None and q.device.type != "cpu"
    if grouped and repeat_heads:
        groups = q.shape[1] // k.shape[1]
        k, v, grouped = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1), False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=grouped)


def rotate(x: Tensor, cos: Tensor, sin_signed: Tensor) -> Tensor:
    """Rotary embedding as the LLaMA reference writes it, x cos + rotate_half(x) sin with
    rotate_half(x) = (-x2, x1): here the halves are swapped (a roll by D / 2) and the sign lives in
    `sin_signed`. x (R, heads, D) and the tables alike."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), sin_signed)


class MLP(nn.Module):
    def __init__(self, shape: DecoderShape, lora: LoRASettings) -> None:
        super().__init__()
        size = shape.intermediate_size
        self.gate_up_proj = Projection(shape.hidden_size, {"gate_proj": size, "up_proj": size}, False, lora)
        self.down_proj = Projection(size, {"down_proj": shape.hidden_size}, False, lora)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    """One pre-norm decoder layer: x + attention(norm(x)), then + MLP(norm(.))."""

    def __init__(self, shape: DecoderShape, lora: LoRASettings) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)
        self.self_attn = Attention(shape, lora)
        self.post_attention_layernorm = RMSNorm(shape.hidden_size, shape.rms_norm_eps)
        self.mlp = MLP(shape, lora)

    def forward(self, x: Tensor, rope, mask: Tensor, rows: Rows, prefix: Tensor | None = None, top: bool = False,
                last_only: bool = False) -> tuple[Tensor, Tensor]:
        """(output rows, the batch's own keys and values) for x (R, H); see Attention.forward."""
        attended, keys_values = self.self_attn(self.input_layernorm(x), rope, mask, rows, prefix, top, last_only)
        if top and rows.prefix:
            x = x[rows.prefix:]
        if last_only:
            x = x.view(rows.batch, rows.time, -1)[:, -1]
        x = x + attended
        return x + self.mlp(self.post_attention_layernorm(x)), keys_values
