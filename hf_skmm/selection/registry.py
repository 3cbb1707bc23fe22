"""Selector registry: ``register_selector("name", fn)`` is all it takes to add a method.

A selector is a plain function (see CONTRIBUTING.md for the checklist)::

    def select_foo(sketches: np.ndarray, n: int, seed: int, **kwargs) -> tuple[indices, weights | None, info]

``sketches`` arrives validated (2-D, finite, float32/float64 numpy, ``1 <= n < N``); return ``n`` unique
row numbers in any order, their weights (or ``None`` for uniform ``1/n``) and a JSON-able info dict.
:func:`hf_skmm.selection.select` sorts, normalises, adds diagnostics and handles stratification.

Two optional conventions: keyword arguments listed in ``row_kwargs`` are per-example arrays (e.g.
``probs``) that ``select`` slices together with the rows when it stratifies; a selector whose signature
has a ``spectrum`` keyword receives the precomputed eigendecomposition of Σ̃ when one is available.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

SelectorFn = Callable[..., tuple[Any, Any, dict]]


@dataclass(frozen=True)
class SelectorSpec:
    name: str
    fn: SelectorFn
    description: str
    row_kwargs: tuple[str, ...] = ()
    accepts_spectrum: bool = False


_REGISTRY: dict[str, SelectorSpec] = {}


def register_selector(
    name: str,
    selector: SelectorFn,
    *,
    description: str | None = None,
    row_kwargs: Sequence[str] = (),
    overwrite: bool = False,
) -> SelectorFn:
    """Register ``selector`` under ``name`` (lower-case), returning it unchanged.

    Args:
        name: the ``method=`` string users pass to :func:`~hf_skmm.selection.select`.
        selector: ``fn(sketches, n, seed, **kwargs) -> (indices, weights | None, info)``.
        description: one line for :func:`list_selectors`; defaults to the first docstring line.
        row_kwargs: names of keyword arguments that hold one entry per row (sliced when stratifying).
        overwrite: replace an existing registration instead of raising.
    """
    if not isinstance(name, str) or not name or name != name.strip().lower():
        raise ValueError(f"selector name must be a non-empty lower-case string; got {name!r}.")
    if not callable(selector):
        raise TypeError(f"selector must be callable; got {type(selector).__name__}.")
    if name in _REGISTRY and not overwrite and _REGISTRY[name].fn is not selector:
        raise ValueError(
            f"a selector named {name!r} is already registered; pass overwrite=True to replace it."
        )
    if description is None:
        doc = inspect.getdoc(selector) or ""
        description = doc.strip().splitlines()[0] if doc.strip() else name
    try:
        params = inspect.signature(selector).parameters
        accepts_spectrum = "spectrum" in params
    except (TypeError, ValueError):  # builtins without a signature
        accepts_spectrum = False
    _REGISTRY[name] = SelectorSpec(name, selector, description, tuple(row_kwargs), accepts_spectrum)
    return selector


def get_selector(name: str) -> SelectorSpec:
    if name not in _REGISTRY:
        raise ValueError(f"unknown selection method {name!r}; available: {sorted(_REGISTRY)}.")
    return _REGISTRY[name]


def list_selectors() -> dict[str, str]:
    """``{name: one-line description}`` of every registered selector, sorted by name."""
    return {name: _REGISTRY[name].description for name in sorted(_REGISTRY)}
