"""Sketchy Moment Matching (SkMM), Algorithm 3.1 of Dong, Phan, Pan & Lei, NeurIPS 2024 (arXiv 2407.06120).

Given sketches G̃ ∈ R^{N×m}, Σ̃ = G̃ᵀG̃/N = VΛVᵀ and the moment features A = (G̃V)² (elementwise,
N×m), SkMM solves the quadratic relaxation of Σ̃ ⪯ c_S Σ̃_S restricted to V's eigenbasis:

    min_{s, γ} Σ_j ((Aᵀs)_j − γ_j λ_j)²   s.t.  0 ≤ s_i ≤ 1/n,  Σ_i s_i = 1,  γ_j ≥ 1/c_S,

where (Aᵀs)_j = v_jᵀ (Σ_i s_i g̃_i g̃_iᵀ) v_j is the s-weighted coreset moment along v_j.

Direction of the constraint. Σ̃ ⪯ c_S Σ̃_S ⟺ Σ̃_S ⪰ Σ̃/c_S; in V's basis (the commuting assumption of
the relaxation keeps only the diagonal) this reads (Aᵀs)_j ≥ λ_j/c_S for every j, i.e. γ_j :=
(Aᵀs)_j/λ_j ≥ 1/c_S. Since c_S ≤ 1, a feasible coreset carries *at least* 1/c_S times the full data's
moment in every eigen-direction (it over-represents high-energy rows; the variance bound scales with c_S).
For fixed s the optimal γ_j = max(1/c_S, (Aᵀs)_j/λ_j), which eliminates γ in closed form:

    F(s) = Σ_j max(0, λ_j/c_S − (Aᵀs)_j)²,      ∇F(s) = −2 A h(s),  h(s) = max(0, λ/c_S − Aᵀs),

a convex squared hinge whose gradient is L-Lipschitz on the simplex, L = 2‖A − 1μᵀ‖₂² (μ: column means
of A; see :func:`lipschitz_constant`). F(s) = 0 iff every diagonal constraint
holds. Directions with λ_j ≤ rtol·λ_1 have target 0 and can never be violated, so they are dropped.

Solver: FISTA (accelerated projected gradient) with gradient-based adaptive restart (O'Donoghue &
Candès 2015), step 1/L, and the *exact* Euclidean projection onto the capped simplex
(:mod:`hf_skmm.selection.projection`). Every iterate is feasible. Cost O(N·k) per iteration
(two matrix–vector products with A, k = rank Σ̃ ≤ m) plus O(N) projection steps.

This deliberately follows the paper and not the authors' public scripts, which weight the moment by s²
instead of s, drop the s ≤ 1/n cap, add a 1/‖s‖ sparsity term, use Adam with a clamp-then-renormalise
step (not a projection) and redraw the Gaussian sketch per batch.

c_S: a number, or ``"auto"``: the authors' schedule (0.999, 0.99, 0.9, 0.8, 0.7, 0.6), each solve warm
started from the previous one, keeping the smallest c_S whose solve reaches (near-)zero F. "Feasible" is
judged per direction: max_j h_j(s)/(λ_j/c_S) ≤ ``feasibility_tol`` (every diagonal constraint met to
within 1%), because Σ̃ ⪯ c_S Σ̃_S is scale-free per direction while F is not: an aggregate test such as
‖h‖/‖λ/c_S‖ ≤ tol lets a low-energy direction (e.g. a small, low-norm cluster) go almost unmatched, and the
draw then misses that cluster. If even the first value is infeasible, its least infeasible solution (lowest
F) is kept and ``info["feasible"]`` is False.

Draw: ``systematic`` (default) samples n distinct rows with inclusion probabilities exactly n·s_i
(see :mod:`hf_skmm.selection.sampling`); ``successive`` uses ``numpy.random.Generator.choice(replace=False,
p=s)``; ``topk`` keeps the n largest s_i. Weights are s on the coreset, renormalised to sum 1.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hf_skmm.selection._inputs import row_blocks
from hf_skmm.selection.diagnostics import DEFAULT_RTOL, Spectrum, compute_spectrum
from hf_skmm.selection.projection import project_capped_simplex_tau
from hf_skmm.selection.registry import register_selector
from hf_skmm.selection.sampling import DRAWS, draw_rows

logger = logging.getLogger(__name__)

C_S_SCHEDULE: tuple[float, ...] = (0.999, 0.99, 0.9, 0.8, 0.7, 0.6)
_FLOAT64_MAX_ELEMENTS = 1 << 22  # A = (G̃V)² kept in float64 up to 4M entries (32 MiB), float32 above

Callback = Callable[[int, np.ndarray, float], Any]


# --------------------------------------------------------------------------------------------------------
# objective


def moment_features(x: np.ndarray, vectors: np.ndarray, dtype: Any = np.float64) -> np.ndarray:
    """A = (G̃ V)² elementwise, [N, k], computed per row block and stored as ``dtype``.

    With a float32 A and float32 sketches the product runs in float32 (no float64 copy of a block; A is
    float32 anyway); otherwise in float64.
    """
    out = np.empty((len(x), vectors.shape[1]), dtype=dtype)
    single = np.dtype(dtype) == np.float32 and x.dtype == np.float32
    vec = vectors.astype(np.float32) if single else vectors
    for blk in row_blocks(len(x)):
        proj = x[blk] @ vec if single else x[blk].astype(np.float64, copy=False) @ vec
        np.multiply(proj, proj, out=proj)
        out[blk] = proj
    return out


def _at_s(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Aᵀs as float64 (computed in A's dtype so a float32 A is never upcast: no N×k float64 copy).

    Iterates on the capped simplex are sparse (support ≈ a few n), so only the support's rows are read.
    """
    support = np.flatnonzero(s)
    if support.size < 0.3 * s.size:
        return (a[support].T @ s[support].astype(a.dtype)).astype(np.float64)
    return (a.T @ s.astype(a.dtype, copy=False)).astype(np.float64)


def skmm_objective(s: np.ndarray, a: np.ndarray, eigenvalues: np.ndarray, c_s: float) -> float:
    """F(s) = Σ_j max(0, λ_j/c_S − (Aᵀs)_j)² (γ eliminated in closed form, see the module docstring)."""
    h = np.maximum(eigenvalues / c_s - _at_s(a, s), 0.0)
    return float(h @ h)


def skmm_gradient(s: np.ndarray, a: np.ndarray, eigenvalues: np.ndarray, c_s: float) -> np.ndarray:
    """∇F(s) = −2 A max(0, λ/c_S − Aᵀs)."""
    h = np.maximum(eigenvalues / c_s - _at_s(a, s), 0.0)
    return -2.0 * (a @ h.astype(a.dtype)).astype(np.float64)


def lipschitz_constant(a: np.ndarray) -> float:
    """L = 2‖A_c‖₂², A_c = A − 1μᵀ (μ = column means of A): the Lipschitz constant of ∇F *on the simplex*.

    Every difference of two feasible points δ has Σδ = 0, so Aᵀδ = A_cᵀδ and ‖∇F(s) − ∇F(t)‖ ≤ 2‖A_c‖²‖s − t‖
    along the iterates (FISTA's extrapolated points also sum to 1). A ≥ 0 elementwise, so its top
    singular direction is close to the all-ones vector that the constraint Σs = 1 removes: ‖A_c‖ is often
    far below ‖A‖ and the step 1/L correspondingly larger. A_cᵀA_c = AᵀA − N μμᵀ, accumulated in float64.
    """
    num, k = a.shape
    gram = np.zeros((k, k))
    col = np.zeros(k)
    for blk in row_blocks(num):
        b = a[blk]
        gram += (b.T @ b).astype(np.float64)
        col += b.sum(axis=0, dtype=np.float64)
    mu = col / num
    centred = gram - num * np.outer(mu, mu)
    return 2.0 * float(np.linalg.eigvalsh((centred + centred.T) / 2)[-1]) * (1.0 + 1e-6) + 1e-300


# --------------------------------------------------------------------------------------------------------
# solver


def solve_moment_matching(
    a: np.ndarray,
    eigenvalues: np.ndarray,
    n: int,
    c_s: float,
    s0: np.ndarray,
    *,
    lipschitz: float | None = None,
    max_iter: int = 500,
    feasibility_tol: float = 1e-2,
    stall_window: int = 20,
    stall_tol: float = 1e-2,
    callback: Callback | None = None,
) -> dict[str, Any]:
    """Minimise F over the capped simplex with FISTA + adaptive restart, starting from ``s0``.

    Stops when every constraint is met to within a relative ``feasibility_tol`` (max_j h_j/(λ_j/c_S)), when
    the best F improved by less than
    a relative ``stall_tol`` over the last ``stall_window`` iterations, or after ``max_iter`` iterations.
    ``callback(iteration, s, F(s))`` is called after every step with the (feasible) iterate.

    Returns:
        dict with ``s`` (best iterate), ``objective`` F(s), ``history`` (F per iteration, starting
        with F(s0)), ``n_iter``, ``feasible``, ``relative_residual``, ``stop`` (reason).
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    target = lam / c_s
    target_norm = float(np.linalg.norm(target))
    positive = target > 0
    step = 1.0 / (lipschitz if lipschitz is not None else lipschitz_constant(a))
    upper = 1.0 / n

    def violation(h: np.ndarray) -> float:
        """Largest relative shortfall max_j h_j / (λ_j/c_S): feasibility is judged per direction."""
        return float(np.max(h[positive] / target[positive])) if positive.any() else 0.0

    def residual(moments: np.ndarray) -> np.ndarray:
        return np.maximum(target - moments, 0.0)

    x = np.asarray(s0, dtype=np.float64)
    ax = _at_s(a, x)
    hx = residual(ax)
    fx = float(hx @ hx)
    history = [fx]
    best_x, best_f, best_v = x, fx, violation(hx)
    y, ay, t, tau = x, ax, 1.0, None
    stop, it = "max_iter", 0
    if best_v <= feasibility_tol:
        stop = "feasible"
    else:
        for it in range(1, max_iter + 1):
            grad = -2.0 * (a @ residual(ay).astype(a.dtype)).astype(np.float64)
            x_new, tau = project_capped_simplex_tau(y - step * grad, upper, tau0=tau)
            ax_new = _at_s(a, x_new)
            h_new = residual(ax_new)
            f_new = float(h_new @ h_new)
            v_new = violation(h_new)
            history.append(f_new)
            if callback is not None:
                callback(it, x_new, f_new)
            if f_new < best_f:
                best_x, best_f, best_v = x_new, f_new, v_new
            if v_new <= feasibility_tol:
                best_x, best_f, best_v = x_new, f_new, v_new
                stop = "feasible"
                break
            # restart momentum when it points against the projected-gradient step (O'Donoghue-Candès)
            if float((y - x_new) @ (x_new - x)) > 0:
                t, y, ay = 1.0, x_new, ax_new
            else:
                t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
                beta = (t - 1.0) / t_next
                y = x_new + beta * (x_new - x)
                ay = ax_new + beta * (ax_new - ax)
                t = t_next
            x, ax = x_new, ax_new
            if it >= stall_window:
                past_best = min(history[: it - stall_window + 1])
                if past_best - best_f <= stall_tol * past_best:
                    stop = "stalled"
                    break
    rel = math.sqrt(best_f) / target_norm if target_norm > 0 else 0.0
    return {
        "s": best_x,
        "objective": best_f,
        "history": history,
        "n_iter": it,
        "feasible": bool(best_v <= feasibility_tol),
        "relative_residual": rel,
        "max_violation": best_v,
        "stop": stop,
    }


def _necessarily_infeasible(a: np.ndarray, target: np.ndarray, n: int) -> bool:
    """Cheap certificate: max over Δ_n of Σ_j (Aᵀs)_j is the mean of the n largest row sums of A."""
    row_sums = np.zeros(len(a))
    for blk in row_blocks(len(a)):
        row_sums[blk] = a[blk].sum(axis=1, dtype=np.float64)
    best = float(np.partition(row_sums, len(a) - n)[len(a) - n :].sum()) / n
    return best < float(target.sum()) * (1 - 1e-9)


# --------------------------------------------------------------------------------------------------------
# selector


def select_skmm(
    sketches: np.ndarray,
    n: int,
    seed: int,
    *,
    c_s: float | str = "auto",
    schedule: Sequence[float] = C_S_SCHEDULE,
    max_iter: int = 500,
    feasibility_tol: float = 1e-2,
    stall_window: int = 20,
    stall_tol: float = 1e-2,
    draw: str = "systematic",
    weighting: str = "s",
    scaling: str = "none",
    rtol: float = DEFAULT_RTOL,
    precision: str = "auto",
    callback: Callback | None = None,
    spectrum: Spectrum | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Sketchy moment matching: FISTA on the capped simplex, then draw n rows according to s.

    Args:
        sketches: validated ``[N, m]`` float array G̃.
        n: coreset size, ``1 <= n < N``.
        seed: seeds the initial support (n uniform rows at 1/n) and the draw.
        c_s: target c_S ∈ (0, 1] (the paper's variance factor), or ``"auto"`` for the schedule.
        schedule: c_S values tried in order by ``"auto"`` (default: the authors' 0.999 … 0.6).
        max_iter: FISTA iterations per c_S value. Each costs two passes over A (N×k): measured ≈ 0.14 s at
            N = 1e5 and ≈ 1 s at N = 1e6 (k = 256, float32, on a loaded 2-core machine; see
            ``scripts/results/benchmark_selection.md``); ``max_iter=100`` keeps N = 1e6 near two minutes.
        feasibility_tol: largest relative shortfall max_j (λ_j/c_S − (Aᵀs)_j)/(λ_j/c_S) counted as feasible.
        stall_window, stall_tol: a c_S value is abandoned as "stalled" when the best F improved by less
            than a relative ``stall_tol`` over the last ``stall_window`` iterations (the authors lower
            c_S "until the optimisation fails or stalls"; near the feasibility boundary FISTA crawls).
        draw: ``"systematic"`` (π_i = n s_i exactly), ``"successive"`` or ``"topk"``.
        weighting: coreset weights: ``"s"`` (s on the coreset, renormalised; the contract's default) or
            ``"uniform"`` (1/n, which is the unbiased Horvitz–Thompson weight s_i/π_i under the
            systematic draw; ``info["c_s_achieved"]`` always reports the uniform-weight value).
        scaling: ``"none"`` (the paper's objective, absolute moments: directions with small λ_j weigh
            little) or ``"relative"`` (each direction's residual divided by λ_j, i.e.
            Σ_j max(0, 1/c_S − γ_j)²: the same feasible set, every direction weighted equally).
        rtol: eigenvalues ≤ rtol·λ_1 are treated as zero (their directions dropped).
        precision: dtype of A: ``"float64"``, ``"float32"`` or ``"auto"`` (float64 up to 2^22 entries;
            float32 above halves the memory traffic of the O(N k) products, which dominate the run time).
        callback: ``callback(iteration, s, F)`` after each FISTA step (not saved in info).
        spectrum: precomputed eigendecomposition of Σ̃ (passed by :func:`select`).
    """
    if draw not in DRAWS:
        raise ValueError(f"draw must be one of {DRAWS}; got {draw!r}.")
    if weighting not in ("s", "uniform"):
        raise ValueError(f"weighting must be 's' or 'uniform'; got {weighting!r}.")
    if scaling not in ("none", "relative"):
        raise ValueError(f"scaling must be 'none' (the paper's objective) or 'relative'; got {scaling!r}.")
    if precision not in ("auto", "float32", "float64"):
        raise ValueError(f"precision must be 'auto', 'float32' or 'float64'; got {precision!r}.")
    if isinstance(c_s, str):
        if c_s != "auto":
            raise ValueError(f"c_s must be a number in (0, 1] or 'auto'; got {c_s!r}.")
        values = [float(c) for c in schedule]
        if not values:
            raise ValueError("schedule must contain at least one c_S value.")
    else:
        values = [float(c_s)]
    for c in values:
        if not 0.0 < c <= 1.0:
            raise ValueError(
                f"c_S values must lie in (0, 1]; got {c!r} (c_s={c_s!r}, schedule={schedule!r})."
            )
    if not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"max_iter must be a non-negative integer; got {max_iter!r}.")

    t0 = time.perf_counter()
    num, m = sketches.shape
    rng = np.random.default_rng(seed)
    spec = spectrum if spectrum is not None else compute_spectrum(sketches)
    k = spec.rank(rtol)
    s0 = np.zeros(num)
    s0[rng.choice(num, size=n, replace=False)] = 1.0 / n
    info: dict[str, Any] = {"m": m, "rank": k, "c_s_schedule": values}
    if k == 0:  # Σ̃ = 0: every coreset matches it; keep the uniform initial support
        logger.warning("skmm: all sketches are zero; returning the uniform initial support.")
        s, attempts, chosen = s0, [], None
        info.update(c_s_target=None, feasible=True, objective=0.0, history=[0.0], n_iter=0)
    else:
        lam = spec.eigenvalues[:k]
        if precision == "auto":
            dtype = np.float64 if num * k <= _FLOAT64_MAX_ELEMENTS else np.float32
        else:
            dtype = np.dtype(precision).type
        a = moment_features(sketches, spec.eigenvectors[:, :k], dtype)
        if scaling == "relative":  # column j divided by λ_j: residuals measured in units of γ_j
            a /= lam.astype(a.dtype)
            lam = np.ones(k)
        lipschitz = lipschitz_constant(a)
        info["precision"] = np.dtype(dtype).name
        info["setup_seconds"] = time.perf_counter() - t0
        s, attempts, chosen = s0, [], None
        for c in values:
            if chosen is not None and _necessarily_infeasible(a, lam / c, n):
                attempts.append({"c_s": c, "feasible": False, "n_iter": 0, "stop": "certificate"})
                break
            out = solve_moment_matching(
                a,
                lam,
                n,
                c,
                s,
                lipschitz=lipschitz,
                max_iter=max_iter,
                feasibility_tol=feasibility_tol,
                stall_window=stall_window,
                stall_tol=stall_tol,
                callback=callback,
            )
            attempts.append(
                {
                    k_: out[k_]
                    for k_ in (
                        "feasible",
                        "n_iter",
                        "stop",
                        "objective",
                        "relative_residual",
                        "max_violation",
                    )
                }
                | {"c_s": c, "history": out["history"]}
            )
            if out["feasible"] or chosen is None:
                s, chosen = out["s"], out | {"c_s": c}
            if not out["feasible"]:
                break
        assert chosen is not None
        if not chosen["feasible"]:
            logger.warning(
                "skmm: c_S=%s not reached (largest relative shortfall %.3g); keeping the least infeasible s.",
                chosen["c_s"],
                chosen["max_violation"],
            )
        info.update(
            c_s_target=chosen["c_s"],
            feasible=chosen["feasible"],
            objective=chosen["objective"],
            relative_residual=chosen["relative_residual"],
            max_violation=chosen["max_violation"],
            history=chosen["history"],
            n_iter=sum(att["n_iter"] for att in attempts),
        )
        del a
    info["attempts"] = [{k_: v for k_, v in att.items() if k_ != "history"} for att in attempts]
    idx = draw_rows(s, n, rng, draw)
    weights = s[idx] if weighting == "s" else np.full(n, 1.0 / n)
    if weights.sum() <= 0:  # possible only for rows drawn with s_i = 0 (degenerate input)
        weights = np.full(n, 1.0 / n)
    info["s_support"] = int(np.count_nonzero(s > 1e-12 / n))
    info["s_mass_on_coreset"] = float(s[idx].sum())
    info["solve_seconds"] = time.perf_counter() - t0
    return idx, weights, info


register_selector(
    "skmm",
    select_skmm,
    description="Sketchy Moment Matching (Dong et al. 2024): FISTA on the capped simplex matching Σ̃ ⪯ c_S Σ̃_S.",
)
