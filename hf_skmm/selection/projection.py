"""Exact Euclidean projection onto the capped simplex Δ_n = {s : 0 ≤ s_i ≤ 1/n, Σ_i s_i = 1}.

The KKT conditions of min_s ½‖s − y‖² over Δ_n give s_i = clip(y_i − τ, 0, u) (u = 1/n) for the unique
τ solving φ(τ) = Σ_i clip(y_i − τ, 0, u) = 1. φ is continuous, non-increasing and piecewise linear with
breakpoints {y_i, y_i − u}; on the piece containing τ it is exactly
    φ(τ) = u·|U| + Σ_{i∈F} (y_i − τ),  U = {y_i − τ ≥ u},  F = {0 < y_i − τ < u},
so τ = (Σ_{i∈F} y_i + u|U| − 1)/|F| once the partition (U, F) is right. We iterate that closed form
(a Newton step on φ) inside a bisection bracket: each step is O(N), the bracket guarantees progress and
the iteration ends on the exact piece (typically 3-8 steps), so the result is exact up to rounding.
"""

from __future__ import annotations

import numpy as np


def project_capped_simplex(
    y: np.ndarray, upper: float, total: float = 1.0, max_steps: int = 200, tau0: float | None = None
) -> np.ndarray:
    """Project ``y`` onto {0 ≤ s ≤ upper, Σ s = total} (float64, exact; see the module docstring).

    Requires ``upper * len(y) >= total`` (otherwise the set is empty). ``tau0`` warm-starts the
    threshold (FISTA passes the previous one). Entries whose fate is settled by the current bracket
    [lo, hi] (y_i ≤ lo: zero; y_i − upper ≥ hi: capped) are dropped from the working set, so later steps
    cost O(#undecided) rather than O(N).
    """
    return project_capped_simplex_tau(y, upper, total, max_steps, tau0)[0]


def project_capped_simplex_tau(
    y: np.ndarray, upper: float, total: float = 1.0, max_steps: int = 200, tau0: float | None = None
) -> tuple[np.ndarray, float]:
    """:func:`project_capped_simplex` that also returns the threshold τ."""
    y = np.asarray(y, dtype=np.float64)
    num = y.size
    if upper * num < total * (1 - 1e-12):
        raise ValueError(f"the capped simplex is empty: upper*N = {upper * num} < total = {total}.")
    lo, hi = float(y.min()) - upper, float(y.max())  # φ(lo) = N·u ≥ total, φ(hi) = 0 ≤ total
    tau = tau0 if tau0 is not None else (float(y.sum()) - total) / num  # the latter is exact if nothing clips
    if not lo <= tau <= hi:
        tau = 0.5 * (lo + hi)
    tol = 1e-14 * max(total, 1.0)
    work, fixed_up = y, 0  # undecided entries, and how many entries are known to sit at the cap
    for _ in range(max_steps):
        x = work - tau
        up = x >= upper
        free = (x > 0) & ~up
        n_up, n_free = fixed_up + int(np.count_nonzero(up)), int(np.count_nonzero(free))
        phi = upper * n_up + float(x[free].sum())
        if abs(phi - total) <= tol:
            break
        if phi > total:
            lo = tau
        else:
            hi = tau
        new = tau + (phi - total) / n_free if n_free else 0.5 * (lo + hi)
        if not lo < new < hi:
            new = 0.5 * (lo + hi)
        if new == tau:
            break
        tau = new
        undecided = (work > lo) & (work - upper < hi)
        n_undecided = int(np.count_nonzero(undecided))
        if n_undecided < 0.7 * work.size:
            fixed_up += int(np.count_nonzero(work - upper >= hi))
            work = work[undecided]
    return np.clip(y - tau, 0.0, upper), tau
