"""Truncated leverage-score sampling baseline (rank-k SVD of the sketched features)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hf_skmm.selection._inputs import row_blocks
from hf_skmm.selection.diagnostics import Spectrum, compute_spectrum
from hf_skmm.selection.registry import register_selector
from hf_skmm.selection.sampling import draw_rows


def weighted_projection_scores(x: np.ndarray, vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """score_i = Σ_j w_j (g̃_i · v_j)², streamed over row blocks (O(N k) memory-light)."""
    out = np.empty(len(x))
    for blk in row_blocks(len(x)):
        proj = x[blk].astype(np.float64, copy=False) @ vectors
        out[blk] = (proj * proj) @ weights
    return out


def leverage_scores(x: np.ndarray, rank: int, spectrum: Spectrum | None = None) -> tuple[np.ndarray, int]:
    """Rank-k leverage scores ℓ_i = Σ_{j≤k} (g̃_i·v_j)² / (N λ_j), k = min(rank, rank Σ̃); returns (ℓ, k)."""
    spec = spectrum if spectrum is not None else compute_spectrum(x)
    k = min(int(rank), spec.rank())
    if k == 0:
        return np.zeros(len(x)), 0
    return weighted_projection_scores(
        x, spec.eigenvectors[:, :k], 1.0 / (spec.num_rows * spec.eigenvalues[:k])
    ), k


def select_leverage(
    sketches: np.ndarray,
    n: int,
    seed: int,
    *,
    rank: int | None = None,
    draw: str = "systematic",
    spectrum: Spectrum | None = None,
) -> tuple[np.ndarray, None, dict[str, Any]]:
    """Truncated leverage scores: ℓ_i = ‖U_k[i]‖² for G̃ = UΣVᵀ, sample ∝ ℓ without replacement.

    ℓ_i = Σ_{j≤k} (g̃_i·v_j)² / (N λ_j) with Σ̃ = VΛVᵀ, so Σ_i ℓ_i = k. ``rank`` k defaults to
    min(n, rank Σ̃). Rows are drawn with inclusion probabilities ∝ ℓ (capped at 1; systematic sampling,
    see :mod:`hf_skmm.selection.sampling`), or the n largest with ``draw="topk"``.
    """
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise ValueError(f"rank must be a positive integer or None; got {rank!r}.")
    scores, k = leverage_scores(sketches, rank if rank is not None else n, spectrum)
    idx = draw_rows(scores, n, np.random.default_rng(seed), draw)
    return idx, None, {"rank": k, "draw": draw}


register_selector("leverage", select_leverage)
