"""Sketch layer: exactness against dense references, invariances, seeding, configs and bad input.

The statistical (JL) properties are in ``test_sketch_jl.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from hf_skmm.sketch import (
    GEN_CHUNK_ROWS,
    GaussianSketch,
    KroneckerSketch,
    LayerwiseSketch,
    Sketch,
    SketchConfig,
    SparseSignSketch,
    derive_seed,
    kronecker_factors,
    list_sketches,
    make_sketch,
    sketch_from_config,
)


def _all_kinds(seed: int = 0) -> list[Sketch]:
    """One small sketch of every kind, with in_dim = 6 * 35 = 210 and out_dim = 24."""
    return [
        GaussianSketch(210, 24, seed=seed),
        GaussianSketch(210, 24, seed=seed, cache_max_bytes=0),  # regenerating path
        SparseSignSketch(210, 24, seed=seed, nnz=3),
        KroneckerSketch(6, 35, 4, 6, seed=seed),
        LayerwiseSketch(
            {"a": GaussianSketch(100, 24, seed=seed), "b": SparseSignSketch(110, 24, seed=seed + 1, nnz=2)},
            seed=seed,
        ),
    ]


def _ids(sketches):
    return [f"{s.kind}-{i}" for i, s in enumerate(sketches)]


SKETCHES = _all_kinds()


# tiny ops on a shared 2-core machine: one intra-op thread (fixture in conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------------ seeding
def test_derive_seed_is_the_documented_blake2b_rule_and_typed():
    expected = (
        int.from_bytes(hashlib.blake2b(b"int:7|str:layer.0|int:3", digest_size=8).digest(), "little") >> 1
    )
    assert derive_seed(7, "layer.0", 3) == expected
    assert 0 <= derive_seed(-5) < 2**63
    assert derive_seed(7, "layer.0", 3) != derive_seed(7, "layer.0", "3")
    assert derive_seed(7, "a") != derive_seed(8, "a") != derive_seed(7, "b")
    with pytest.raises(TypeError, match="seed must be an int"):
        derive_seed("7")
    with pytest.raises(TypeError, match="keys must be str or int"):
        derive_seed(7, 1.5)


def test_same_gamma_in_a_fresh_process_with_other_hash_seed_and_threads():
    code = (
        "import torch, hashlib; torch.set_num_threads(1)\n"
        "from hf_skmm.sketch import GaussianSketch, SparseSignSketch, derive_seed\n"
        "g = GaussianSketch(5000, 16, seed=3).dense().numpy().tobytes()\n"
        "s = SparseSignSketch(5000, 16, seed=3).dense().numpy().tobytes()\n"
        "print(hashlib.sha256(g + s).hexdigest(), derive_seed(3, 'x'))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    here = (
        GaussianSketch(5000, 16, seed=3).dense().numpy().tobytes()
        + SparseSignSketch(5000, 16, seed=3).dense().numpy().tobytes()
    )
    assert out.stdout.split() == [hashlib.sha256(here).hexdigest(), str(derive_seed(3, "x"))]


@pytest.mark.parametrize("make", [lambda s: s, lambda s: s + 1], ids=["same", "other"])
def test_seed_determinism_and_difference(make):
    x = torch.randn(5, 210, generator=torch.Generator().manual_seed(0))
    for a, b in zip(_all_kinds(seed=11), _all_kinds(seed=make(11))):
        ya, yb = a.apply(x), b.apply(x)
        if make(11) == 11:
            assert torch.equal(ya, yb), a
            assert torch.equal(a.dense(), b.dense())
        else:
            assert not torch.allclose(ya, yb), a


# ---------------------------------------------------------------------------- exactness vs dense Γ
@pytest.mark.parametrize("sketch", SKETCHES, ids=_ids(SKETCHES))
def test_apply_equals_dense_matrix(sketch):
    x = torch.randn(7, sketch.in_dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    gamma = sketch.dense()
    assert gamma.shape == (sketch.in_dim, sketch.out_dim) and gamma.dtype == torch.float32
    y = sketch.apply(x.float())
    assert y.shape == (7, sketch.out_dim) and y.dtype == torch.float32
    ref = x @ gamma.double()
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
    # a 1-D input is one row
    torch.testing.assert_close(sketch.apply(x[0].float()), y[0])
    # __call__ is apply; prepare() only builds caches
    torch.testing.assert_close(sketch(x.float()), y)
    assert sketch.prepare("cpu") is sketch
    torch.testing.assert_close(sketch.apply(x.float()), y)


@pytest.mark.parametrize("sketch", SKETCHES, ids=_ids(SKETCHES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_accumulates_in_float32(sketch, dtype):
    x = torch.randn(4, sketch.in_dim, generator=torch.Generator().manual_seed(2)).to(dtype)
    y = sketch.apply(x)
    assert y.dtype == torch.float32
    # exactly the float32 sketch of the (exactly representable) half-precision values
    torch.testing.assert_close(y, sketch.apply(x.float()), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sketch", SKETCHES, ids=_ids(SKETCHES))
def test_numpy_input(sketch):
    x = np.random.default_rng(3).standard_normal((3, sketch.in_dim))
    y64 = sketch.apply(x)  # float64 numpy accepted
    y32 = sketch.apply(x.astype(np.float32))
    assert isinstance(y32, torch.Tensor) and y32.dtype == torch.float32 and y32.shape == (3, sketch.out_dim)
    torch.testing.assert_close(y32, sketch.apply(torch.from_numpy(x.astype(np.float32))))
    torch.testing.assert_close(
        y64.double(), torch.from_numpy(x) @ sketch.dense().double(), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("sketch", SKETCHES, ids=_ids(SKETCHES))
def test_batch_size_invariance(sketch):
    x = torch.randn(9, sketch.in_dim, generator=torch.Generator().manual_seed(4))
    whole = sketch.apply(x)
    parts = torch.cat([sketch.apply(x[i : i + 2]) for i in range(0, 9, 2)])
    # same Γ; only the float32 summation order of the matmul kernel may change with the batch size
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------- Gaussian
def test_gaussian_is_independent_of_block_rows_and_cache():
    r = 3 * GEN_CHUNK_ROWS + 123  # not a multiple of the generation chunk
    x = torch.randn(3, r, generator=torch.Generator().manual_seed(5))
    ref = GaussianSketch(r, 16, seed=9).dense()
    for block_rows in (1, GEN_CHUNK_ROWS, 2 * GEN_CHUNK_ROWS + 1, 10**6):
        for cache in (0, 2**30):
            sk = GaussianSketch(r, 16, seed=9, block_rows=block_rows, cache_max_bytes=cache)
            assert torch.equal(sk.dense(), ref)
            torch.testing.assert_close(sk.apply(x), x @ ref, rtol=1e-5, atol=1e-5)
    assert GaussianSketch(r, 16, seed=9, block_rows=5000).block_rows == 3 * GEN_CHUNK_ROWS


def test_gaussian_rows_match_documented_generation_rule():
    sk = GaussianSketch(GEN_CHUNK_ROWS + 10, 8, seed=4)
    gen = torch.Generator().manual_seed(derive_seed(4, "gaussian", 1))
    chunk1 = torch.randn(10, 8, generator=gen) * (1.0 / np.sqrt(8))  # the documented scale
    torch.testing.assert_close(sk.dense()[GEN_CHUNK_ROWS:], chunk1, rtol=0, atol=0)


def test_gaussian_large_r_streams_blocks_without_dense_gamma(monkeypatch):
    """Big r: Γ is regenerated in blocks of block_rows rows, never materialised or cached."""
    sk = GaussianSketch(80 * GEN_CHUNK_ROWS, 512, seed=0, block_rows=4 * GEN_CHUNK_ROWS)
    assert sk.in_dim * sk.out_dim * 4 > sk.cache_max_bytes  # 320 MiB > the default 256 MiB cache limit
    sizes = []
    real = GaussianSketch.unscaled_rows

    def spy(self, start, stop, out=None):
        sizes.append(stop - start)
        return real(self, start, stop, out=out)

    monkeypatch.setattr(GaussianSketch, "unscaled_rows", spy)
    x = torch.zeros(2, sk.in_dim)
    x[:, : 6 * GEN_CHUNK_ROWS] = 1.0  # the remaining blocks are all zero and skipped
    y = sk.apply(x)
    assert max(sizes) == 4 * GEN_CHUNK_ROWS and sum(sizes) == 8 * GEN_CHUNK_ROWS
    assert not sk._cache
    torch.testing.assert_close(y[0], y[1])


_PEAK_CODE = """
import json, sys, pathlib, torch
from hf_skmm.sketch import GaussianSketch
r, m, b = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def status(key):
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
x = torch.randn(b, r, generator=torch.Generator().manual_seed(0))
sk = GaussianSketch(r, m, seed=0)
pathlib.Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current resident set
rss = status("VmRSS")
y = sk.apply(x)
print(json.dumps({"extra": status("VmHWM") - rss, "finite": bool(torch.isfinite(y).all()), "shape": list(y.shape)}))
"""


def _gaussian_peak_extra(r: int, m: int, b: int) -> dict:
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux /proc/self/clear_refs to measure the peak resident set")
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_CODE, str(r), str(m), str(b)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_gaussian_memory_is_bounded_by_the_block_not_by_gamma():
    """r = 250,000, m = 1024: the dense Γ would take 977 MiB; applying it must stay far below that."""
    res = _gaussian_peak_extra(250_000, 1024, 4)
    assert res["finite"] and res["shape"] == [4, 1024]
    assert res["extra"] < 256 * 2**20, res["extra"] / 2**20  # one 16384x1024 block is 64 MiB


@pytest.mark.slow
def test_gaussian_r_1e7_m_1024_under_1_gib():
    """The issue's size: r = 10^7, m = 1024 (Γ would be 38 GiB) with < 1 GiB extra memory (minutes on a CPU)."""
    res = _gaussian_peak_extra(10_000_000, 1024, 2)
    assert res["finite"] and res["shape"] == [2, 1024]
    assert res["extra"] < 2**30, res["extra"] / 2**20


def test_gaussian_skip_zero_blocks_is_exact():
    r = 4 * GEN_CHUNK_ROWS
    x = torch.zeros(2, r)
    x[0, 5] = 1.0
    x[1, -1] = -2.0
    a = GaussianSketch(r, 8, seed=1, block_rows=GEN_CHUNK_ROWS, cache_max_bytes=0).apply(x)
    b = GaussianSketch(
        r, 8, seed=1, block_rows=GEN_CHUNK_ROWS, cache_max_bytes=0, skip_zero_blocks=False
    ).apply(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_gaussian_allows_m_greater_than_r():
    sk = GaussianSketch(3, 50, seed=0)
    x = torch.randn(2, 3)
    torch.testing.assert_close(sk.apply(x), x @ sk.dense())


# ------------------------------------------------------------------------------------ sparse sign
def test_sparse_sign_structure():
    sk = SparseSignSketch(1000, 30, seed=2, nnz=4)
    assert sk.indices.dtype == torch.int32 and sk.signs.dtype == torch.int8
    assert sk.indices.shape == sk.signs.shape == (1000, 4)
    gamma = sk.dense()
    assert torch.equal((gamma != 0).sum(dim=1), torch.full((1000,), 4))  # nnz distinct outputs
    assert torch.allclose(gamma[gamma != 0].abs(), torch.tensor(0.5))
    torch.testing.assert_close(gamma.norm(dim=1), torch.ones(1000))  # unit columns of Γᵀ
    # block construction: the j-th non-zero lies in block [floor(j m/s), floor((j+1) m/s))
    bounds = [(j * 30) // 4 for j in range(5)]
    for j in range(4):
        assert bool(((sk.indices[:, j] >= bounds[j]) & (sk.indices[:, j] < bounds[j + 1])).all())
    signs = sk.signs.flatten().float()
    assert set(signs.unique().tolist()) == {-1.0, 1.0}


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_sparse_sign_paths_agree_with_dense_equivalent():
    scipy_sparse = pytest.importorskip("scipy.sparse")
    sk = SparseSignSketch(40_000, 32, seed=5, nnz=3)
    gamma = sk.dense().double()
    gen = torch.Generator().manual_seed(6)
    dense_x = torch.randn(3, 40_000, generator=gen)
    sparse_x = dense_x * (torch.rand(3, 40_000, generator=gen) < 0.01)  # 1% density: non-zero path
    # outputs are sums of ~4,000 float32 terms of size ~1 (values ~50): atol 1e-3 is float32 round-off
    for x in (dense_x, sparse_x):
        ref = x.double() @ gamma
        torch.testing.assert_close(sk.apply(x).double(), ref, rtol=1e-5, atol=1e-3)
    ref = sparse_x.double() @ gamma
    for x in (sparse_x.to_sparse(), sparse_x.to_sparse_csr(), scipy_sparse.csr_matrix(sparse_x.numpy())):
        torch.testing.assert_close(sk.apply(x).double(), ref, rtol=1e-5, atol=1e-3)


def test_sparse_sign_bad_inputs():
    with pytest.raises(ValueError, match=r"nnz=9 exceeds out_dim=8.*nnz <= 8"):
        SparseSignSketch(100, 8, nnz=9)
    sk = SparseSignSketch(100, 8, nnz=2)
    with pytest.raises(ValueError, match=r"shape \[batch, 100\]"):
        sk.apply(torch.randn(2, 99).to_sparse())
    bad = torch.zeros(2, 100)
    bad[1, 3] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf in row\(s\) \[1\]"):
        sk.apply(bad.to_sparse())


# -------------------------------------------------------------------------------------- Kronecker
def test_kronecker_equals_explicit_torch_kron():
    sk = KroneckerSketch(5, 7, 3, 4, seed=8)
    g_out, g_in = sk.factors()
    assert g_out.shape == (5, 3) and g_in.shape == (7, 4)
    big = torch.kron(g_out, g_in)
    assert torch.equal(sk.dense(), big)
    dw = torch.randn(6, 5, 7, generator=torch.Generator().manual_seed(0))
    x = dw.flatten(1)  # row-major vec of ΔW
    torch.testing.assert_close(sk.apply(x), x @ big, rtol=1e-5, atol=1e-5)
    # output layout: index a * m_in + c is (Γ_outᵀ ΔW Γ_in)[a, c]
    torch.testing.assert_close(sk.apply(x).reshape(6, 3, 4), g_out.T @ dw @ g_in, rtol=1e-5, atol=1e-5)
    # factors are the documented Gaussian sketches
    torch.testing.assert_close(g_out, GaussianSketch(5, 3, seed=derive_seed(8, "kronecker_out")).dense())
    torch.testing.assert_close(g_in, GaussianSketch(7, 4, seed=derive_seed(8, "kronecker_in")).dense())


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kronecker_apply_factors_equals_sketch_of_materialised_gradient(use_mask, dtype):
    sk = KroneckerSketch(6, 9, 2, 5, seed=1)
    gen = torch.Generator().manual_seed(2)
    delta = torch.randn(4, 11, 6, generator=gen).to(dtype)
    h = torch.randn(4, 11, 9, generator=gen).to(dtype)
    mask = (torch.rand(4, 11, generator=gen) > 0.3) if use_mask else None
    w = torch.ones(4, 11) if mask is None else mask.float()
    dw = torch.einsum("bt,bto,bti->boi", w.double(), delta.double(), h.double())  # Σ_t mask δ_t h_tᵀ
    ref = dw.flatten(1) @ sk.dense().double()
    y = sk.apply_factors(delta, h, mask)
    assert y.dtype == torch.float32 and y.shape == (4, 10)
    torch.testing.assert_close(y.double(), ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sk.apply(dw.flatten(1).float()).double(), ref, rtol=1e-4, atol=1e-4)


def test_kronecker_apply_factors_2d_is_one_position_and_numpy_ok():
    sk = KroneckerSketch(3, 4, 2, 2, seed=0)
    delta, h = (
        np.random.default_rng(0).standard_normal((2, 5, 3)),
        np.random.default_rng(1).standard_normal((2, 5, 4)),
    )
    y2 = sk.apply_factors(delta[:, 0], h[:, 0])
    y3 = sk.apply_factors(delta[:, :1], h[:, :1], np.ones((2, 1)))
    torch.testing.assert_close(y2, y3)
    outer = np.einsum("bo,bi->boi", delta[:, 0], h[:, 0]).reshape(2, -1)
    torch.testing.assert_close(
        y2.double(), torch.from_numpy(outer) @ sk.dense().double(), rtol=1e-5, atol=1e-5
    )


def test_kronecker_bad_inputs():
    sk = KroneckerSketch(3, 4, 2, 2)
    with pytest.raises(ValueError, match=r"delta must have shape \[b, T, 3\]"):
        sk.apply_factors(torch.randn(2, 5, 4), torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="batch/time shape"):
        sk.apply_factors(torch.randn(2, 5, 3), torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match=r"mask must have shape \[b, T\]"):
        sk.apply_factors(torch.randn(2, 5, 3), torch.randn(2, 5, 4), torch.ones(2, 4))
    with pytest.raises(TypeError, match="floating point"):
        sk.apply_factors(torch.ones(2, 5, 3, dtype=torch.long), torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="NaN or inf"):
        sk.apply_factors(torch.full((1, 5, 3), float("inf")), torch.randn(1, 5, 4))
    with pytest.raises(ValueError, match="m_out must be a positive int, got 0"):
        KroneckerSketch(3, 4, 0, 2)


def test_kronecker_factors_rule():
    assert kronecker_factors(512, 768, 768) == (16, 32)
    assert kronecker_factors(512, 2, 768) == (2, 256)
    assert kronecker_factors(1024, 768, 3072) == (32, 32)
    assert kronecker_factors(64, 1000, 4) == (16, 4)
    assert kronecker_factors(100, 3, 3) == (10, 10)  # nothing fits m > d_out * d_in: smallest overflow
    for m in (1, 7, 12, 96, 256, 500):
        for d_out, d_in in ((1, 1), (2, 50), (50, 2), (9, 9), (768, 768), (10, 1000)):
            a, c = kronecker_factors(m, d_out, d_in)
            assert a * c == m
            fitting = [(p, m // p) for p in range(1, m + 1) if m % p == 0 and p <= d_out and m // p <= d_in]
            if fitting:  # a fitting pair exists -> the chosen one fits and is the most balanced of them
                assert a <= d_out and c <= d_in
                best = min(abs(np.log(p) - np.log(q)) for p, q in fitting)
                assert abs(np.log(a) - np.log(c)) == pytest.approx(best)


def test_make_sketch_kronecker_builder():
    sk = make_sketch("kronecker", 768 * 768, 512, seed=3, d_out=768, d_in=768)
    assert isinstance(sk, KroneckerSketch) and (sk.m_out, sk.m_in) == (16, 32) and sk.seed == 3
    assert make_sketch("kronecker", 12, 6, d_out=3).d_in == 4
    assert (make_sketch("kronecker", 12, 6, d_out=3, d_in=4, m_out=3).m_in) == 2
    with pytest.raises(ValueError, match="pass the weight shape as d_out"):
        make_sketch("kronecker", 12, 6)
    with pytest.raises(ValueError, match="must equal in_dim=12"):
        make_sketch("kronecker", 12, 6, d_out=5, d_in=5)
    with pytest.raises(ValueError, match="not divisible"):
        make_sketch("kronecker", 12, 6, d_out=3, d_in=4, m_in=4)


# -------------------------------------------------------------------------------------- layerwise
def test_layerwise_is_the_stacked_sketch_of_the_concatenation():
    shapes = {"l0.weight": (6, 5), "l0.bias": (6,), "l1.weight": (3, 6)}
    sk = LayerwiseSketch.from_shapes(shapes, out_dim=8, seed=4, kind="kronecker")
    assert list(sk.parts) == list(shapes) and sk.in_dim == 30 + 6 + 18
    assert isinstance(sk.parts["l0.weight"], KroneckerSketch) and isinstance(
        sk.parts["l0.bias"], GaussianSketch
    )
    assert [p.seed for p in sk.parts.values()] == [derive_seed(4, name) for name in shapes]
    gen = torch.Generator().manual_seed(0)
    grads = {name: torch.randn(3, *shape, generator=gen) for name, shape in shapes.items()}
    flat = torch.cat([g.flatten(1) for g in grads.values()], dim=1)
    gamma = sk.dense()
    assert torch.equal(gamma, torch.cat([p.dense() for p in sk.parts.values()]))
    ref = flat.double() @ gamma.double()
    torch.testing.assert_close(sk.apply(flat).double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sk.apply_parts(grads).double(), ref, rtol=1e-5, atol=1e-5)
    # Kronecker parts also take (delta, h) factors: a T = 1 outer product
    delta, h = torch.randn(3, 6, generator=gen), torch.randn(3, 5, generator=gen)
    with_factors = dict(grads, **{"l0.weight": (delta, h)})
    as_grad = dict(grads, **{"l0.weight": torch.einsum("bo,bi->boi", delta, h)})
    torch.testing.assert_close(sk.apply_parts(with_factors), sk.apply_parts(as_grad), rtol=1e-5, atol=1e-5)
    # a missing part is a zero gradient only when asked
    partial = {k: v for k, v in grads.items() if k != "l0.bias"}
    zeroed = dict(grads, **{"l0.bias": torch.zeros(3, 6)})
    torch.testing.assert_close(sk.apply_parts(partial, allow_missing=True), sk.apply_parts(zeroed))
    with pytest.raises(ValueError, match=r"missing part\(s\) \['l0.bias'\]"):
        sk.apply_parts(partial)
    with pytest.raises(ValueError, match=r"unknown part\(s\) \['nope'\]"):
        sk.apply_parts({**grads, "nope": torch.zeros(3, 1)})
    with pytest.raises(TypeError, match="only Kronecker parts take"):
        sk.apply_parts(dict(grads, **{"l0.bias": (delta, h)}))


def test_layerwise_parts_do_not_depend_on_other_layers():
    a = LayerwiseSketch.from_shapes({"x": (10,), "y": (4, 4)}, 8, seed=1, kind="sparse_sign", nnz=2)
    b = LayerwiseSketch.from_shapes({"y": (4, 4)}, 8, seed=1, kind="sparse_sign", nnz=2)
    assert torch.equal(a.parts["y"].dense(), b.parts["y"].dense())
    assert isinstance(a.parts["x"], SparseSignSketch) and a.parts["x"].nnz == 2


def test_layerwise_bad_parts():
    with pytest.raises(ValueError, match="share one out_dim"):
        LayerwiseSketch({"a": GaussianSketch(3, 4), "b": GaussianSketch(3, 5)})
    with pytest.raises(ValueError, match="non-empty mapping"):
        LayerwiseSketch({})
    with pytest.raises(TypeError, match=r"parts\['a'\] must be a Sketch"):
        LayerwiseSketch({"a": torch.eye(3)})
    with pytest.raises(ValueError, match="from_shapes"):
        make_sketch("layerwise", 10, 4)


# ---------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("sketch", SKETCHES, ids=_ids(SKETCHES))
def test_sketch_config_round_trip_through_json(sketch):
    config = json.loads(json.dumps(sketch.to_config()))
    assert config["kind"] == sketch.kind
    rebuilt = Sketch.from_config(config)
    assert type(rebuilt) is type(sketch) and rebuilt == sketch
    assert torch.equal(rebuilt.dense(), sketch.dense())
    assert sketch_from_config(config) == sketch
    assert type(sketch).from_config(config) == sketch


def test_from_config_errors():
    with pytest.raises(ValueError, match="'kind' key"):
        Sketch.from_config({"in_dim": 3})
    with pytest.raises(ValueError, match=r"unknown sketch kind 'nope'; choose one of \["):
        Sketch.from_config({"kind": "nope"})
    with pytest.raises(ValueError, match="builds GaussianSketch, not SparseSignSketch"):
        SparseSignSketch.from_config(GaussianSketch(3, 2).to_config())


def test_registry_and_make_sketch():
    assert {"gaussian", "sparse_sign", "kronecker", "layerwise"} <= set(list_sketches())
    sk = make_sketch("sparse_sign", 50, 8, seed=2, nnz=2)
    assert isinstance(sk, SparseSignSketch) and (sk.in_dim, sk.out_dim, sk.seed, sk.nnz) == (50, 8, 2, 2)
    assert make_sketch("gaussian", 50, 8, block_rows=4096).block_rows == 4096
    with pytest.raises(ValueError, match=r"unknown sketch kind 'dense'; choose one of"):
        make_sketch("dense", 50, 8)


def test_sketch_config_defaults_round_trip_and_build():
    cfg = SketchConfig()
    assert (cfg.kind, cfg.dim, cfg.seed, cfg.nnz) == ("gaussian", 512, 0, 4)
    for c in (
        cfg,
        SketchConfig(kind="sparse_sign", dim=64, seed=3, nnz=2),
        SketchConfig(kind="kronecker", dim=16),
    ):
        assert SketchConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    sparse = SketchConfig(kind="sparse_sign", dim=16, seed=3, nnz=2).build(100)
    assert sparse == SparseSignSketch(100, 16, seed=3, nnz=2)
    kron = SketchConfig(kind="kronecker", dim=16, seed=1).build(40, d_out=5, d_in=8)
    assert isinstance(kron, KroneckerSketch) and kron.out_dim == 16
    lw = SketchConfig(kind="kronecker", dim=16, seed=1).build_layerwise({"w": (5, 8), "b": (5,)})
    assert isinstance(lw.parts["w"], KroneckerSketch) and lw.parts["w"].seed == derive_seed(1, "w")
    gauss = SketchConfig(dim=16, block_rows=4096, cache_mb=0)
    assert gauss.build(100).block_rows == 4096 and gauss.build(100).cache_max_bytes == 0
    lw = SketchConfig(kind="kronecker", dim=16, cache_mb=1).build_layerwise({"w": (5, 8), "b": (5,)})
    assert lw.parts["b"].cache_max_bytes == 2**20  # Gaussian fallback parts get the Gaussian options
    lw = SketchConfig(kind="sparse_sign", dim=16, nnz=3).build_layerwise({"w": (5, 8)})
    assert lw.parts["w"].nnz == 3
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['m'\]"):
        SketchConfig.from_dict({"m": 3})


def test_sketch_config_parses_with_hf_argument_parser():
    transformers = pytest.importorskip("transformers")
    parser = transformers.HfArgumentParser(SketchConfig)
    (cfg,) = parser.parse_args_into_dataclasses(
        ["--kind", "sparse_sign", "--dim", "64", "--nnz", "2", "--seed", "5"]
    )
    assert cfg == SketchConfig(kind="sparse_sign", dim=64, nnz=2, seed=5)
    assert all(f.metadata.get("help") for f in SketchConfig.__dataclass_fields__.values())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kind": "dense"}, ValueError, r"kind='dense' is not a sketch kind; choose one of \['gaussian'"),
        ({"kind": "layerwise"}, ValueError, "not a sketch kind"),
        ({"dim": 0}, ValueError, "dim must be a positive int, got 0; pass dim >= 1"),
        ({"dim": -3}, ValueError, "dim must be a positive int, got -3"),
        ({"nnz": 0}, ValueError, "nnz must be a positive int, got 0"),
        ({"kind": "sparse_sign", "dim": 4, "nnz": 8}, ValueError, "nnz=8 exceeds dim=4"),
        ({"block_rows": 0}, ValueError, "block_rows must be a positive int"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"cache_mb": -1}, ValueError, "cache_mb must be an int >= 0, got -1"),
        ({"dim": "8"}, TypeError, "dim must be a positive int, got '8'"),
    ],
)
def test_sketch_config_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        SketchConfig(**kwargs)


# ------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kind", ["gaussian", "sparse_sign"])
def test_bad_dimensions_raise(kind):
    with pytest.raises(ValueError, match=r"out_dim must be a positive int, got 0; pass out_dim >= 1"):
        make_sketch(kind, 10, 0)
    with pytest.raises(ValueError, match=r"out_dim must be a positive int, got -2"):
        make_sketch(kind, 10, -2)
    with pytest.raises(ValueError, match=r"in_dim must be a positive int, got 0"):
        make_sketch(kind, 0, 4)
    with pytest.raises(TypeError, match=r"in_dim must be a positive int, got 10.0"):
        make_sketch(kind, 10.0, 4)


@pytest.mark.parametrize("sketch", SKETCHES, ids=_ids(SKETCHES))
def test_bad_apply_inputs_raise(sketch):
    r = sketch.in_dim
    with pytest.raises(ValueError, match=rf"must have shape \[batch, {r}\].*got \(2, {r + 1}\)"):
        sketch.apply(torch.randn(2, r + 1))
    with pytest.raises(ValueError, match=rf"shape \[batch, {r}\]"):
        sketch.apply(torch.randn(2, 3, r))
    for value in (float("nan"), float("inf"), -float("inf")):
        x = torch.randn(4, r)
        x[2, r // 2] = value
        with pytest.raises(ValueError, match=r"NaN or inf in row\(s\) \[2\].*nan_to_num"):
            sketch.apply(x)
    with pytest.raises(TypeError, match=r"float32/float16/bfloat16.*got torch.int64"):
        sketch.apply(torch.ones(2, r, dtype=torch.long))
    with pytest.raises(TypeError, match="floating-point numbers, got dtype int64"):
        sketch.apply(np.ones((2, r), dtype=np.int64))
