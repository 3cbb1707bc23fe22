"""``SelectionResult``: what every selector returns, and its on-disk form (JSON + .npy, never pickle)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hf_skmm._io import atomic_dir

FORMAT_VERSION = 1
_JSON_NAME = "selection.json"
_INDICES_NAME = "indices.npy"
_WEIGHTS_NAME = "weights.npy"


def to_jsonable(value: Any) -> Any:
    """Recursively convert numpy scalars/arrays and tuples to plain JSON types.

    Non-finite floats stay floats (``json`` writes ``Infinity`` / ``NaN``, which Python's ``json`` reads
    back); ``c_s_achieved`` is legitimately ``inf`` for a rank-deficient coreset.
    """
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)  # callables etc.: keep a readable trace rather than failing to save


@dataclass
class SelectionResult:
    """A selected coreset.

    Args:
        indices: ``int64 [n]`` row numbers into the sketch matrix, unique and sorted ascending.
        weights: ``float64 [n]`` non-negative, summing to 1, aligned with ``indices``. SkMM's relaxed
            solution ``s`` restricted to the coreset and renormalised; ``1/n`` for unweighted selectors.
        info: JSON-serialisable diagnostics (method, params, ``c_s_achieved``, objective history, ...).
    """

    indices: np.ndarray
    weights: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        idx = np.asarray(self.indices)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise ValueError(
                f"indices must be a 1-D integer array; got shape {idx.shape}, dtype {idx.dtype}."
            )
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < 0 or np.unique(idx).size != idx.size):
            raise ValueError("indices must be unique non-negative row numbers.")
        w = np.asarray(self.weights, dtype=np.float64)
        if w.shape != idx.shape:
            raise ValueError(f"weights must match indices' shape {idx.shape}; got {w.shape}.")
        if w.size and (not np.isfinite(w).all() or w.min() < 0):
            raise ValueError("weights must be finite and non-negative.")
        self.indices, self.weights = idx, w

    def __len__(self) -> int:
        return int(self.indices.size)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``selection.json``, ``indices.npy`` and ``weights.npy`` into ``directory``.

        The files are written into a temporary sibling directory which then replaces ``directory``, so
        a crash never leaves a half-written selection behind. An existing ``directory`` is replaced.
        """
        target = Path(directory)
        with atomic_dir(target) as tmp:
            np.save(tmp / _INDICES_NAME, self.indices, allow_pickle=False)
            np.save(tmp / _WEIGHTS_NAME, self.weights, allow_pickle=False)
            meta = {
                "format_version": FORMAT_VERSION,
                "n": len(self),
                "indices": _INDICES_NAME,
                "weights": _WEIGHTS_NAME,
                "info": to_jsonable(self.info),
            }
            (tmp / _JSON_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SelectionResult:
        """Read a directory written by :meth:`save`."""
        path = Path(directory)
        meta_path = path / _JSON_NAME
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{meta_path} not found: is {path} a directory written by SelectionResult.save?"
            )
        meta = json.loads(meta_path.read_text())
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{meta_path} has format_version={version!r}; this hf_skmm reads {FORMAT_VERSION}."
            )
        indices = np.load(path / meta["indices"], allow_pickle=False)
        weights = np.load(path / meta["weights"], allow_pickle=False)
        return cls(indices=indices, weights=weights, info=meta.get("info", {}))

    def summary(self) -> str:
        """One line for logs: method, n, achieved c_S."""
        c = self.info.get("c_s_achieved")
        c_txt = "n/a" if c is None else ("inf" if isinstance(c, float) and math.isinf(c) else f"{c:.4g}")
        return f"{self.info.get('method', '?')}: n={len(self)}, c_s_achieved={c_txt}"
