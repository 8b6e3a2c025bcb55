"""SLMRec's block-wise distillation loss (docs/method.md section 3) as small pure tensor functions.

Teacher (M layers) and student (N layers) are cut into B blocks; block k pairs the teacher state
after layer k*M/B with the student state after layer k*N/B, both at the last position. Aligned
states are the residual stream after the layer, before the final norm (the backbone's index
k*depth/B): that is what the next layer reads, and the last block's pair is then the deepest
pre-norm state of each model. Unlike the public code, the block terms are averaged, the norm term
is squared, a B that does not divide both depths is refused, and no term failure is swallowed.
The squared distance is divided by the hidden size (a per-dimension mean): on SmolLM2 the pre-norm
states after layers 1-8 have norms of 30-80, so the plain sum would be 100-1000 times the CE and
lambda_norm would mean something different at every model width; the constant 1/H is absorbed
into lambda_norm and keeps the paper's 0.1 in a sensible range.

    loss = CE + lambda_cos * (1 - mean_k cos(t_k, s_k)) + lambda_norm * mean_k ||t_k - s_k||^2 / H
              + lambda_sup * mean_{k<B} CE(adapter_k(s_k))
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from core.config import DistillConfig


def cosine_term(teacher: Sequence[Tensor], student: Sequence[Tensor]) -> Tensor:
    """1 - mean over blocks and batch of cos(t_k, s_k); each state (batch, hidden)."""
    cos = torch.stack([F.cosine_similarity(s.float(), t.float(), dim=-1) for t, s in zip(teacher, student)])  # (K, B)
    return 1.0 - cos.mean()


def norm_term(teacher: Sequence[Tensor], student: Sequence[Tensor]) -> Tensor:
    """Mean over blocks and batch of the squared L2 distance ||t_k - s_k||^2 / hidden."""
    dist = torch.stack([(t.float() - s.float()).pow(2).mean(-1) for t, s in zip(teacher, student)])  # (K, B)
    return dist.mean()


def supervision_term(block_scores: Sequence[Tensor], targets: Tensor) -> Tensor:
    """Mean over the intermediate blocks of the cross-entropy of their adapters' item scores (batch, items)."""
    if not block_scores:
        return targets.new_zeros((), dtype=torch.float32)
    return torch.stack([F.cross_entropy(s.float(), targets) for s in block_scores]).mean()


def slmrec_loss(ce: Tensor, teacher: Sequence[Tensor], student: Sequence[Tensor], block_scores: Sequence[Tensor],
                targets: Tensor, cfg: DistillConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """(total, terms) with every term returned for logging, including those weighted by 0."""
    if len(teacher) != len(student):
        raise ValueError(f"distill: {len(teacher)} teacher states but {len(student)} student states")
    terms = {"ce": ce, "ms": supervision_term(block_scores, targets)}
    total = ce + cfg.lambda_sup * terms["ms"]
    if teacher:  # no teacher: a student without alignment (lambda_cos = lambda_norm = 0)
        terms.update(cos=cosine_term(teacher, student), norm=norm_term(teacher, student))
        total = total + cfg.lambda_cos * terms["cos"] + cfg.lambda_norm * terms["norm"]
    return total, {"total": total, **terms}
