"""The selection report: spectrum profile vs dense formulas, report text, PNG plot."""

from __future__ import annotations

import numpy as np
import pytest

from hf_skmm.integrations.report import format_report, plot_spectrum, spectrum_profile
from hf_skmm.selection import SelectionResult, achieved_c_s


@pytest.fixture(scope="module")
def sketches() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.normal(size=(60, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1])).astype(np.float32)


def test_profile_matches_dense_formulas(sketches):
    idx = np.array([1, 4, 9, 16, 25, 36, 49])
    w = np.arange(1.0, 8.0)
    prof = spectrum_profile(sketches, idx, w)
    g = sketches.astype(np.float64)
    sigma = g.T @ g / len(g)
    lam, vec = np.linalg.eigh(sigma)
    lam, vec = lam[::-1], vec[:, ::-1]
    np.testing.assert_allclose(prof["eigenvalues"], lam, rtol=1e-10)
    sigma_s = (g[idx] * (w / w.sum())[:, None]).T @ g[idx]  # Σ̃_S = Σ w̄_i g̃_i g̃_iᵀ
    mu = np.einsum("ij,ik,kj->j", vec, sigma_s, vec)  # v_jᵀ Σ̃_S v_j
    np.testing.assert_allclose(prof["coreset_moments"], mu, rtol=1e-8)
    np.testing.assert_allclose(prof["c_per_direction"], lam / mu, rtol=1e-8)
    # the achieved c_S bounds every per-direction ratio (the diagonal of a PSD pencil)
    c_hat = achieved_c_s(sketches, idx, w)
    assert c_hat >= prof["c_per_direction"].max() * (1 - 1e-9)


def test_profile_of_the_full_set_and_of_a_missing_direction(sketches):
    full = spectrum_profile(sketches, np.arange(len(sketches)))
    np.testing.assert_allclose(full["coreset_moments"], full["eigenvalues"], rtol=1e-8)
    np.testing.assert_allclose(full["c_per_direction"], 1.0, rtol=1e-8)
    assert full["coverage"] == pytest.approx(1.0)
    # block structure: rows 0..9 live in coordinates 0-3, the others only in coordinate 4, so e_4 is an
    # exact eigenvector of Σ̃ (the top one) that a coreset of rows 0..9 does not see at all
    x = sketches.astype(np.float64).copy()
    x[:10, 4] = 0.0
    x[10:, :4] = 0.0
    x[10:, 4] *= 500
    part = spectrum_profile(x, np.arange(10))
    assert np.isinf(part["c_per_direction"][0]) and np.isfinite(part["c_per_direction"][1:]).all()
    lam = part["eigenvalues"]
    assert part["coverage"] == pytest.approx(lam[1:].sum() / lam.sum())


def test_report_and_plot(tmp_path, sketches):
    idx = np.array([0, 5, 10, 20, 30, 40])
    result = SelectionResult(
        idx,
        np.full(6, 1 / 6),
        {
            "method": "skmm",
            "seed": 3,
            "source_num_rows": 60,
            "c_s_target": 0.9,
            "c_s_achieved": 2.5,
            "top_k": 5,
        },
    )
    prof = spectrum_profile(sketches, idx)
    text = format_report(result, prof, seconds=0.25)
    for fragment in (
        "| N (source rows) | 60 |",
        "| n (coreset) | 6 (10.00%) |",
        "| method | skmm |",
        "| seed | 3 |",
        "| sketch dim m | 5 |",
        "| c_S target | 0.9 |",
        "| c_S achieved | 2.5 |",
        f"| spectrum coverage | {prof['coverage']:.1%}",
        "| selection time | 0.250 s |",
    ):
        assert fragment in text, fragment
    png = plot_spectrum(prof, tmp_path / "spectrum.png", info=result.info)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
