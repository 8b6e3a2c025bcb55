"""SASRec: self-attentive sequential recommendation (Kang and McAuley, ICDM 2018).

A small causal transformer over a user's item sequence. Inputs are LEFT-padded (B, L) item ids,
0 being padding, with the most recent item at position L - 1. Positions are right-aligned: an input
shorter than `max_len` uses the last L positional embeddings, so the most recent item always gets
position max_len - 1 and extra left padding never changes a result. Blocks are pre-LayerNorm, as in
GPT-2, with a GELU feed-forward of width 4 * hidden. Items are scored with the input embedding table
(tied), trained with full-softmax cross-entropy at every position, as in the E4SRec / SLMRec code;
that same table is the frozen item table the LLM recommender later reuses (docs/method.md section 2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.config import SASRecConfig


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention that never attends to padding keys."""

    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.heads, self.dropout = cfg.heads, cfg.dropout
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)
        self.proj = nn.Linear(cfg.hidden, cfg.hidden)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        batch, time, channels = x.shape  # (B, L, d)
        q, k, v = self.qkv(x).split(channels, dim=2)
        # (B, L, d) -> (B, heads, L, d / heads)
        q, k, v = (t.view(batch, time, self.heads, channels // self.heads).transpose(1, 2) for t in (q, k, v))
        # SDPA refuses is_causal together with a mask, so causality is folded into attn_mask.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(batch, time, channels)
        return self.resid_dropout(self.proj(y))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + ffn(ln(x))."""

    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.hidden)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.hidden)
        self.ffn = nn.Sequential(nn.Linear(cfg.hidden, 4 * cfg.hidden), nn.GELU(),
                                 nn.Linear(4 * cfg.hidden, cfg.hidden), nn.Dropout(cfg.dropout))

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.ffn(self.ln_2(x))


def attention_mask(inputs: Tensor) -> Tensor:
    """(B, 1, L, L) bool, True = may attend: causal, and never to a padding key.

    Each position may always attend to itself, so a padding query (whose earlier keys are all
    padding under left padding) still has one key and gives a finite output instead of NaN. A real
    query never sees padding: its only padding keys are other positions, and they are masked.
    """
    time = inputs.shape[1]
    causal = torch.ones(time, time, dtype=torch.bool, device=inputs.device).tril()  # (L, L)
    self_only = torch.eye(time, dtype=torch.bool, device=inputs.device)  # (L, L)
    real_key = (inputs != 0)[:, None, None, :]  # (B, 1, 1, L)
    return causal & (real_key | self_only)


class SASRec(nn.Module):
    """SASRec over items 1..n_items; `item_table()` row i is item i's embedding, row 0 padding."""

    def __init__(self, n_items: int, max_len: int, cfg: SASRecConfig):
        super().__init__()
        self.n_items, self.max_len, self.cfg = n_items, max_len, cfg
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.hidden)
        self.apply(self._init_weights)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()  # padding row stays 0 (padding_idx gives it no gradient)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, inputs: Tensor) -> Tensor:
        """Hidden states (B, L, d) for left-padded item ids (B, L); position t sees items <= t."""
        batch, time = inputs.shape
        if time > self.max_len:
            raise ValueError(f"inputs: sequence length {time} exceeds max_len={self.max_len}")
        positions = torch.arange(self.max_len - time, self.max_len, device=inputs.device)  # (L,)
        x = self.item_emb(inputs) * math.sqrt(self.cfg.hidden) + self.pos_emb(positions)  # (B, L, d)
        x = self.drop(x)
        mask = attention_mask(inputs)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)

    def user_vectors(self, inputs: Tensor) -> Tensor:
        """(B, d) hidden state at the last position (the most recent item)."""
        return self(inputs)[:, -1, :]

    def item_table(self) -> Tensor:
        """(n_items + 1, d) item embeddings: the table used both for input and for scoring."""
        return self.item_emb.weight

    def loss(self, inputs: Tensor, targets: Tensor) -> Tensor:
        """Mean full-softmax cross-entropy over every position whose target (B, L) is not 0."""
        hidden = self(inputs)  # (B, L, d)
        keep = targets != 0  # (B, L)
        if not keep.any():
            raise ValueError("targets: every target is padding (0); a batch needs at least one real target")
        logits = hidden[keep] @ self.item_table().T  # (N, n_items + 1), only real positions
        logits[:, 0] = float("-inf")  # padding is never a prediction
        return F.cross_entropy(logits.float(), targets[keep])
