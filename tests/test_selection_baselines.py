"""Baselines against slow, obvious references; the shared sampling scheme's inclusion probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from hf_skmm.selection import select
from hf_skmm.selection.adaptive import select_adaptive
from hf_skmm.selection.herding import select_herding
from hf_skmm.selection.kcenter import select_kcenter
from hf_skmm.selection.leverage import leverage_scores
from hf_skmm.selection.ridge_leverage import default_ridge, ridge_leverage_scores, select_ridge_leverage
from hf_skmm.selection.sampling import draw_rows, inclusion_probabilities, systematic_sample


def blobs(num=90, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(num, dim)) + 4 * rng.normal(size=(3, dim))[rng.integers(0, 3, num)]


def test_herding_matches_brute_force():
    x = blobs()
    order, _, info = select_herding(x, 12, seed=0)
    mu, chosen = x.mean(0), []
    for t in range(12):
        cand = [i for i in range(len(x)) if i not in chosen]
        gaps = [np.linalg.norm((t + 1) * mu - x[chosen].sum(0) - x[i]) for i in cand]
        chosen.append(cand[int(np.argmin(gaps))])
    np.testing.assert_array_equal(order, chosen)
    assert info["mean_gap"] < np.linalg.norm(x[:12].mean(0) - mu)


def test_kcenter_matches_brute_force():
    x = blobs()
    order, _, info = select_kcenter(x, 10, seed=4)
    chosen = [int(order[0])]
    for _ in range(9):
        d = np.min(np.linalg.norm(x[:, None] - x[chosen][None], axis=2), axis=1)
        d[chosen] = -1
        chosen.append(int(np.argmax(d)))
    np.testing.assert_array_equal(order, chosen)
    radius = np.max(np.min(np.linalg.norm(x[:, None] - x[chosen][None], axis=2), axis=1))
    assert info["covering_radius"] == pytest.approx(radius, rel=1e-9)


def test_leverage_scores_match_svd():
    x = blobs(num=60, dim=5)
    u, sv, _ = np.linalg.svd(x, full_matrices=False)
    scores, k = leverage_scores(x, 3)
    assert k == 3 and scores.sum() == pytest.approx(3.0)
    np.testing.assert_allclose(scores, (u[:, :3] ** 2).sum(1), rtol=1e-8, atol=1e-12)
    ref = np.einsum("ij,jk,ik->i", x, np.linalg.inv(x.T @ x + 2.5 * np.eye(5)), x)
    np.testing.assert_allclose(ridge_leverage_scores(x, 2.5), ref, rtol=1e-8)
    assert default_ridge(sv**2 / len(x), len(x), 2) == pytest.approx((sv[2:] ** 2).sum() / 2)
    _, _, info = select_ridge_leverage(x, 3, seed=0)
    assert info["ridge"] == pytest.approx((sv[3:] ** 2).sum() / 3)
    with pytest.raises(ValueError, match="ridge must be a positive number"):
        select(x, 3, method="ridge_leverage", ridge=-1.0)
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        select(x, 3, method="leverage", rank=0)


def test_adaptive_spans_then_falls_back_to_uniform():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 2)) @ rng.normal(size=(2, 5))  # rank 2
    order, _, info = select_adaptive(x, 6, seed=0)
    assert info["span_rank"] == 2 and info["uniform_after"] == 2
    assert np.linalg.matrix_rank(x[order[:2]]) == 2 and len(set(order)) == 6
    # zero rows are never drawn while residual mass remains
    z = np.concatenate([np.zeros((30, 3)), np.eye(3)])
    order, _, _ = select_adaptive(z, 3, seed=0)
    assert set(order) == {30, 31, 32}


def test_systematic_sampling_inclusion_probabilities():
    rng = np.random.default_rng(0)
    pi = inclusion_probabilities(np.array([5.0, 1, 1, 2, 0, 3, 0.5, 0.5]), 3)
    assert pi.sum() == pytest.approx(3.0) and pi.max() <= 1 and pi[0] == 1.0 and pi[4] == 0
    counts = np.zeros(pi.size)
    trials = 4000
    for _ in range(trials):
        s = systematic_sample(pi, 3, rng)
        assert len(set(s.tolist())) == 3
        counts[s] += 1
    np.testing.assert_allclose(counts / trials, pi, atol=0.03)
    # fewer positive scores than n: positives surely in, the rest uniform
    pi2 = inclusion_probabilities(np.array([1.0, 0, 0, 2.0, 0]), 3)
    np.testing.assert_allclose(pi2, [1, 1 / 3, 1 / 3, 1, 1 / 3])
    assert sorted(draw_rows(np.array([0.1, 0.5, 0.2, 0.9]), 2, rng, "topk")) == [1, 3]


def test_baselines_on_clusters_behave_as_expected():
    """K-center covers every cluster; herding's mean is closer to the full mean than uniform's."""
    x = blobs(num=300, dim=3, seed=3)
    kc = select(x, 6, method="kcenter", seed=0)
    assert kc.info["covering_radius"] < np.ptp(x, axis=0).max()
    herd = select(x, 10, method="herding")
    unif = [select(x, 10, method="uniform", seed=s) for s in range(10)]
    gap = np.linalg.norm(x[herd.indices].mean(0) - x.mean(0))
    assert gap < min(np.linalg.norm(x[u.indices].mean(0) - x.mean(0)) for u in unif)


def test_ridge_leverage_rank_option():
    x = blobs(num=60, dim=5)
    sv2 = np.linalg.svd(x, compute_uv=False) ** 2
    _, _, info = select_ridge_leverage(x, 10, seed=0, rank=2)
    assert info["ridge"] == pytest.approx(sv2[2:].sum() / 2)
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        select(x, 3, method="ridge_leverage", rank=0)
