"""Johnson–Lindenstrauss properties of the sketches, as statistical tests over many seeds.

Each test draws S independent sketches (seeds 0..S-1; ``derive_seed`` makes their streams independent)
and compares an average with its known expectation. Thresholds are set so that a *correct*
implementation fails with probability at most about 1e-6 per test (the rate is stated per test: exact
chi-square tails where the distribution is known, otherwise a normal approximation of a mean of S
independent terms at 5.3 standard deviations, two-sided 1.2e-7 per comparison, union-bounded over the
comparisons). The seeds are fixed, so the suite is deterministic: a pass or a failure is reproducible.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from hf_skmm.sketch import GaussianSketch, KroneckerSketch, LayerwiseSketch, SparseSignSketch

Z = 5.3  # two-sided normal tail 1.2e-7
S = 300  # sketches per test


# tiny ops on a shared 2-core machine: one intra-op thread (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _norms_sq(make, x: torch.Tensor) -> np.ndarray:
    """[S, k] values ‖Γ_sᵀ x_i‖² for S seeds (float64)."""
    return np.stack([make(s).apply(x).double().pow(2).sum(-1).numpy() for s in range(S)])


def _rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gaussian_norms_are_exactly_chi_square():
    """m‖Γᵀx‖²/‖x‖² ~ χ²_m for Gaussian Γ with N(0, 1/m) entries.

    Per vector, the sum over S seeds is χ²_{S·m}; two-sided test at level 1e-6/k per vector (k = 4
    vectors, union bound: false-failure rate ≤ 1e-6). Plus a Kolmogorov–Smirnov test of the S values
    of the first vector against χ²_m at level 1e-6.
    """
    r, m, k = 300, 32, 4
    x = torch.randn(k, r, generator=_rng(0)) * torch.tensor([[1.0], [10.0], [0.01], [3.0]])
    x[3, 10:] = 0  # a sparse vector too
    q = _norms_sq(lambda s: GaussianSketch(r, m, seed=s), x) * m / x.double().pow(2).sum(-1).numpy()
    alpha = 1e-6 / k
    for i in range(k):
        p = stats.chi2.cdf(q[:, i].sum(), df=S * m)
        assert alpha / 2 < p < 1 - alpha / 2, (i, p)
    assert stats.kstest(q[:, 0], stats.chi2(df=m).cdf).pvalue > 1e-6


def _expected_identity_check(make, r: int, sd_bound: float) -> None:
    """(1/S) Σ_s Γ_s Γ_sᵀ ≈ I entry-wise: |mean − δ_ij| ≤ Z · sd_bound / √S for all r² entries.

    E[ΓΓᵀ] = I is exactly "E⟨Γᵀx, Γᵀy⟩ = ⟨x, y⟩ for all x, y" (norms and inner products preserved in
    expectation). Normal approximation, union bound over r² entries: false-failure rate ≤ r² · 1.2e-7.
    """
    acc = torch.zeros(r, r, dtype=torch.float64)
    for s in range(S):
        g = make(s).dense().double()
        acc += g @ g.T
    err = (acc / S - torch.eye(r, dtype=torch.float64)).abs().max().item()
    assert err <= Z * sd_bound / math.sqrt(S), err


def test_expected_gram_is_identity_gaussian():
    # entries of ΓΓᵀ: diagonal χ²_m/m (sd √(2/m)), off-diagonal sd √(1/m)
    _expected_identity_check(lambda s: GaussianSketch(12, 16, seed=s), 12, math.sqrt(2 / 16))


def test_expected_gram_is_identity_sparse_sign():
    # diagonal exactly 1 (unit rows); off-diagonal: s blocks, collision prob s/m each, sd √(1/m)
    _expected_identity_check(lambda s: SparseSignSketch(12, 16, seed=s, nnz=4), 12, math.sqrt(1 / 16))


def test_expected_gram_is_identity_kronecker():
    # every entry of (Γ_out⊗Γ_in)(Γ_out⊗Γ_in)ᵀ has variance ≤ (1 + 2/m_out)(1 + 2/m_in) − 1
    m_out, m_in = 4, 8
    sd = math.sqrt((1 + 2 / m_out) * (1 + 2 / m_in) - 1)
    _expected_identity_check(lambda s: KroneckerSketch(3, 4, m_out, m_in, seed=s), 12, sd)


def test_expected_gram_is_identity_layerwise():
    parts = lambda s: LayerwiseSketch.from_shapes({"w": (2, 3), "b": (6,)}, 16, seed=s, kind="kronecker")  # noqa: E731
    # Kronecker rows (2x3 -> m = 2*8) dominate the variance bound
    sd = math.sqrt((1 + 2 / 2) * (1 + 2 / 8) - 1)
    _expected_identity_check(parts, 12, sd)


def test_sparse_sign_norm_mean_and_variance_match_theory():
    """Block sparse sign with s | m: E‖Γᵀx‖² = ‖x‖², Var = (2/m)(‖x‖⁴ − ‖x‖₄⁴) exactly.

    (The s blocks are independent CountSketches of size m/s, each with variance
    (2s/m)(‖x‖⁴ − ‖x‖₄⁴), averaged over s.) Mean: z-test with the exact variance at Z = 5.3
    (normal approximation of a mean of S = 300 terms) per vector, 3 vectors: rate ≈ 4e-7. Variance:
    the sample variance must lie within a factor 2 of the theory (≈ 5 standard errors of the sample
    variance for these light-tailed sums).
    """
    r, m, nnz = 400, 32, 4
    x = torch.randn(3, r, generator=_rng(1))
    x[1, :5] *= 20  # a few heavy coordinates
    x[2, 50:] = 0
    vals = _norms_sq(lambda s: SparseSignSketch(r, m, seed=s, nnz=nnz), x)
    xd = x.double()
    norm2 = xd.pow(2).sum(-1).numpy()
    var = (2 / m) * (norm2**2 - xd.pow(4).sum(-1).numpy())
    for i in range(3):
        z = (vals[:, i].mean() - norm2[i]) / math.sqrt(var[i] / S)
        assert abs(z) < Z, (i, z)
        assert 0.5 < vals[:, i].var(ddof=1) / var[i] < 2.0, (i, vals[:, i].var(ddof=1) / var[i])


def test_kronecker_rank_one_norm_mean_and_variance():
    """For x = vec(u vᵀ): ‖Γᵀx‖² = ‖Γ_outᵀu‖² ‖Γ_inᵀv‖², a product of independent χ²_{m_out}/m_out and
    χ²_{m_in}/m_in (times ‖u‖²‖v‖²): mean ‖x‖², variance ((1 + 2/m_out)(1 + 2/m_in) − 1)‖x‖⁴.

    Mean: z-test with that exact variance at Z = 5.3 (normal approximation; rate ≈ 1e-7). Also a
    full-rank ΔW = Σ_t δ_t h_tᵀ (T = 16) through ``apply_factors``: mean test with the sample variance.
    """
    d_out, d_in, m_out, m_in = 10, 12, 4, 8
    gen = _rng(2)
    u, v = torch.randn(d_out, generator=gen), torch.randn(d_in, generator=gen)
    x = torch.outer(u, v).reshape(1, -1)
    vals = _norms_sq(lambda s: KroneckerSketch(d_out, d_in, m_out, m_in, seed=s), x)[:, 0]
    norm2 = x.double().pow(2).sum().item()
    var = ((1 + 2 / m_out) * (1 + 2 / m_in) - 1) * norm2**2
    z = (vals.mean() - norm2) / math.sqrt(var / S)
    assert abs(z) < Z, z

    delta, h = torch.randn(1, 16, d_out, generator=gen), torch.randn(1, 16, d_in, generator=gen)
    dw = torch.einsum("bto,bti->boi", delta.double(), h.double())
    full = np.array(
        [
            KroneckerSketch(d_out, d_in, m_out, m_in, seed=s)
            .apply_factors(delta, h)
            .double()
            .pow(2)
            .sum()
            .item()
            for s in range(S)
        ]
    )
    truth = dw.pow(2).sum().item()
    z = (full.mean() - truth) / (full.std(ddof=1) / math.sqrt(S))
    assert abs(z) < Z, z


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("gaussian", lambda s: GaussianSketch(200, 64, seed=s)),
        ("sparse_sign", lambda s: SparseSignSketch(200, 64, seed=s, nnz=4)),
        ("kronecker", lambda s: KroneckerSketch(10, 20, 8, 8, seed=s)),
    ],
)
def test_inner_products_are_unbiased(name, make):
    """E⟨Γᵀx, Γᵀy⟩ = ⟨x, y⟩ for correlated x, y: z-test with the sample variance over S seeds
    (normal approximation, Z = 5.3, rate ≈ 1e-7). For the Gaussian sketch the variance is also known
    exactly, (‖x‖²‖y‖² + ⟨x, y⟩²)/m, and the sample variance must be within a factor 1.5 of it
    (the sample variance of S = 300 terms has relative sd ≈ 0.1 here)."""
    gen = _rng(3)
    x = torch.randn(200, generator=gen)
    y = 0.6 * x + torch.randn(200, generator=gen)
    both = torch.stack([x, y])
    vals = np.array(
        [(lambda out: (out[0] * out[1]).sum().item())(make(s).apply(both).double()) for s in range(S)]
    )
    truth = torch.dot(x.double(), y.double()).item()
    z = (vals.mean() - truth) / (vals.std(ddof=1) / math.sqrt(S))
    assert abs(z) < Z, (name, z)
    if name == "gaussian":
        exact = (x.double().pow(2).sum() * y.double().pow(2).sum() + truth**2).item() / 64
        assert 1 / 1.5 < vals.var(ddof=1) / exact < 1.5


@pytest.mark.parametrize("kind", ["gaussian", "sparse_sign"])
def test_pairwise_distances_within_jl_tolerance(kind):
    """All pairwise squared distances of n = 16 points are kept within ε = 0.5 by every one of 10 sketches.

    For the Gaussian sketch each ratio is χ²_m/m exactly; the union bound over 120 pairs × 10 seeds of
    P(|χ²_m/m − 1| > ε) is computed below and asserted ≤ 1e-6 — that is the false-failure rate. The
    sparse sign embedding (s = 4) has the same variance 2/m up to a (1 − ‖x‖₄⁴/‖x‖⁴) factor and
    sub-Gaussian-type tails (Kane & Nelson 2014); the same ε is used without an exact bound.
    """
    n, r, m, eps, seeds = 16, 2000, 512, 0.5, 10
    pts = torch.randn(n, r, generator=_rng(4), dtype=torch.float64)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    diffs = torch.stack([pts[i] - pts[j] for i, j in pairs]).float()
    bound = len(pairs) * seeds * (stats.chi2.cdf((1 - eps) * m, m) + stats.chi2.sf((1 + eps) * m, m))
    assert bound <= 1e-6, bound
    for s in range(seeds):
        sk = GaussianSketch(r, m, seed=s) if kind == "gaussian" else SparseSignSketch(r, m, seed=s, nnz=4)
        ratio = sk.apply(diffs).double().pow(2).sum(-1) / diffs.double().pow(2).sum(-1)
        assert float((ratio - 1).abs().max()) <= eps, (s, float((ratio - 1).abs().max()))
