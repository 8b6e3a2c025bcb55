"""Similarity measures against their definitions: CKA invariances and a loop-by-loop reference."""

import math

import numpy as np
import pytest
import torch

from core.eval.similarity import (TooFewUsers, angular_matrix, block_influence, cka_matrix, cosine_matrix,
                                  linear_cka)


def reference_hsic(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012) unbiased HSIC, term by term with explicit loops."""
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    for i in range(n):
        kt[i, i] = 0.0
        lt[i, i] = 0.0
    trace = sum(kt[i, j] * lt[j, i] for i in range(n) for j in range(n))
    sum_k = sum(kt[i, j] for i in range(n) for j in range(n))
    sum_l = sum(lt[i, j] for i in range(n) for j in range(n))
    ones_kl_ones = sum(kt[i, j] * lt[j, q] for i in range(n) for j in range(n) for q in range(n))
    return (trace + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * ones_kl_ones) / (n * (n - 3))


def reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    k, l = x @ x.T, y @ y.T  # linear kernels on the raw (uncentred) features
    return reference_hsic(k, l) / math.sqrt(reference_hsic(k, k) * reference_hsic(l, l))


def random_states(n=24, d=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def orthogonal(d, seed):
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def test_cka_matches_loop_reference():
    rng = np.random.default_rng(1)
    for n, d1, d2 in [(12, 5, 3), (20, 8, 8), (9, 2, 6)]:
        x = rng.normal(size=(n, d1)) + rng.normal(size=(1, d1))  # an offset: the estimator ignores it
        y = np.tanh(x @ rng.normal(size=(d1, d2))) + 0.5 * rng.normal(size=(n, d2))
        expected = reference_cka(x, y)
        assert linear_cka(torch.tensor(x), torch.tensor(y)) == pytest.approx(expected, rel=1e-6)
        assert linear_cka(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)) == \
            pytest.approx(expected, rel=1e-4)


def test_cka_of_a_layer_with_itself_is_one():
    x = random_states()
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    m = cka_matrix([x, random_states(seed=1)], [x, random_states(seed=1)])
    assert torch.diagonal(m).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    assert m[0, 1] == pytest.approx(m[1, 0], abs=1e-12)  # symmetric


def test_cka_invariant_to_rotation_and_isotropic_scaling_only():
    x = random_states(d=6)
    y = torch.tanh(x @ random_states(n=6, d=5, seed=2)) + 0.3 * random_states(d=5, seed=3)
    base = linear_cka(x, y)
    assert linear_cka(x @ orthogonal(6, 4) * 3.5, y) == pytest.approx(base, rel=1e-9)
    assert linear_cka(x, 0.01 * y @ orthogonal(5, 5)) == pytest.approx(base, rel=1e-9)
    assert linear_cka(x + 10.0, y - 2.0) == pytest.approx(base, rel=1e-9)  # translation too
    stretch = torch.diag(torch.tensor([20.0, 1.0, 0.05, 1.0, 3.0, 0.5], dtype=torch.float64))
    skew = random_states(n=6, d=6, seed=6)  # an arbitrary (invertible) linear map
    assert abs(linear_cka(x @ stretch, y) - base) > 1e-3
    assert abs(linear_cka(x @ skew, y) - base) > 1e-3


def test_cka_refuses_fewer_than_four_users():
    x = random_states(n=3)
    with pytest.raises(TooFewUsers, match="at least 4 users.*n=3"):
        linear_cka(x, x)
    assert math.isfinite(linear_cka(random_states(n=4), random_states(n=4, seed=1)))


def test_cka_is_nan_for_a_layer_without_variance():
    same_for_everyone = torch.ones(10, 4, dtype=torch.float32) * torch.tensor([1.0, -2.0, 0.3, 5.0])
    m = cka_matrix([same_for_everyone, random_states(n=10)], [random_states(n=10, seed=1)])
    assert math.isnan(m[0, 0]) and math.isfinite(m[1, 0])


def test_cosine_and_angular_distance():
    x = random_states(n=30, d=5)
    flipped, scaled = -x, 4.0 * x
    cos = cosine_matrix([x], [x, flipped, scaled])
    assert cos[0].tolist() == pytest.approx([1.0, -1.0, 1.0], abs=1e-12)
    ang = angular_matrix([x, flipped], [x, flipped, random_states(n=30, d=5, seed=9)])
    assert ang[0, 0] == pytest.approx(0.0, abs=1e-6) and ang[0, 1] == pytest.approx(1.0, abs=1e-6)
    assert bool(((ang >= 0) & (ang <= 1)).all())
    # the mean over users of per-user angles, checked user by user
    y = random_states(n=30, d=5, seed=10)
    per_user = [math.acos(float(torch.dot(a, b) / (a.norm() * b.norm()))) / math.pi for a, b in zip(x, y)]
    assert float(angular_matrix([x], [y])[0, 0]) == pytest.approx(np.mean(per_user), rel=1e-9)
    orthogonal_pair = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    assert float(angular_matrix([orthogonal_pair[0]], [orthogonal_pair[1]])[0, 0]) == pytest.approx(0.5)


def test_block_influence_is_zero_for_an_identity_layer():
    h0 = random_states(n=16, d=8)
    h1 = h0 + 0.8 * random_states(n=16, d=8, seed=1)
    h2 = h1.clone()  # layer 2 passes its input through
    h3 = 2.0 * h2  # a pure rescaling changes no direction either
    bi = block_influence([h0, h1, h2, h3])
    assert bi.shape == (3,)
    assert bi[0] > 0.05
    assert bi[1] == pytest.approx(0.0, abs=1e-12) and bi[2] == pytest.approx(0.0, abs=1e-12)
    assert bi[0] == pytest.approx(1 - cosine_matrix([h0], [h1])[0, 0], abs=1e-12)
