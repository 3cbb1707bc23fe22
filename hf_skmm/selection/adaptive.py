"""Adaptive sampling baseline: residual-norm sampling / random pivoting (Deshpande & Vempala 2006)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hf_skmm.selection.herding import column_mean_and_sq_norms
from hf_skmm.selection.registry import register_selector


def select_adaptive(sketches: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, None, dict[str, Any]]:
    """Adaptive (volume-style) sampling: draw row i ∝ its squared residual after projecting out the span.

    One row at a time (random pivoting, as in randomly pivoted Cholesky): P(i) ∝ ‖(I − QQᵀ) g̃_i‖², with Q an
    orthonormal basis of the chosen rows, updated by Gram–Schmidt. Residual norms are tracked as
    ‖g̃_i‖² − Σ_k (q_kᵀ g̃_i)², so memory stays O(N + m²). Once the chosen rows span everything (all
    residuals ≈ 0, e.g. n > rank), the remaining rows are drawn uniformly. O(N m) per step.
    """
    rng = np.random.default_rng(seed)
    num, m = sketches.shape
    _, res = column_mean_and_sq_norms(sketches)
    scale = float(res.max()) if num else 0.0
    basis = np.zeros((m, 0))
    chosen = np.zeros(num, dtype=bool)
    order = np.empty(n, dtype=np.int64)
    uniform_from = None
    for t in range(n):
        res[chosen] = 0.0
        total = float(res.sum())
        if total <= 1e-12 * scale * num:  # nothing left to explain: fall back to uniform draws
            uniform_from = t if uniform_from is None else uniform_from
            rest = np.flatnonzero(~chosen)
            i = int(rest[rng.integers(rest.size)])
        else:
            i = int(rng.choice(num, p=res / total))
        chosen[i] = True
        order[t] = i
        q = sketches[i].astype(np.float64)
        for _ in range(2):  # Gram-Schmidt twice for numerical orthogonality
            q -= basis @ (basis.T @ q)
        norm = float(np.linalg.norm(q))
        if norm > 1e-10 * np.sqrt(scale) and basis.shape[1] < m:
            q /= norm
            basis = np.column_stack([basis, q])
            proj = (sketches @ q.astype(sketches.dtype)).astype(np.float64)
            res -= proj * proj
            np.maximum(res, 0.0, out=res)
    return order, None, {"span_rank": int(basis.shape[1]), "uniform_after": uniform_from}


register_selector("adaptive", select_adaptive)
