"""Layer similarity measures over last-position hidden states: CKA, cosine, angular distance, block influence.

Every function takes per-layer states as a sequence of (n, d) tensors, one per layer, all for the
SAME n users in the same order, and computes in float64 on the states' device.

- Linear CKA with the unbiased HSIC estimator (Song et al. 2012, used by Nguyen et al. 2021, "Do wide
  and deep networks learn the same things?"). With K = X X^T and L = Y Y^T and their diagonals set to
  zero (K~, L~):

      HSIC(K, L) = [ tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1 ] / (n (n-3))
      CKA(X, Y)  = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))

  It needs n >= 4. The estimator is unchanged by translating X or Y, so both are centred first (a
  layer whose state is the same for every user then gives exactly K~ = 0); CKA is NaN when either
  side has no variance across users, e.g. layer 0 at the last position (the last prompt token's
  embedding) for a prompt that ends in text.
- Cosine: the mean over users of cos(a_u, b_u). Angular distance (Gromov et al. 2024, "The
  unreasonable ineffectiveness of the deeper layers"): the mean over users of arccos(cos(a_u, b_u)) / pi,
  in [0, 1].
- Block influence of layer l (Men et al. 2024, ShortGPT): 1 - mean cos(state l-1, state l), here at
  the last position only; 0 for a layer that passes its input through unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

MIN_USERS = 4  # the unbiased HSIC estimator divides by n (n - 3)


class TooFewUsers(ValueError):
    """CKA was asked for fewer than MIN_USERS users."""


def _users(states: Sequence[Tensor]) -> int:
    sizes = {int(s.shape[0]) for s in states}
    if len(sizes) != 1 or any(s.ndim != 2 for s in states):
        raise ValueError(f"states: expected (n, d) tensors for the same n users, got shapes "
                         f"{[tuple(s.shape) for s in states]}")
    return sizes.pop()


def _check_cka_users(n: int) -> None:
    if n < MIN_USERS:
        raise TooFewUsers(f"CKA with the unbiased HSIC estimator needs at least {MIN_USERS} users "
                          f"(it divides by n(n-3)); got n={n}. Analyse more users (analysis.users).")


def _zero_diagonal_grams(states: Sequence[Tensor]) -> Tensor:
    """(m, n, n) float64 linear-kernel Gram matrices of the centred states, diagonals set to 0."""
    centred = [x.to(torch.float64) - x.to(torch.float64).mean(dim=0) for x in states]  # (n, d) each
    grams = torch.stack([x @ x.T for x in centred])  # (m, n, n)
    grams.diagonal(dim1=1, dim2=2).zero_()
    return grams


def _hsic(ka: Tensor, kb: Tensor, pairwise: bool) -> Tensor:
    """Unbiased HSIC from zero-diagonal Gram matrices ka (ma, n, n), kb (mb, n, n).

    pairwise: every pair, (ma, mb); otherwise ka[i] with kb[i] only, (m,).
    """
    n = ka.shape[1]
    rows_a, rows_b = ka.sum(dim=2), kb.sum(dim=2)  # K~ 1: (m, n)
    sum_a, sum_b = rows_a.sum(dim=1), rows_b.sum(dim=1)  # 1^T K~ 1: (m,)
    if pairwise:
        trace = ka.flatten(1) @ kb.flatten(1).T  # tr(K~ L~) = sum(K~ * L~), both symmetric
        cross = rows_a @ rows_b.T  # 1^T K~ L~ 1
        sums = torch.outer(sum_a, sum_b)
    else:
        trace = (ka * kb).sum(dim=(1, 2))
        cross = (rows_a * rows_b).sum(dim=1)
        sums = sum_a * sum_b
    total = trace + sums / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * cross
    return total / (n * (n - 3))


def hsic_matrix(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    """(len(a), len(b)) float64 unbiased HSIC of every pair of layers, linear kernel."""
    _check_cka_users(_users([*a, *b]))
    return _hsic(_zero_diagonal_grams(a), _zero_diagonal_grams(b), pairwise=True)


def cka_matrix(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    """(len(a), len(b)) float64 linear CKA (unbiased HSIC) of every pair; NaN where a side has no variance."""
    _check_cka_users(_users([*a, *b]))
    ka, kb = _zero_diagonal_grams(a), _zero_diagonal_grams(b)
    norms = torch.outer(_hsic(ka, ka, pairwise=False), _hsic(kb, kb, pairwise=False))  # HSIC(K,K) HSIC(L,L)
    cka = _hsic(ka, kb, pairwise=True) / norms.clamp(min=0).sqrt()
    return torch.where(norms > 0, cka, torch.full_like(cka, math.nan))


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA (unbiased HSIC) of x (n, d1) and y (n, d2), rows = the same users."""
    return float(cka_matrix([x], [y])[0, 0])


def _unit(states: Sequence[Tensor]) -> Tensor:
    """(m, n, d) float64 states scaled to unit length (a zero state stays zero)."""
    x = torch.stack([s.to(torch.float64) for s in states])
    return torch.nn.functional.normalize(x, dim=2)


def _pair_cosines(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    """(len(a), len(b), n) per-user cosine of every pair of layers; the hidden sizes must agree."""
    _users([*a, *b])
    ua, ub = _unit(a), _unit(b)  # (ma, n, d), (mb, n, d)
    if ua.shape[2] != ub.shape[2]:
        raise ValueError(f"cosine: both sides need the same hidden size, got {ua.shape[2]} and {ub.shape[2]}")
    return torch.einsum("and,bnd->abn", ua, ub).clamp(-1.0, 1.0)


def cosine_matrix(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    """(len(a), len(b)) mean over users of cos(a_u, b_u) for every pair of layers."""
    return _pair_cosines(a, b).mean(dim=2)


def angular_matrix(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    """(len(a), len(b)) mean over users of arccos(cos(a_u, b_u)) / pi, in [0, 1]."""
    return (torch.arccos(_pair_cosines(a, b)) / math.pi).mean(dim=2)


def block_influence(states: Sequence[Tensor]) -> Tensor:
    """(len(states) - 1,) 1 - mean cos(states[l-1], states[l]) for l = 1..len(states)-1."""
    if len(states) < 2:
        raise ValueError("block_influence: needs the states of at least two consecutive layers")
    _users(states)
    unit = _unit(states)  # (m, n, d)
    cosines = (unit[:-1] * unit[1:]).sum(dim=2).clamp(-1.0, 1.0)  # (m - 1, n)
    return 1.0 - cosines.mean(dim=1)
