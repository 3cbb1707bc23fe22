"""SkMM core: objective/gradient vs a dense reference, exact projection vs a generic QP, feasibility of
every iterate, c_S diagnostics vs a brute-force generalised eigenproblem, and behaviour on a small GMM."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize

from hf_skmm.selection import (
    achieved_c_s,
    compute_spectrum,
    select,
    skmm_gradient,
    skmm_objective,
    spectrum_coverage,
)
from hf_skmm.selection.projection import project_capped_simplex
from hf_skmm.selection.skmm import moment_features, solve_moment_matching


def gmm(num=600, dim=12, clusters=4, seed=0):
    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(num, np.full(clusters, 1 / clusters))
    centers = 3.0 * rng.normal(size=(clusters, dim))
    scales = np.linspace(1.0, 0.2, dim)
    return np.concatenate([c + rng.normal(size=(k, dim)) * scales for c, k in zip(centers, sizes)])


def dense_reference(s, g, c_s):
    """F and ∇F from the original (s, γ) formulation with explicit matrices and explicit optimal γ."""
    sigma = g.T @ g / len(g)
    lam, v = np.linalg.eigh(sigma)
    moments = np.array([v[:, j] @ (g.T @ np.diag(s) @ g) @ v[:, j] for j in range(len(lam))])
    gamma = np.maximum(1 / c_s, moments / lam)
    resid = moments - gamma * lam
    f = float(resid @ resid)
    # d/ds_i of Σ_j (m_j - γ_j λ_j)^2 at the optimal γ (envelope theorem): 2 Σ_j r_j (g_i·v_j)^2
    grad = 2 * ((g @ v) ** 2) @ resid
    return f, grad


@pytest.mark.parametrize("c_s", [1.0, 0.9, 0.6])
def test_objective_and_gradient_match_dense_reference(c_s):
    g = gmm(num=80, dim=6)
    spec = compute_spectrum(g)
    a = moment_features(g, spec.eigenvectors)
    rng = np.random.default_rng(1)
    s = project_capped_simplex(rng.random(len(g)) / 10, 1 / 20)
    f_ref, grad_ref = dense_reference(s, g, c_s)
    assert skmm_objective(s, a, spec.eigenvalues, c_s) == pytest.approx(f_ref, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(skmm_gradient(s, a, spec.eigenvalues, c_s), grad_ref, rtol=1e-8, atol=1e-10)
    # and against finite differences
    d = rng.normal(size=len(g))
    eps = 1e-6
    fd = (
        skmm_objective(s + eps * d, a, spec.eigenvalues, c_s)
        - skmm_objective(s - eps * d, a, spec.eigenvalues, c_s)
    ) / (2 * eps)
    assert fd == pytest.approx(skmm_gradient(s, a, spec.eigenvalues, c_s) @ d, rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_projection_matches_generic_qp(seed):
    rng = np.random.default_rng(seed)
    num, n = int(rng.integers(5, 25)), int(rng.integers(1, 5))
    y = rng.normal(size=num) * rng.choice([0.01, 1.0, 10.0])
    x = project_capped_simplex(y, 1 / n)
    assert x.min() >= 0 and x.max() <= 1 / n + 1e-15 and x.sum() == pytest.approx(1.0, abs=1e-12)
    qp = scipy.optimize.minimize(
        lambda z: 0.5 * np.sum((z - y) ** 2),
        np.full(num, 1 / num),
        jac=lambda z: z - y,
        hess=lambda z: np.eye(num),
        bounds=scipy.optimize.Bounds(np.zeros(num), np.full(num, 1 / n)),
        constraints=[scipy.optimize.LinearConstraint(np.ones((1, num)), 1.0, 1.0)],
        method="trust-constr",
        options={"gtol": 1e-12, "xtol": 1e-14, "maxiter": 5000},
    )
    assert qp.status in (1, 2), qp.message
    np.testing.assert_allclose(x, qp.x, atol=1e-5)  # interior-point accuracy; ours is exact:
    free = (x > 1e-12) & (x < 1 / n - 1e-12)  # KKT: x = clip(y - tau, 0, 1/n) for a single tau
    if free.any():
        tau = np.mean(y[free] - x[free])
        np.testing.assert_allclose(x, np.clip(y - tau, 0, 1 / n), atol=1e-12)
    assert 0.5 * np.sum((x - y) ** 2) <= qp.fun + 1e-9 * max(1.0, qp.fun)


def test_projection_edge_cases():
    # n == N: the capped simplex is a single point
    np.testing.assert_allclose(project_capped_simplex(np.arange(5.0), 1 / 5), np.full(5, 0.2))
    # already feasible points are fixed points; huge inputs stay exact
    z = np.array([0.5, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(project_capped_simplex(z, 0.5), z)
    big = project_capped_simplex(np.array([1e12, 1e12 + 1, -1e12, 3.0]), 0.5)
    np.testing.assert_allclose(big, [0.5, 0.5, 0, 0])
    with pytest.raises(ValueError, match="empty"):
        project_capped_simplex(np.zeros(3), 0.1)


def test_every_iterate_is_feasible_and_history_is_recorded():
    g = gmm()
    n = 30
    seen = []

    def check(it, s, f):
        assert s.min() >= 0 and s.max() <= 1 / n + 1e-15
        assert abs(s.sum() - 1) < 1e-10
        assert f >= 0
        seen.append(it)

    res = select(g, n, method="skmm", seed=0, c_s=0.9, max_iter=50, callback=check)
    assert seen and seen == list(range(1, len(seen) + 1))
    assert len(res.info["history"]) == res.info["n_iter"] + 1


def test_solver_reaches_feasibility_and_decreases():
    g = gmm()
    spec = compute_spectrum(g)
    a = moment_features(g, spec.eigenvectors)
    n = 60
    s0 = np.zeros(len(g))
    s0[np.random.default_rng(0).choice(len(g), n, replace=False)] = 1 / n
    # the paper's objective: F falls by orders of magnitude and the best iterate is returned
    out = solve_moment_matching(a, spec.eigenvalues, n, 0.999, s0, max_iter=300)
    assert out["objective"] < 1e-2 * out["history"][0]
    assert out["objective"] == pytest.approx(skmm_objective(out["s"], a, spec.eigenvalues, 0.999))
    # the same constraint set with per-direction scaling: every constraint met to within 1%
    rel = solve_moment_matching(a / spec.eigenvalues, np.ones(a.shape[1]), n, 0.999, s0, max_iter=2000)
    assert rel["feasible"] and rel["max_violation"] <= 1e-2 and rel["stop"] == "feasible"
    moments = a.T @ rel["s"]
    assert np.all(moments >= (1 - 1e-2) * spec.eigenvalues / 0.999)


def brute_force_c_s(g, idx, w=None):
    sigma = g.T @ g / len(g)
    w = np.full(len(idx), 1 / len(idx)) if w is None else np.asarray(w) / np.sum(w)
    sigma_s = g[idx].T @ np.diag(w) @ g[idx]
    return float(scipy.linalg.eigh(sigma, sigma_s, eigvals_only=True)[-1])


def test_achieved_c_s_matches_generalised_eigenproblem():
    g = gmm(num=200, dim=8)
    rng = np.random.default_rng(3)
    for n in (8, 20, 100):
        idx = rng.choice(len(g), n, replace=False)
        w = rng.random(n)
        assert achieved_c_s(g, idx) == pytest.approx(brute_force_c_s(g, idx), rel=1e-8)
        assert achieved_c_s(g, idx, w) == pytest.approx(brute_force_c_s(g, idx, w), rel=1e-8)
    # the full set with uniform weights matches itself exactly
    assert achieved_c_s(g, np.arange(len(g))) == pytest.approx(1.0, rel=1e-10)


def test_achieved_c_s_rank_deficient_and_degenerate():
    g = gmm(num=100, dim=8)
    assert achieved_c_s(g, np.arange(5)) == float("inf")  # 5 rows cannot span 8 directions
    # rank(Σ̃) = 3 < m: only range(Σ̃) counts, so 3 generic rows suffice
    rng = np.random.default_rng(0)
    low = rng.normal(size=(100, 3)) @ rng.normal(size=(3, 8))
    idx = np.array([1, 2, 3])
    vt = np.linalg.svd(low, full_matrices=False)[2]
    basis = vt[:3].T  # range(Σ̃)
    sig = basis.T @ (low.T @ low / 100) @ basis
    sig_s = basis.T @ (low[idx].T @ low[idx] / 3) @ basis
    assert achieved_c_s(low, idx) == pytest.approx(
        scipy.linalg.eigh(sig, sig_s, eigvals_only=True)[-1], rel=1e-6
    )
    assert achieved_c_s(np.zeros((10, 4)), [0, 1]) == 0.0
    assert spectrum_coverage(low, idx) == pytest.approx(1.0)
    assert spectrum_coverage(g, [0]) < 1.0


def test_skmm_beats_uniform_on_small_gmm():
    """Relaxed objective: far lower. Drawn coreset (uniform weights): lower c_S on average over seeds."""
    g = gmm(num=600, dim=6, clusters=5, seed=2)
    spec = compute_spectrum(g)
    a = moment_features(g, spec.eigenvectors)
    n = 60
    f_skmm, f_unif, c_skmm, c_unif = [], [], [], []
    for seed in range(8):
        r = select(g, n, method="skmm", seed=seed, c_s=0.9)
        u = select(g, n, method="uniform", seed=seed)
        uniform_s = np.zeros(len(g))
        uniform_s[u.indices] = 1 / n
        f_unif.append(skmm_objective(uniform_s, a, spec.eigenvalues, 0.9))
        f_skmm.append(r.info["objective"])
        c_skmm.append(r.info["c_s_achieved"])
        c_unif.append(u.info["c_s_achieved"])
    assert np.mean(f_skmm) < 0.01 * np.mean(f_unif)
    assert np.mean(c_skmm) < 0.95 * np.mean(c_unif)
    assert max(c_skmm) <= max(c_unif)


def test_skmm_options_and_info():
    g = gmm(num=300, dim=6)
    base = select(g, 30, method="skmm", seed=1)
    info = base.info
    assert info["c_s_schedule"] == [0.999, 0.99, 0.9, 0.8, 0.7, 0.6]
    assert info["c_s_target"] in info["c_s_schedule"]
    # the schedule keeps the smallest feasible c_S: every attempt before the chosen one was feasible
    attempts = info["attempts"]
    chosen = [a["c_s"] for a in attempts].index(info["c_s_target"])
    assert all(a["feasible"] for a in attempts[: chosen + 1]) or not info["feasible"]
    assert info["precision"] == "float64" and info["rank"] == 6
    fixed = select(g, 30, method="skmm", seed=1, c_s=0.9)
    assert fixed.info["c_s_target"] == 0.9 and len(fixed.info["attempts"]) == 1
    unif = select(g, 30, method="skmm", seed=1, weighting="uniform")
    np.testing.assert_array_equal(unif.indices, base.indices)
    np.testing.assert_allclose(unif.weights, 1 / 30)
    rel = select(g, 30, method="skmm", seed=1, scaling="relative", c_s=0.9)
    assert rel.info["feasible"]  # same feasible set, better conditioned
    topk = select(g, 30, method="skmm", seed=1, draw="topk")
    assert len(topk) == 30
    f32 = select(g.astype(np.float32), 30, method="skmm", seed=1, precision="float32")
    assert f32.info["precision"] == "float32" and len(f32) == 30
    for bad in (
        {"scaling": "whiten"},
        {"weighting": "s2"},
        {"precision": "half"},
        {"c_s": "low"},
        {"max_iter": -1},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            select(g, 30, method="skmm", **bad)


def test_precomputed_spectrum_is_reused_and_checked():
    g = gmm(num=200, dim=5)
    spec = compute_spectrum(g)
    a = select(g, 20, method="skmm", seed=0)
    b = select(g, 20, method="skmm", seed=0, spectrum=spec)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.info["c_s_achieved"] == b.info["c_s_achieved"]
    with pytest.raises(ValueError, match="spectrum was computed for 200 rows x 5 dims"):
        select(g[:100], 20, method="skmm", spectrum=spec)
