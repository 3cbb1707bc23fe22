"""Drawing n distinct rows from a probability vector: the one place every sampling selector shares.

Scheme (``draw="systematic"``, the default): *randomised systematic sampling* (Madow 1949) with
inclusion probabilities π_i. The rows are shuffled with the seeded generator, π is accumulated in that
order, and one uniform u ∈ [0, 1) picks the rows whose cumulative interval contains u, u+1, …, u+n−1.
Because every π_i ≤ 1 and Σπ_i = n, this returns exactly n distinct rows and P(i ∈ S) = π_i exactly.

For SkMM, π_i = n·s_i (s on the capped simplex, s_i ≤ 1/n), so E[(1/n) Σ_{i∈S} g̃_i g̃_iᵀ] = Σ_i s_i g̃_i g̃_iᵀ:
the unweighted coreset matches the optimised moments *in expectation*. ``numpy``'s
``choice(replace=False, p=s)`` (successive sampling, ``draw="successive"``) does not have that
property: its inclusion probabilities are flatter than n·s. ``draw="topk"`` keeps the n largest s_i.
"""

from __future__ import annotations

import numpy as np

DRAWS = ("systematic", "successive", "topk")


def inclusion_probabilities(scores: np.ndarray, n: int) -> np.ndarray:
    """π ∝ scores, capped at 1 with the excess redistributed, Σπ = n (float64 [N]).

    Rows with zero score get π = 0 unless fewer than n rows have a positive score, in which case the
    positive rows are taken surely and the remainder is spread uniformly over the zero-score rows.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or not np.isfinite(s).all() or (s.size and s.min() < 0):
        raise ValueError("scores must be a 1-D array of finite non-negative numbers.")
    num = s.size
    if not 0 < n <= num:
        raise ValueError(f"n must be in [1, {num}]; got {n}.")
    pos = s > 0
    k = int(np.count_nonzero(pos))
    if k <= n:
        pi = np.where(pos, 1.0, (n - k) / max(num - k, 1))
        return np.minimum(pi, 1.0)
    pi = np.zeros(num)
    sure = np.zeros(num, dtype=bool)
    for _ in range(num):  # each pass fixes at least one more row at π = 1; typically 1-3 passes
        rest = pos & ~sure
        budget = n - np.count_nonzero(sure)
        pi[rest] = s[rest] * (budget / s[rest].sum())
        over = rest & (pi >= 1.0)
        if not over.any():
            break
        sure |= over
        pi[sure] = 1.0
    return pi


def systematic_sample(pi: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Randomised systematic sampling: exactly n distinct rows with P(i ∈ S) = π_i (Σπ = n, π ≤ 1)."""
    num = pi.size
    order = rng.permutation(num)
    cum = np.cumsum(pi[order])
    cum *= n / cum[-1]  # remove rounding drift so the last interval ends at exactly n
    points = rng.random() + np.arange(n)
    pos = np.minimum(np.searchsorted(cum, points, side="right"), num - 1)
    chosen = order[pos]
    chosen = np.unique(chosen)
    if chosen.size < n:  # floating-point ties only: top up with the most probable unchosen rows
        mask = np.ones(num, dtype=bool)
        mask[chosen] = False
        rest = np.flatnonzero(mask)
        extra = rest[np.argsort(-pi[rest], kind="stable")[: n - chosen.size]]
        chosen = np.concatenate([chosen, extra])
    return chosen


def draw_rows(scores: np.ndarray, n: int, rng: np.random.Generator, draw: str = "systematic") -> np.ndarray:
    """n distinct row indices according to non-negative ``scores`` (see the module docstring)."""
    if draw not in DRAWS:
        raise ValueError(f"draw must be one of {DRAWS}; got {draw!r}.")
    scores = np.asarray(scores, dtype=np.float64)
    if draw == "topk":
        # stable sort on -score: ties resolved by row number, independent of the seed
        return np.sort(np.argsort(-scores, kind="stable")[:n])
    if draw == "successive":
        pos = np.flatnonzero(scores > 0)
        if pos.size < n:
            rest = np.setdiff1d(np.arange(scores.size), pos)
            return np.concatenate([pos, rng.choice(rest, n - pos.size, replace=False)])
        return rng.choice(scores.size, size=n, replace=False, p=scores / scores.sum())
    return systematic_sample(inclusion_probabilities(scores, n), n, rng)
