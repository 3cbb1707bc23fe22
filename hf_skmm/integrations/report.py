"""The human report written after a selection: numbers in text, the spectrum in a PNG.

With Σ̃ = G̃ᵀG̃ / N = V Λ Vᵀ (sketched gradients G̃ ∈ R^{N×m}) and the coreset's weighted second
moment Σ̃_S = G̃_Sᵀ diag(w̄) G̃_S (w̄ = weights normalised to sum 1; uniform 1/n by default, the moment
an unweighted finetuning run on the coreset sees), the coreset's moment along
each eigen-direction is μ_j = v_jᵀ Σ̃_S v_j = Σ_{i∈S} w̄_i (G̃V)_{ij}². SkMM (Dong et al. 2024,
Algorithm 3.1) matches μ_j ≥ λ_j / c_S, so c_j = λ_j / μ_j is "c_S per direction"; the achieved
c_S is λ_max(Σ̃^{1/2} Σ̃_S^+ Σ̃^{1/2}) ≥ max_j c_j.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def spectrum_profile(sketches: np.ndarray, indices: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """Eigen-spectrum of Σ̃ and the coreset's moments along its eigenvectors.

    Returns:
        dict with ``eigenvalues`` λ (descending), ``coreset_moments`` μ, ``c_per_direction`` λ/μ
        (``inf`` where the coreset has no mass, ``nan`` where λ_j = 0) and ``coverage``, the share of
        tr(Σ̃) inside the span of the coreset's rows
        (:func:`hf_skmm.selection.diagnostics.spectrum_coverage`).
    """
    from hf_skmm.selection.diagnostics import DEFAULT_RTOL, compute_spectrum, spectrum_coverage

    g = np.asarray(sketches)
    idx = np.asarray(indices, dtype=np.int64)
    w = (
        np.full(len(idx), 1.0 / max(len(idx), 1))
        if weights is None
        else np.asarray(weights, dtype=np.float64)
    )
    w = w / w.sum() if w.sum() > 0 else np.full(len(idx), 1.0 / max(len(idx), 1))
    spec = compute_spectrum(g)
    lam, vecs = spec.eigenvalues, spec.eigenvectors
    mu = w @ (g[idx].astype(np.float64) @ vecs) ** 2
    significant = lam > DEFAULT_RTOL * (lam[0] if lam.size and lam[0] > 0 else 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(significant, lam / mu, np.nan)
    ratio = np.where(significant & ~np.isfinite(ratio), np.inf, ratio)
    coverage = spectrum_coverage(g, idx, spectrum=spec)
    return {"eigenvalues": lam, "coreset_moments": mu, "c_per_direction": ratio, "coverage": coverage}


def _fmt(value: Any, spec: str = ".4g") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else format(value, spec)
    return str(value)


def format_report(result: Any, profile: Mapping[str, Any], seconds: float | None = None) -> str:
    """A short markdown report: N, n, method, c_S target and achieved, spectrum coverage, time."""
    info = dict(result.info)
    n, num_rows = len(result.indices), info.get("source_num_rows")
    lam, ratio = profile["eigenvalues"], profile["c_per_direction"]
    finite = ratio[np.isfinite(ratio)]
    seconds = seconds if seconds is not None else info.get("seconds")
    lines = [
        "# hf-skmm selection report",
        "",
        "| | |",
        "|---|---|",
        f"| N (source rows) | {_fmt(num_rows)} |",
        f"| n (coreset) | {n}" + (f" ({n / num_rows:.2%})" if num_rows else "") + " |",
        f"| method | {info.get('method')} |",
        f"| seed | {_fmt(info.get('seed'))} |",
        f"| sketch dim m | {lam.shape[0]} |",
        f"| c_S target | {_fmt(info.get('c_s_target'))} |",
        f"| c_S achieved | {_fmt(info.get('c_s_achieved'))} |",
        f"| c_S achieved on the top-{_fmt(info.get('top_k'))} directions | {_fmt(info.get('c_s_achieved_top_k'))} |",
        f"| spectrum coverage | {profile['coverage']:.1%} of tr(Σ̃) in the span of the coreset |",
        f"| c_S per direction (median / max) | {_fmt(float(np.median(finite)) if finite.size else None)}"
        f" / {_fmt(float(np.nanmax(ratio)) if ratio.size and not np.all(np.isnan(ratio)) else None)} |",
        f"| selection time | {_fmt(seconds, '.3f')} s |",
        "",
        "c_S achieved = λ_max(Σ̃^{1/2} Σ̃_S^+ Σ̃^{1/2}) on the sketched gradients; lower is a closer",
        "moment match. See spectrum.png for λ_j (full data) vs μ_j (coreset) per eigen-direction.",
    ]
    return "\n".join(lines) + "\n"


def plot_spectrum(
    profile: Mapping[str, Any], path: str | Path, info: Mapping[str, Any] | None = None
) -> Path:
    """Save a PNG: left, λ_j of Σ̃ and μ_j of the coreset; right, c_S per direction λ_j / μ_j."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    info = dict(info or {})
    lam, mu, ratio = profile["eigenvalues"], profile["coreset_moments"], profile["c_per_direction"]
    j = np.arange(1, lam.shape[0] + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.semilogy(j, np.where(lam > 0, lam, np.nan), "o-", ms=3, label="full data λ_j")
    left.semilogy(j, np.where(mu > 0, mu, np.nan), "s-", ms=3, label="coreset μ_j")
    left.set_xlabel("eigen-direction j of Σ̃")
    left.set_ylabel("second moment")
    left.set_title("Eigen-spectrum: full data vs coreset")
    left.legend()
    shown = np.where(np.isfinite(ratio), ratio, np.nan)
    right.semilogy(j, shown, "o", ms=3, label="λ_j / μ_j")
    for key, style in (("c_s_target", "--"), ("c_s_achieved", ":")):
        value = info.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
            right.axhline(value, ls=style, color="k", lw=1, label=f"{key} = {value:.3g}")
    right.set_xlabel("eigen-direction j of Σ̃")
    right.set_ylabel("c_S per direction")
    right.set_title(f"{info.get('method', '')} n={info.get('n', '')}".strip())
    right.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
