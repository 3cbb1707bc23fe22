"""Diagnostics of a coreset on the sketched space: achieved c_S and spectrum coverage.

Notation (Dong et al., NeurIPS 2024, §3): G̃ ∈ R^{N×m} the sketches, Σ̃ = G̃ᵀG̃/N = VΛVᵀ, and for a
coreset S with weights w (w_i ≥ 0, Σ_{i∈S} w_i = 1) the weighted second moment Σ̃_S = Σ_{i∈S} w_i g̃_i g̃_iᵀ.
Uniform weights w_i = 1/|S| give Σ̃_S = G̃_SᵀG̃_S/|S|, the moment an unweighted finetuning run sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hf_skmm.selection._inputs import as_sketch_matrix, row_blocks

DEFAULT_RTOL = 1e-10  # eigenvalues below rtol * λ_max count as zero: range(Σ̃) is the span of the rest


@dataclass(frozen=True)
class Spectrum:
    """Eigendecomposition of Σ̃ = G̃ᵀG̃/N (float64), eigenvalues in *descending* order, clipped at 0."""

    eigenvalues: np.ndarray  # [m]
    eigenvectors: np.ndarray  # [m, m], column j is v_j
    num_rows: int

    def rank(self, rtol: float = DEFAULT_RTOL) -> int:
        lam = self.eigenvalues
        if lam.size == 0 or lam[0] <= 0:
            return 0
        return int(np.count_nonzero(lam > rtol * lam[0]))

    @property
    def trace(self) -> float:
        return float(self.eigenvalues.sum())


def second_moment(x: np.ndarray) -> np.ndarray:
    """G̃ᵀG̃ in float64, streamed over row blocks so no float64 copy of G̃ is ever materialised."""
    m = x.shape[1]
    out = np.zeros((m, m), dtype=np.float64)
    for blk in row_blocks(len(x)):
        b = x[blk].astype(np.float64, copy=False)
        out += b.T @ b
    return out


def compute_spectrum(sketches: Any) -> Spectrum:
    """Σ̃ = G̃ᵀG̃/N = VΛVᵀ, O(N m² + m³) time, O(m²) extra memory."""
    x = as_sketch_matrix(sketches)
    sigma = second_moment(x) / len(x)
    lam, vec = np.linalg.eigh((sigma + sigma.T) / 2)
    lam, vec = np.clip(lam[::-1], 0.0, None), np.ascontiguousarray(vec[:, ::-1])
    return Spectrum(lam, vec, len(x))


def _coreset_rows(x: np.ndarray, indices: Any) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
        raise ValueError(
            f"indices must be a non-empty 1-D integer array; got shape {idx.shape}, dtype {idx.dtype}."
        )
    if idx.min() < 0 or idx.max() >= len(x):
        raise ValueError(f"indices must lie in [0, {len(x)}); got values in [{idx.min()}, {idx.max()}].")
    return x[idx].astype(np.float64)


def _normalised_weights(weights: Any, size: int) -> np.ndarray:
    if weights is None:
        return np.full(size, 1.0 / size)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (size,) or not np.isfinite(w).all() or w.min() < 0 or w.sum() <= 0:
        raise ValueError(
            f"weights must be {size} finite non-negative numbers with a positive sum (one per index); "
            f"got shape {w.shape}. Pass weights=None for uniform 1/n."
        )
    return w / w.sum()


def achieved_c_s(
    sketches: Any,
    indices: Any,
    weights: Any = None,
    *,
    rank: int | None = None,
    rtol: float = DEFAULT_RTOL,
    spectrum: Spectrum | None = None,
) -> float:
    """Smallest c with Σ̃ ⪯ c Σ̃_S on range(Σ̃): ĉ_S = λ_max(Σ̃^{1/2} Σ̃_S^+ Σ̃^{1/2}) (paper, §3.2).

    Computed in V's basis restricted to the k = rank(Σ̃) directions with λ_j > rtol·λ_1: with
    B = V_kᵀ Σ̃_S V_k and M = Λ_k^{-1/2} B Λ_k^{-1/2}, ĉ_S = 1/λ_min(M) (the generalised eigenproblem
    Σ̃ x = c Σ̃_S x on that subspace). Since the coreset's rows lie in range(Σ̃), range(Σ̃_S) ⊆ range(Σ̃).

    Returns ``inf`` when Σ̃_S is rank-deficient on range(Σ̃) (some direction Σ̃ sees is missing from
    the coreset: always the case when |S| < rank Σ̃), and ``0.0`` when Σ̃ = 0. ĉ_S ≥ 1 for uniform
    weights only on average; it can be < 1 when the coreset over-represents every direction.

    Args:
        sketches: ``[N, m]`` array or tensor G̃.
        indices: coreset rows (duplicates allowed: they add up).
        weights: per-index weights, normalised to sum 1 (scale matters: Σ̃ is an average, so is Σ̃_S).
            ``None`` (default) = uniform ``1/|S|``, the moment an unweighted finetuning run sees.
        rank: restrict to the top-``rank`` eigen-directions of Σ̃ (the subspace that matters in the
            high-dimensional regime n < m, where the full-range value is ``inf``).
        rtol: relative eigenvalue threshold defining range(Σ̃).
        spectrum: precomputed :func:`compute_spectrum` of ``sketches`` (saves an O(N m²) pass).
    """
    x = as_sketch_matrix(sketches)
    spec = spectrum if spectrum is not None else compute_spectrum(x)
    rows = _coreset_rows(x, indices)
    w = _normalised_weights(weights, len(rows))
    k = spec.rank(rtol)
    if rank is not None:
        if int(rank) < 1:
            raise ValueError(f"rank must be a positive integer or None; got {rank!r}.")
        k = min(k, int(rank))
    if k == 0:
        return 0.0
    lam = spec.eigenvalues[:k]
    proj = rows @ spec.eigenvectors[:, :k]  # [|S|, k]
    b = proj.T @ (proj * w[:, None])
    scale = 1.0 / np.sqrt(lam)
    mu = np.linalg.eigvalsh(scale[:, None] * b * scale[None, :])
    mu_min, mu_max = float(mu[0]), float(mu[-1])
    # A direction missing from the coreset shows up as μ ≈ rounding noise ≈ eps·μ_max·κ (κ = λ_1/λ_k).
    noise = 1e3 * np.finfo(np.float64).eps * max(mu_max, 1e-300) * float(lam[0] / lam[-1])
    if np.count_nonzero(w) < k or mu_min <= noise:
        return float("inf")
    return 1.0 / mu_min


def spectrum_coverage(
    sketches: Any, indices: Any, *, rtol: float = DEFAULT_RTOL, spectrum: Spectrum | None = None
) -> float:
    """Fraction of tr Σ̃ inside the span of the coreset's rows: tr(P_S Σ̃) / tr(Σ̃) ∈ [0, 1].

    P_S is the orthogonal projector onto span{g̃_i : i ∈ S} (the "exploration" half of the paper's
    variance–bias trade-off). 1.0 means the coreset spans every direction carrying energy; weights
    do not matter. Returns 1.0 when Σ̃ = 0.
    """
    x = as_sketch_matrix(sketches)
    spec = spectrum if spectrum is not None else compute_spectrum(x)
    total = spec.trace
    if total <= 0:
        return 1.0
    rows = _coreset_rows(x, indices)
    gram = rows.T @ rows
    ev, evec = np.linalg.eigh(gram)
    keep = ev > rtol * max(float(ev[-1]), 1e-300)
    q = evec[:, keep]  # orthonormal basis of the coreset's row span
    qv = q.T @ spec.eigenvectors  # [k_S, m]
    captured = float(((qv**2) @ spec.eigenvalues).sum())
    return float(np.clip(captured / total, 0.0, 1.0))
