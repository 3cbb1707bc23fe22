"""Uncertainty baselines from the paper's real-data tables: entropy, margin, least confidence.

They need only the model's outputs on the pool, passed as ``probs=[N, C]`` (rows summing to 1) or
``logits=[N, C]``; the sketches are not used (they only fix N). The n most uncertain rows are kept
(ties go to the lowest row; ``seed`` is unused). These are "label-aware" in the paper's sense only in
that the model producing the outputs was trained with labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hf_skmm.selection.registry import register_selector


def class_probabilities(probs: Any, logits: Any, method: str) -> np.ndarray:
    """Validate ``probs`` / ``logits`` and return probabilities [N, C] (float64)."""
    if (probs is None) == (logits is None):
        raise ValueError(
            f"method={method!r} needs the model's outputs: pass exactly one of probs=[N, C] or logits=[N, C] "
            f"(got probs={'set' if probs is not None else None}, logits={'set' if logits is not None else None})."
        )
    name, arr = ("probs", probs) if probs is not None else ("logits", logits)
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"{name} must be a 2-D array [N, C] with C >= 2 classes; got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf; fix the model outputs first.")
    if logits is not None:
        z = arr - arr.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)
    if arr.min() < 0 or np.abs(arr.sum(axis=1) - 1).max() > 1e-3:
        raise ValueError(
            "probs must be non-negative with rows summing to 1; pass raw scores as logits= instead."
        )
    return arr


def _most_uncertain(score: np.ndarray, n: int) -> np.ndarray:
    return np.argsort(-score, kind="stable")[:n]


def select_entropy(sketches: np.ndarray, n: int, seed: int, *, probs=None, logits=None):
    """Entropy: keep the n rows with the highest predictive entropy −Σ_c p_c log p_c (needs probs/logits)."""
    p = class_probabilities(probs, logits, "entropy")
    score = -(p * np.log(np.clip(p, 1e-300, None))).sum(axis=1)
    return _most_uncertain(score, n), None, {"score_threshold": float(np.sort(score)[-n])}


def select_margin(sketches: np.ndarray, n: int, seed: int, *, probs=None, logits=None):
    """Margin: keep the n rows with the smallest gap between the two most probable classes (needs probs/logits)."""
    p = class_probabilities(probs, logits, "margin")
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    score = -(top2[:, 1] - top2[:, 0])
    return _most_uncertain(score, n), None, {"score_threshold": float(np.sort(score)[-n])}


def select_least_confidence(sketches: np.ndarray, n: int, seed: int, *, probs=None, logits=None):
    """Least confidence: keep the n rows with the lowest top-class probability (needs probs/logits)."""
    p = class_probabilities(probs, logits, "least_confidence")
    score = 1.0 - p.max(axis=1)
    return _most_uncertain(score, n), None, {"score_threshold": float(np.sort(score)[-n])}


_ROW_KWARGS = ("probs", "logits")
register_selector("entropy", select_entropy, row_kwargs=_ROW_KWARGS)
register_selector("margin", select_margin, row_kwargs=_ROW_KWARGS)
register_selector("least_confidence", select_least_confidence, row_kwargs=_ROW_KWARGS)
