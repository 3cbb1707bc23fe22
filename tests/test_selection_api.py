"""select() contract: registry, SelectionResult I/O, determinism, torch == numpy, edge cases for every
selector, stratification, non-finite rows."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from hf_skmm.selection import SelectionResult, allocate_quotas, list_selectors, register_selector, select
from hf_skmm.selection import result as result_module

BUILTIN = (
    "adaptive",
    "entropy",
    "herding",
    "kcenter",
    "least_confidence",
    "leverage",
    "margin",
    "ridge_leverage",
    "skmm",
    "uniform",
)
UNCERTAINTY = ("entropy", "margin", "least_confidence")


def data(num=120, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(num, dim)) * np.linspace(2, 0.5, dim) + rng.normal(size=dim)).astype(np.float32)


def extra(method, num, seed=0):
    if method in UNCERTAINTY:
        return {"logits": np.random.default_rng(seed + 100).normal(size=(num, 3))}
    if method == "skmm":
        return {"max_iter": 40}
    return {}


def test_registry_lists_every_builtin_with_a_description():
    sel = list_selectors()
    assert set(BUILTIN) <= set(sel)
    assert all(isinstance(v, str) and v and "\n" not in v for v in sel.values())


def test_register_custom_selector_and_bad_output():
    def first_rows(sketches, n, seed):
        """Take the first n rows."""
        return np.arange(n)[::-1], None, {"note": "demo"}

    register_selector("test_first_rows", first_rows)
    res = select(data(), 7, method="test_first_rows")
    np.testing.assert_array_equal(res.indices, np.arange(7))
    np.testing.assert_allclose(res.weights, 1 / 7)
    assert res.info["note"] == "demo" and list_selectors()["test_first_rows"] == "Take the first n rows."
    with pytest.raises(ValueError, match="already registered"):
        register_selector("test_first_rows", lambda s, n, seed: (np.arange(n), None, {}))
    register_selector("test_broken", lambda s, n, seed: (np.zeros(n, dtype=int), None, {}))
    with pytest.raises(RuntimeError, match="unique row indices"):
        select(data(), 3, method="test_broken")
    with pytest.raises(ValueError, match="unknown selection method 'nope'"):
        select(data(), 3, method="nope")
    with pytest.raises(ValueError, match="lower-case"):
        register_selector("Bad Name", first_rows)


def test_save_load_roundtrip_atomic(tmp_path, monkeypatch):
    res = select(data(num=60, dim=8), 5, method="skmm", seed=3, max_iter=20)  # n < m: c_s_achieved = inf
    assert math.isinf(res.info["c_s_achieved"])
    out = res.save(tmp_path / "sel")
    loaded = SelectionResult.load(out)
    np.testing.assert_array_equal(loaded.indices, res.indices)
    np.testing.assert_array_equal(loaded.weights, res.weights)
    assert loaded.indices.dtype == np.int64 and loaded.weights.dtype == np.float64
    assert loaded.info == json.loads(json.dumps(res.info))
    # overwrite in place, nothing left behind
    select(data(), 4, method="uniform").save(out)
    assert len(SelectionResult.load(out)) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sel"]
    # a failure while writing leaves neither a half-written directory nor temp files
    monkeypatch.setattr(result_module.np, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        res.save(tmp_path / "other")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sel"]
    with pytest.raises(FileNotFoundError, match=r"selection\.json"):
        SelectionResult.load(tmp_path / "missing")


@pytest.mark.parametrize("method", BUILTIN)
def test_deterministic_and_torch_equals_numpy(method):
    x = data()
    kw = extra(method, len(x))
    a = select(x, 11, method=method, seed=5, **kw)
    b = select(x, 11, method=method, seed=5, **kw)
    t = select(torch.from_numpy(x), 11, method=method, seed=5, **kw)
    t64 = select(torch.from_numpy(x.astype(np.float64)), 11, method=method, seed=5, **kw)
    for other in (b, t):
        np.testing.assert_array_equal(other.indices, a.indices)
        np.testing.assert_array_equal(other.weights, a.weights)
    assert a.info["c_s_achieved"] == t.info["c_s_achieved"]
    np.testing.assert_array_equal(
        t64.indices, select(x.astype(np.float64), 11, method=method, seed=5, **kw).indices
    )
    assert a.indices.dtype == np.int64 and a.weights.dtype == np.float64
    assert np.all(np.diff(a.indices) > 0) and a.weights.sum() == pytest.approx(1.0)
    assert a.info["method"] == method and a.info["n"] == 11


@pytest.mark.parametrize("method", ["uniform", "kcenter", "adaptive", "leverage", "ridge_leverage", "skmm"])
def test_seed_changes_random_selectors(method):
    x = data(num=200)
    kw = extra(method, len(x))
    picks = {tuple(select(x, 10, method=method, seed=s, **kw).indices) for s in range(4)}
    assert len(picks) > 1


@pytest.mark.parametrize("method", BUILTIN)
def test_edge_cases_for_every_selector(method):
    x = data(num=30, dim=4)
    kw = extra(method, len(x))
    with pytest.raises(ValueError, match="exceeds the number of selectable rows N=30"):
        select(x, 31, method=method, **kw)
    for bad in (0, -3):
        with pytest.raises(ValueError, match="positive number"):
            select(x, bad, method=method, **kw)
    with pytest.raises(TypeError, match="integer"):
        select(x, 2.5, method=method, **kw)
    full = select(x, 30, method=method, **kw)  # n == N: every row, weights 1/N, c_S = 1
    np.testing.assert_array_equal(full.indices, np.arange(30))
    np.testing.assert_allclose(full.weights, 1 / 30)
    assert full.info["c_s_achieved"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"2-D array \[N, m\].*reshape\(-1, 1\)"):
        select(x[:, 0], 3, method=method, **kw)
    # m = 1 is a valid (if small) problem
    one = select(x[:, :1], 5, method=method, **kw)
    assert len(one) == 5 and np.isfinite(one.info["c_s_achieved"])
    # NaN / inf rows: a clear error by default, or excluded on request
    y = x.copy()
    y[[3, 17], 1] = [np.nan, np.inf]
    with pytest.raises(
        ValueError, match=r"2 row\(s\) with NaN or inf \(first: \[3, 17\]\).*nonfinite='exclude'"
    ):
        select(y, 5, method=method, **kw)
    res = select(y, 5, method=method, nonfinite="exclude", **kw)
    assert len(res) == 5 and not set(res.indices) & {3, 17}
    assert res.info["excluded_nonfinite"] == 2
    with pytest.raises(ValueError, match="exceeds the 28 rows"):
        select(y, 29, method=method, nonfinite="exclude", **kw)


def test_degenerate_inputs_skmm():
    # all-zero sketches: every coreset matches Σ̃ = 0 (c_S = 0 by the formula)
    res = select(np.zeros((20, 3)), 4, method="skmm")
    assert len(res) == 4 and res.info["c_s_achieved"] == 0.0
    # duplicate rows, zero rows and rank(G̃) < m
    rng = np.random.default_rng(0)
    low = rng.normal(size=(50, 2)) @ rng.normal(size=(2, 6))
    x = np.concatenate([low, low[:10], np.zeros((5, 6))])
    res = select(x, 8, method="skmm", seed=1)
    assert (
        res.info["rank"] == 2
        and np.isfinite(res.info["c_s_achieved"])
        and res.info["spectrum_coverage"] == pytest.approx(1)
    )
    # integer and float16 inputs are accepted
    assert len(select(np.arange(40).reshape(20, 2), 3, method="skmm")) == 3
    assert len(select(torch.randn(20, 3, dtype=torch.float16), 3, method="uniform")) == 3


def test_bad_arguments_name_themselves():
    x = data()
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        select(x, 3, seed=-1)
    with pytest.raises(ValueError, match="nonfinite must be one of"):
        select(x, 3, nonfinite="drop")
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        select("abc", 3)
    with pytest.raises(ValueError, match="c_S values must lie in"):
        select(x, 3, method="skmm", c_s=1.5)
    with pytest.raises(ValueError, match="draw must be one of"):
        select(x, 3, method="skmm", draw="best")
    with pytest.raises(ValueError, match="stratify must have one entry per row"):
        select(x, 3, stratify=np.zeros(5))
    for method in UNCERTAINTY:
        with pytest.raises(ValueError, match=f"method='{method}' needs the model's outputs"):
            select(x, 3, method=method)
        with pytest.raises(ValueError, match="probs must have one entry per row"):
            select(x, 3, method=method, probs=np.full((4, 2), 0.5))
        with pytest.raises(ValueError, match="rows summing to 1"):
            select(x, 3, method=method, probs=np.ones((len(x), 2)))


def test_allocate_quotas():
    np.testing.assert_array_equal(allocate_quotas(10, [50, 30, 20]), [5, 3, 2])
    np.testing.assert_array_equal(allocate_quotas(10, [97, 1, 1, 1]), [7, 1, 1, 1])  # >= 1 each when n allows
    q = allocate_quotas(2, [5, 1, 10])  # n < #classes: largest remainders win
    assert q.sum() == 2 and q[1] == 0
    np.testing.assert_array_equal(allocate_quotas(6, [2, 0, 100]), [1, 0, 5])
    np.testing.assert_array_equal(allocate_quotas(5, [1, 1, 3]), [1, 1, 3])  # capped at class size
    rng = np.random.default_rng(0)
    for _ in range(50):
        sizes = rng.integers(0, 20, size=rng.integers(1, 8))
        if sizes.sum() == 0:
            continue
        n = int(rng.integers(1, sizes.sum() + 1))
        q = allocate_quotas(n, sizes)
        assert q.sum() == n and np.all(q <= sizes) and np.all(q >= 0)
        if n >= np.count_nonzero(sizes):
            assert np.all(q[sizes > 0] >= 1)


@pytest.mark.parametrize("method", ["skmm", "uniform", "entropy"])
def test_stratified_selection(method):
    x = data(num=150)
    labels = np.repeat(np.array(["a", "b", "c"]), [100, 45, 5])
    kw = extra(method, len(x))
    res = select(x, 20, method=method, seed=2, stratify=labels, **kw)
    counts = {c: int(np.sum(labels[res.indices] == c)) for c in "abc"}
    assert counts == {"a": 13, "b": 6, "c": 1}
    assert res.weights.sum() == pytest.approx(1.0) and res.info["stratified"]
    assert [s["n"] for s in res.info["strata"]] == [13, 6, 1]
    again = select(
        torch.from_numpy(x),
        20,
        method=method,
        seed=2,
        stratify=torch.from_numpy(np.repeat([0, 1, 2], [100, 45, 5])),
        **kw,
    )
    np.testing.assert_array_equal(again.indices, res.indices)
    if method == "entropy":  # per-row kwargs are sliced per class: each class keeps its most uncertain rows
        z = kw["logits"]
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        ent = -(p * np.log(p)).sum(1)
        for c, k in counts.items():
            rows = np.flatnonzero(labels == c)
            np.testing.assert_array_equal(
                np.sort(rows[np.argsort(-ent[rows])[:k]]), res.indices[labels[res.indices] == c]
            )


def test_uncertainty_scores_match_definitions():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=50)
    x = np.zeros((50, 2))
    ent = -(p * np.log(p)).sum(1)
    srt = np.sort(p, axis=1)
    expect = {
        "entropy": np.argsort(-ent)[:7],
        "least_confidence": np.argsort(srt[:, -1])[:7],
        "margin": np.argsort(srt[:, -1] - srt[:, -2])[:7],
    }
    for method, idx in expect.items():
        np.testing.assert_array_equal(select(x, 7, method=method, probs=p).indices, np.sort(idx))
        np.testing.assert_array_equal(
            select(x, 7, method=method, logits=np.log(p) + 3.0).indices, np.sort(idx)
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (runs on GPU machines)")
def test_cuda_tensor_equals_numpy():
    x = data()
    for method in ("skmm", "uniform", "ridge_leverage"):
        a = select(x, 9, method=method, seed=3)
        b = select(torch.from_numpy(x).cuda(), 9, method=method, seed=3)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.weights, b.weights)
