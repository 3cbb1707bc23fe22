"""Ridge leverage-score sampling baseline (Alaoui & Mahoney 2015; Cohen, Musco & Musco 2017)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hf_skmm.selection.diagnostics import Spectrum, compute_spectrum
from hf_skmm.selection.leverage import weighted_projection_scores
from hf_skmm.selection.registry import register_selector
from hf_skmm.selection.sampling import draw_rows


def default_ridge(eigenvalues: np.ndarray, num_rows: int, k: int) -> float:
    """α = ‖G̃ − G̃_k‖_F² / k: the tail energy beyond rank k over k (Cohen, Musco & Musco 2017), k = n.

    With this α the ridge leverage scores sum to at most 2k, i.e. n·O(1) "effective" directions.
    When G̃ has rank ≤ k the tail is 0 and α falls back to 1e-10·‖G̃‖₂² (plain leverage scores).
    """
    sv2 = num_rows * np.asarray(eigenvalues)  # squared singular values of G̃
    tail = float(sv2[k:].sum())
    return tail / k if tail > 0 else 1e-10 * float(sv2[0]) if sv2.size and sv2[0] > 0 else 1.0


def ridge_leverage_scores(x: np.ndarray, ridge: float, spectrum: Spectrum | None = None) -> np.ndarray:
    """ℓ_i(α) = g̃_iᵀ(G̃ᵀG̃ + αI)⁻¹g̃_i = Σ_j (g̃_i·v_j)² / (N λ_j + α), streamed over row blocks."""
    spec = spectrum if spectrum is not None else compute_spectrum(x)
    return weighted_projection_scores(x, spec.eigenvectors, 1.0 / (spec.num_rows * spec.eigenvalues + ridge))


def select_ridge_leverage(
    sketches: np.ndarray,
    n: int,
    seed: int,
    *,
    ridge: float | None = None,
    rank: int | None = None,
    draw: str = "systematic",
    spectrum: Spectrum | None = None,
) -> tuple[np.ndarray, None, dict[str, Any]]:
    """Ridge leverage scores ℓ_i(α) = g̃_iᵀ(G̃ᵀG̃ + αI)⁻¹g̃_i, sample ∝ ℓ without replacement.

    ℓ_i = Σ_j (g̃_i·v_j)² / (N λ_j + α). ``ridge`` α defaults to :func:`default_ridge` with k = ``rank``
    (default n), i.e. the tail energy of G̃ beyond rank k, divided by k.
    Rows are drawn with inclusion probabilities ∝ ℓ (systematic sampling) or ``draw="topk"``.
    """
    spec = spectrum if spectrum is not None else compute_spectrum(sketches)
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
        raise ValueError(f"rank must be a positive integer or None (= n); got {rank!r}.")
    if ridge is None:
        ridge = default_ridge(spec.eigenvalues, spec.num_rows, rank if rank is not None else n)
    elif not np.isfinite(ridge) or ridge <= 0:
        raise ValueError(f"ridge must be a positive number or None (automatic); got {ridge!r}.")
    scores = ridge_leverage_scores(sketches, float(ridge), spec)
    idx = draw_rows(scores, n, np.random.default_rng(seed), draw)
    return idx, None, {"ridge": float(ridge), "effective_dim": float(scores.sum()), "draw": draw}


register_selector("ridge_leverage", select_ridge_leverage)
