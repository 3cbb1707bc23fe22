"""``select()``: the one entry point. Validates input, handles stratification and non-finite rows,
runs the registered selector, normalises its output and attaches diagnostics."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from hf_skmm.selection._inputs import as_sketch_matrix, check_n, check_seed, nonfinite_rows, row_aligned
from hf_skmm.selection.diagnostics import Spectrum, achieved_c_s, compute_spectrum, spectrum_coverage
from hf_skmm.selection.registry import SelectorSpec, get_selector
from hf_skmm.selection.result import SelectionResult, to_jsonable

logger = logging.getLogger(__name__)

NONFINITE = ("raise", "exclude")


def allocate_quotas(n: int, sizes: Any) -> np.ndarray:
    """Split n across groups in proportion to ``sizes`` (largest-remainder / Hamilton method).

    Every non-empty group gets at least one slot when n ≥ #non-empty groups, no group gets more than
    its size, and the quotas sum to n (requires n ≤ Σ sizes). Ties go to the earlier group.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if not 0 <= n <= total:
        raise ValueError(f"cannot allocate n={n} slots over groups totalling {total} rows.")
    ideal = n * sizes / max(total, 1)
    quota = np.minimum(np.floor(ideal).astype(np.int64), sizes)
    nonempty = sizes > 0
    floor_one = n >= int(nonempty.sum())
    if floor_one:
        quota = np.where(nonempty, np.maximum(quota, 1), 0)
    while quota.sum() < n:  # hand out the remaining slots by largest remainder
        remainder = np.where(quota < sizes, ideal - quota, -np.inf)
        quota[int(np.argmax(remainder))] += 1
    while quota.sum() > n:  # only after the >=1 floor: take back where the excess over ideal is largest
        excess = np.where(quota > (1 if floor_one else 0), quota - ideal, -np.inf)
        quota[int(np.argmax(excess))] -= 1
    return quota


def _sub_seed(seed: int, group: int) -> int:
    return int(np.random.SeedSequence([seed, group]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _json_params(kwargs: dict[str, Any], row_kwargs: tuple[str, ...]) -> dict[str, Any]:
    params = {}
    for key, value in kwargs.items():
        if key in row_kwargs or callable(value):
            params[key] = f"<{type(value).__name__}>"
        elif isinstance(value, np.ndarray) and value.size > 64:
            params[key] = f"<array {value.shape}>"
        else:
            params[key] = value
    return to_jsonable(params)


def _run_selector(
    spec: SelectorSpec,
    x: np.ndarray,
    n: int,
    seed: int,
    kwargs: dict[str, Any],
    spectrum: Spectrum | None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Run one selector on ``x`` and check its output; ``n == len(x)`` returns every row."""
    num = len(x)
    if n == num:
        return np.arange(num), np.full(num, 1.0 / num), {"all_rows": True}
    if spec.accepts_spectrum and spectrum is not None:
        kwargs = {**kwargs, "spectrum": spectrum}
    idx, weights, info = spec.fn(x, n, seed, **kwargs)
    idx = np.asarray(idx)
    if (
        idx.shape != (n,)
        or idx.dtype.kind not in "iu"
        or np.unique(idx).size != n
        or idx.min() < 0
        or idx.max() >= num
    ):
        raise RuntimeError(
            f"selector {spec.name!r} must return {n} unique row indices in [0, {num}); got shape {idx.shape}, "
            f"dtype {idx.dtype}. This is a bug in the selector (see CONTRIBUTING.md)."
        )
    if weights is None:
        weights = np.full(n, 1.0 / n)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n,) or not np.isfinite(weights).all() or weights.min() < 0 or weights.sum() <= 0:
        raise RuntimeError(f"selector {spec.name!r} returned invalid weights (shape {weights.shape}).")
    return idx.astype(np.int64), weights / weights.sum(), dict(info or {})


def select(
    sketches: Any,
    n: int,
    method: str = "skmm",
    seed: int = 0,
    stratify: Any = None,
    *,
    nonfinite: str = "raise",
    diagnostics: bool = True,
    spectrum: Spectrum | None = None,
    **method_kwargs: Any,
) -> SelectionResult:
    """Select ``n`` rows of an ``[N, m]`` sketch matrix with a registered method.

    Args:
        sketches: numpy array or torch tensor (CPU or CUDA, any float dtype) ``[N, m]``, one sketched
            gradient per example. A torch input gives exactly the numpy result (it is viewed/copied
            to host numpy first).
        n: coreset size, ``1 <= n <= N``; ``n == N`` returns every row with weights ``1/N``.
        method: a name from :func:`list_selectors` (default ``"skmm"``).
        seed: the one seed of the selection; the same seed gives the same coreset.
        stratify: optional per-row labels ``[N]``: n is split across classes in proportion to their size
            (largest remainder, ≥ 1 per non-empty class when n allows), the method runs on each class
            with its own derived seed, and the coresets are merged; weights are scaled by n_c/n.
        nonfinite: rows with NaN/inf: ``"raise"`` (default, ValueError listing them) or ``"exclude"``
            (never selected; Σ̃ and diagnostics use the finite rows only; costs one copy of them).
        diagnostics: add ``c_s_achieved`` & co to ``info`` (one O(N m²) pass; SkMM reuses it).
        spectrum: precomputed :func:`compute_spectrum` of ``sketches`` to reuse across calls on the same
            matrix (scripts that run many selections); ignored when rows are excluded or stratified.
        **method_kwargs: forwarded to the selector (e.g. ``c_s=0.9`` for skmm, ``probs=`` for entropy).

    Returns:
        :class:`SelectionResult` with ``indices`` sorted ascending, ``weights`` summing to 1 aligned with
        them, and ``info``: ``method``, ``n``, ``num_rows``, ``seed``, ``params``, ``seconds``, the
        selector's own entries, and with ``diagnostics=True``: ``c_s_achieved`` (uniform weights 1/n: what
        unweighted training sees; ``inf`` if the coreset misses a direction of range Σ̃, always when
        n < rank Σ̃), ``c_s_achieved_weighted`` (the returned weights), ``c_s_achieved_top_k`` (restricted
        to the top ``top_k = min(n, rank)`` eigen-directions) and ``spectrum_coverage``.
    """
    t0 = time.perf_counter()
    spec = get_selector(method)
    x = as_sketch_matrix(sketches)
    num = len(x)
    seed = check_seed(seed)
    if nonfinite not in NONFINITE:
        raise ValueError(f"nonfinite must be one of {NONFINITE}; got {nonfinite!r}.")
    kwargs = dict(method_kwargs)
    for key in spec.row_kwargs:
        if kwargs.get(key) is not None:
            kwargs[key] = row_aligned(kwargs[key], num, key)
    labels = None
    if stratify is not None:
        labels = row_aligned(stratify, num, "stratify")
        if labels.ndim != 1:
            raise ValueError(f"stratify must be a 1-D array of per-row labels; got shape {labels.shape}.")
    n = check_n(n, num)

    rows = np.arange(num)
    bad = nonfinite_rows(x)
    if bad.size:
        if nonfinite == "raise":
            raise ValueError(
                f"sketches has {bad.size} row(s) with NaN or inf (first: {bad[:5].tolist()}); fix them upstream "
                f"or pass nonfinite='exclude' to leave them out of the selection."
            )
        rows = np.setdiff1d(rows, bad)
        if n > rows.size:
            raise ValueError(f"n={n} exceeds the {rows.size} rows with finite sketches; lower n.")
        logger.warning("select: excluding %d non-finite row(s) from %d.", bad.size, num)
    xs = x if rows.size == num else x[rows]

    if spectrum is not None and (rows.size != num or labels is not None):
        spectrum = None  # it describes the full matrix, not the subset the selector sees
    if spectrum is not None and (spectrum.num_rows != num or spectrum.eigenvectors.shape[0] != x.shape[1]):
        raise ValueError(
            f"spectrum was computed for {spectrum.num_rows} rows x {spectrum.eigenvectors.shape[0]} dims, "
            f"but sketches is {x.shape}; pass compute_spectrum(sketches) or None."
        )
    if spectrum is None and (diagnostics or spec.accepts_spectrum) and labels is None:
        spectrum = compute_spectrum(xs)
    if labels is None:
        idx, weights, info = _run_selector(spec, xs, n, seed, kwargs, spectrum)
        idx = rows[idx]
    else:
        groups, inverse = np.unique(labels[rows], return_inverse=True)
        sizes = np.bincount(inverse, minlength=groups.size)
        quotas = allocate_quotas(n, sizes)
        parts_idx, parts_w, per_class = [], [], []
        for g, quota in enumerate(quotas):
            if quota == 0:
                continue
            local = np.flatnonzero(inverse == g)
            sub_kwargs = {
                k: (v[rows[local]] if k in spec.row_kwargs and v is not None else v)
                for k, v in kwargs.items()
            }
            gi, gw, ginfo = _run_selector(spec, xs[local], int(quota), _sub_seed(seed, g), sub_kwargs, None)
            parts_idx.append(rows[local[gi]])
            parts_w.append(gw * (quota / n))
            per_class.append(
                {"label": groups[g], "size": int(sizes[g]), "n": int(quota)}
                | {k: ginfo[k] for k in ("c_s_target", "feasible", "n_iter", "all_rows") if k in ginfo}
            )
        idx, weights = np.concatenate(parts_idx), np.concatenate(parts_w)
        info = {"strata": per_class, "num_strata": len(per_class)}

    order = np.argsort(idx, kind="stable")
    idx, weights = idx[order], weights[order]
    weights = weights / weights.sum()
    info = {
        "method": method,
        "n": n,
        "num_rows": num,
        "dim": x.shape[1],
        "seed": seed,
        "params": _json_params(method_kwargs, spec.row_kwargs),
        "stratified": labels is not None,
        "excluded_nonfinite": int(bad.size),
        **info,
    }
    if diagnostics:
        spectrum = spectrum if spectrum is not None else compute_spectrum(xs)
        local_idx = np.searchsorted(rows, idx)  # positions of the chosen rows inside xs
        rank = spectrum.rank()
        top_k = max(1, min(n, rank))
        info["rank"] = rank
        info["c_s_achieved"] = achieved_c_s(xs, local_idx, spectrum=spectrum)
        info["c_s_achieved_weighted"] = achieved_c_s(xs, local_idx, weights, spectrum=spectrum)
        info["top_k"] = top_k
        info["c_s_achieved_top_k"] = achieved_c_s(xs, local_idx, rank=top_k, spectrum=spectrum)
        info["spectrum_coverage"] = spectrum_coverage(xs, local_idx, spectrum=spectrum)
    info["seconds"] = time.perf_counter() - t0
    result = SelectionResult(indices=idx, weights=weights, info=to_jsonable(info))
    logger.info("select: %s in %.2fs", result.summary(), info["seconds"])
    return result
