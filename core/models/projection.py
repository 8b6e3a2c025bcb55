"""A linear map of the decoder that may fuse several of the base model's projections (q/k/v or
gate/up), with LoRA (Hu et al. 2021) on any of them as explicit low-rank matrix products.

The adapters of one fused projection run as two matrix products for all its parts (their A's
stacked, their B's block-diagonal), and while no gradient flows they are merged into the weight
once and kept until a weight changes, so evaluation and a frozen teacher pay nothing for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoRASettings:
    """Low-rank adapters on the named projections (PROJECTIONS); r = 0 means none."""

    r: int = 0
    alpha: float = 16
    dropout: float = 0.0
    targets: tuple[str, ...] = ()

    @property
    def scale(self) -> float:
        return self.alpha / self.r


class Projection(nn.Module):
    """A linear map that may fuse several named projections (q/k/v, gate/up), with LoRA on any of them.

    LoRA adds scale * B_p (A_p x) to part p's output (A_p: r x in, B_p: out_p x r, B starting at 0),
    as peft's LoRA does; one dropout mask on x serves all parts of the projection.
    """

    def __init__(self, in_size: int, parts: dict[str, int], bias: bool, lora: LoRASettings) -> None:
        super().__init__()
        self.parts = dict(parts)
        self.weight = nn.Parameter(torch.empty(sum(parts.values()), in_size))
        self.bias = nn.Parameter(torch.zeros(sum(parts.values()))) if bias else None
        targeted = [name for name in parts if name in lora.targets]
        self.lora_A = nn.ParameterDict({p: nn.Parameter(torch.empty(lora.r, in_size)) for p in targeted})
        self.lora_B = nn.ParameterDict({p: nn.Parameter(torch.zeros(parts[p], lora.r)) for p in targeted})
        self.reset_adapters()
        self.lora_scale = lora.scale if targeted else 0.0
        self.lora_dropout = lora.dropout
        self._merged: tuple[tuple, Tensor] | None = None  # see merged_weight

    def reset_adapters(self) -> None:
        """LoRA as peft starts it: A Kaiming-uniform, B zero, so training starts from the base weights."""
        with torch.no_grad():
            for a in self.lora_A.values():
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            for b in self.lora_B.values():
                b.zero_()

    def forward(self, x: Tensor) -> Tensor:
        """x (N, in) -> (N, out), computed in x's dtype."""
        bias = None if self.bias is None else in_dtype(self.bias, x.dtype)
        if not self.lora_A:
            return F.linear(x, in_dtype(self.weight, x.dtype), bias)
        # a compiled graph fuses the adapter products itself; its tracer cannot follow the merge's memo
        if not (torch.is_grad_enabled() or self.training and self.lora_dropout > 0 or torch.compiler.is_compiling()):
            return F.linear(x, self.merged_weight(x.dtype), bias)
        out = F.linear(x, in_dtype(self.weight, x.dtype), bias)
        if self.lora_dropout > 0 and self.training:
            # one operator each way on every device; F.dropout decomposes into four on a CPU
            x = torch.native_dropout(x, self.lora_dropout, True)[0]
        a, b = self.adapters()
        return out.add(F.linear(F.linear(x, a.to(x.dtype)), b.to(x.dtype)), alpha=self.lora_scale)

    def adapters(self) -> tuple[Tensor, Tensor]:
        """Every targeted part's A stacked (k r, in) and their B's block-diagonal (out, k r), zero rows
        for untargeted parts: scale * B A is the whole projection's update, in two matrix products."""
        if len(self.parts) == 1:  # one part: nothing to stack
            (part,) = self.parts
            return self.lora_A[part], self.lora_B[part]
        first = next(iter(self.lora_B.values()))
        targeted = [self.lora_A[p] for p in self.parts if p in self.lora_A]  # in output order (a ParameterDict sorts)
        a = torch.cat(targeted) if len(targeted) > 1 else targeted[0]
        b = torch.block_diag(*(self.lora_B[p] if p in self.lora_B else first.new_zeros(size, 0)
                               for p, size in self.parts.items()))
        return a, b

    def merged_weight(self, dtype: torch.dtype) -> Tensor:
        """weight + scale * B A in `dtype`: what the projection computes without dropout, in one matrix
        product. Kept until a weight changes (storage or in-place version), so evaluation and a
        frozen teacher pay no adapter products per batch."""
        weights = (self.weight, *self.lora_A.values(), *self.lora_B.values())
        key = (dtype, *((p.data_ptr(), p._version) for p in weights))
        if self._merged is None or self._merged[0] != key:
            with torch.no_grad():
                a, b = self.adapters()
                self._merged = (key, (self.weight.float() + self.lora_scale * (b.float() @ a.float())).to(dtype))
        return self._merged[1]


def in_dtype(weight: Tensor, dtype: torch.dtype) -> Tensor:
    """`weight` cast to `dtype` (the decoder casts what autocast would, without autocast's per-op checks)."""
    return weight if weight.dtype == dtype else weight.to(dtype)
