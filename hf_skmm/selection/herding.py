"""Herding baseline: greedy mean matching on the sketched features (Welling 2009; Chen et al. 2010)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hf_skmm.selection._inputs import row_blocks
from hf_skmm.selection.registry import register_selector


def column_mean_and_sq_norms(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean row (float64 [m]) and squared row norms (float64 [N]), streamed over row blocks."""
    total = np.zeros(x.shape[1])
    sq = np.empty(len(x))
    for blk in row_blocks(len(x)):
        b = x[blk].astype(np.float64, copy=False)
        total += b.sum(axis=0)
        sq[blk] = np.einsum("ij,ij->i", b, b)
    return total / len(x), sq


def select_herding(sketches: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, None, dict[str, Any]]:
    """Kernel herding with the linear kernel: greedily keep the coreset mean closest to the full mean.

    Step t adds argmin_{i ∉ S} ‖(t+1)μ − (Σ_{j∈S} g̃_j + g̃_i)‖², i.e. argmin ‖g̃_i‖² − 2⟨c_t, g̃_i⟩ with
    c_t = (t+1)μ − Σ_{j∈S} g̃_j (the DeepCore "Herding" baseline of the paper). Deterministic: ``seed`` is
    unused and ties go to the lowest row. O(N m) per step, O(N m n) in all.
    """
    del seed
    mu, sq = column_mean_and_sq_norms(sketches)
    chosen = np.zeros(len(sketches), dtype=bool)
    order = np.empty(n, dtype=np.int64)
    total = np.zeros_like(mu)
    for t in range(n):
        c = (t + 1) * mu - total
        score = sq - 2.0 * (sketches @ c.astype(sketches.dtype)).astype(np.float64)
        score[chosen] = np.inf
        i = int(np.argmin(score))
        chosen[i] = True
        order[t] = i
        total += sketches[i]
    gap = float(np.linalg.norm(total / n - mu))
    return order, None, {"mean_gap": gap, "selection_order": order.tolist() if n <= 10000 else None}


register_selector("herding", select_herding)
