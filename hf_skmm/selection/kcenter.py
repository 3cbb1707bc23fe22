"""K-center greedy baseline (farthest-first traversal; Sener & Savarese 2018) on the sketched features."""

from __future__ import annotations

from typing import Any

import numpy as np

from hf_skmm.selection.herding import column_mean_and_sq_norms
from hf_skmm.selection.registry import register_selector


def select_kcenter(sketches: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, None, dict[str, Any]]:
    """K-center greedy: a random first centre, then repeatedly the row farthest from all chosen centres.

    A 2-approximation of min_S max_i min_{j∈S} ‖g̃_i − g̃_j‖. The first centre is drawn uniformly with
    ``seed``; ties go to the lowest row. O(N m) per step (one matrix–vector product), O(N) memory.
    """
    rng = np.random.default_rng(seed)
    _, sq = column_mean_and_sq_norms(sketches)
    order = np.empty(n, dtype=np.int64)
    order[0] = rng.integers(len(sketches))
    dist = np.full(len(sketches), np.inf)
    for t in range(n):
        c = sketches[order[t]].astype(np.float64)
        d = sq - 2.0 * (sketches @ c.astype(sketches.dtype)).astype(np.float64) + float(c @ c)
        np.minimum(dist, np.maximum(d, 0.0), out=dist)
        dist[order[: t + 1]] = -1.0  # chosen rows are never picked again
        if t + 1 < n:
            order[t + 1] = int(np.argmax(dist))
    radius = float(np.sqrt(max(dist.max(), 0.0)))
    return order, None, {"covering_radius": radius}


register_selector("kcenter", select_kcenter)
