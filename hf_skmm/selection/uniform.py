"""Uniform random subset: the baseline every other selector must beat."""

from __future__ import annotations

from typing import Any

import numpy as np

from hf_skmm.selection.registry import register_selector


def select_uniform(sketches: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, None, dict[str, Any]]:
    """Uniform random subset of n rows without replacement (numpy default_rng(seed).choice)."""
    rng = np.random.default_rng(seed)
    return rng.choice(len(sketches), size=n, replace=False), None, {}


register_selector("uniform", select_uniform)
