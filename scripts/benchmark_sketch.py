"""Throughput and peak memory of the hf_skmm sketches (issue 3 benchmark; not a timed test).

Two experiments, every case in a fresh subprocess so its peak memory is its own:

1. Flat gradients x ∈ R^{b×r} (dense float32, b = 64), m = 512, r ∈ {1e5, 1e6, 1e7}:
   GaussianSketch (Γ regenerated block-wise from the seed), SparseSignSketch (nnz = 4) and, when it is
   importable, dattri's CPU random projector (``make_random_projector`` → ``BasicProjector``, normal
   entries) as a peer on the same input.
2. One 768×768 linear layer, T = 128 positions, b = 64: KroneckerSketch.apply_factors(δ, h) vs
   "materialise ΔW = Σ_t δ_t h_tᵀ, then Gaussian-sketch vec(ΔW)" (Γ regenerated, and Γ cached dense as the
   materialising path's best case), plus the materialised path with a sparse sign sketch.

Peak memory is the process's peak resident set (``VmHWM`` of /proc/self/status, reset through
/proc/self/clear_refs after the inputs exist) minus the resident set at that moment: the *extra* memory
the sketch needs beyond its input. Times are wall-clock on a shared, loaded CPU: compare the ratios measured
side by side in one run, not the absolute numbers.

Usage::

    python scripts/benchmark_sketch.py                       # the issue's sizes (tens of minutes on 2 cores)
    python scripts/benchmark_sketch.py --small               # seconds; smoke test
    python scripts/benchmark_sketch.py --dattri-site DIR     # where `pip install --no-deps --target DIR dattri` put it
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

NOTES = [
    "'Γ regenerated per batch' rows force the memory-bounded mode (cache off): Γ is redrawn from the seed for "
    "every batch, so drawing r·m normals dominates. That is GaussianSketch's default for r ≥ 1e6 at m = 512 "
    "(r·m·4 bytes > its 256 MiB cache); at r = 1e5 the default caches Γ, which the 'dense Γ cached' row times.",
    "r = 1e7 cases run one batch in one round, measured in full (not extrapolated); it takes one to three minutes "
    "for the Gaussian sketch depending on the load from other processes.",
    "dattri: `pip download --no-deps dattri` fetched the 0.3.0 wheel (296 kB) in seconds; its runtime requirements "
    "(numpy, scipy, pyyaml, tqdm, pretty_midi) pull no torch/CUDA (torch is only in its `test` extra), and "
    "`dattri.func.projection` imports only torch, so it was installed with `pip install --no-deps --target DIR` "
    "outside the project venv and is NOT a dependency of hf_skmm. On CPU `make_random_projector` returns "
    "`BasicProjector`, which fails on the default `proj_type=sjlt` (sjlt is CUDA-only; AttributeError on "
    "CPU), so the benchmark passes `ProjectionType.normal`. "
    "It materialises an r × 100 block of Γ (400 MB at r = 1e6, 4 GB at r = 1e7), so it is run up to r = 1e6 only.",
    "Kronecker: the last column is the median over the batch of |‖sketch‖²/‖ΔW‖² − 1| on these random factors: the "
    "Kronecker sketch trades some accuracy (it has a larger variance than a dense Gaussian of the same m) for speed.",
]


# ------------------------------------------------------------------------------------------ child side
def _status(key: str) -> int:
    """A /proc/self/status field in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return -1


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def run_case(case: dict) -> dict:
    """Run one benchmark case in this process and return its measurements."""
    import torch

    if case.get("dattri_site"):
        sys.path.insert(0, case["dattri_site"])
    from hf_skmm.sketch import GaussianSketch, KroneckerSketch, SparseSignSketch

    gen = torch.Generator().manual_seed(0)
    b, m, kind = case["batch"], case["m"], case["kind"]
    n_batches = case["batches"]
    result: dict = {"case": case}

    if case["experiment"] == "flat":
        r = case["r"]
        x = torch.randn(b, r, generator=gen)
        inputs = lambda: x  # noqa: E731
        result["input_bytes"] = x.numel() * 4
    else:
        d_out, d_in, T = case["d_out"], case["d_in"], case["T"]
        delta = torch.randn(b, T, d_out, generator=gen) / math.sqrt(T)
        h = torch.randn(b, T, d_in, generator=gen)
        result["input_bytes"] = (delta.numel() + h.numel()) * 4
    gc.collect()
    rss0 = _status("VmRSS")
    result["peak_reset"] = _reset_peak()

    t0 = time.perf_counter()
    if kind == "gaussian":
        r_eff = case.get("r") or case["d_out"] * case["d_in"]
        cache = 2**62 if case.get("cached") else 0
        sk = GaussianSketch(r_eff, m, seed=0, cache_max_bytes=cache).prepare("cpu")  # cached: Γ built now
        fn = lambda z: sk.apply(z)  # noqa: E731
    elif kind == "sparse_sign":
        r_eff = case.get("r") or case["d_out"] * case["d_in"]
        sk = SparseSignSketch(r_eff, m, seed=0, nnz=case["nnz"]).prepare("cpu")  # CSR chunks built now
        fn = lambda z: sk.apply(z)  # noqa: E731
    elif kind == "dattri":
        from dattri.func.projection import ProjectionType, make_random_projector

        r_eff = case.get("r") or case["d_out"] * case["d_in"]
        proj = make_random_projector(
            [r_eff], b, m, b, torch.device("cpu"), proj_seed=0, proj_type=ProjectionType.normal
        )
        fn = lambda z: proj.project(z, ensemble_id=0)  # noqa: E731
    elif kind == "kronecker":
        from hf_skmm.sketch import kronecker_factors

        m_out, m_in = kronecker_factors(m, case["d_out"], case["d_in"])
        sk = KroneckerSketch(case["d_out"], case["d_in"], m_out, m_in, seed=0).prepare("cpu")
        result["m_out_m_in"] = [m_out, m_in]
    else:
        raise ValueError(f"unknown kind {kind!r}")
    result["setup_s"] = time.perf_counter() - t0

    times, out = [], None
    for _ in range(n_batches):
        t = time.perf_counter()
        if case["experiment"] == "flat":
            out = fn(inputs())
        elif kind == "kronecker":
            out = sk.apply_factors(delta, h)
        else:  # materialise ΔW = Σ_t δ_t h_tᵀ per example, flatten row-major, then sketch
            dw = torch.bmm(delta.transpose(1, 2), h).reshape(b, -1)
            out = fn(dw)
            del dw
        times.append(time.perf_counter() - t)
    result["batch_s"] = times
    result["mean_batch_s"] = sum(times) / len(times)
    result["examples_per_s"] = b / result["mean_batch_s"]
    result["peak_extra_bytes"] = _status("VmHWM") - rss0
    result["out_shape"] = list(out.shape)
    if case["experiment"] == "kron":
        # distortion of ‖ΔW‖² per example: ‖ΔW‖_F² = Σ_{t,t'} (δ_t·δ_t')(h_t·h_t') without forming ΔW
        true = ((delta @ delta.transpose(1, 2)) * (h @ h.transpose(1, 2))).sum((1, 2)).double()
        ratio = out.double().pow(2).sum(-1) / true
        result["norm_ratio_median_abs_dev"] = float((ratio - 1).abs().median())
    return result


# ----------------------------------------------------------------------------------------- parent side
def _spawn(case: dict) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run(
        [sys.executable, __file__, "--run-case", json.dumps(case)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        return {
            "case": case,
            "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else f"rc={proc.returncode}",
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB" if n < 2**30 else f"{n / 2**30:,.2f} GiB"


def _dattri_status(site: str | None) -> str:
    code = "import dattri.func.projection as p; print(p.__file__)"
    env = dict(os.environ)
    if site:
        env["PYTHONPATH"] = site + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode == 0:
        try:
            from importlib.metadata import version

            sys.path.insert(0, site) if site else None
            return f"dattri {version('dattri')}"
        except Exception:  # pragma: no cover - metadata missing
            return "dattri (version unknown)"
    return ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--r", type=float, nargs="+", default=[1e5, 1e6, 1e7], help="flat input dims r")
    parser.add_argument("--m", type=int, default=512, help="sketch dim m")
    parser.add_argument("--batch", type=int, default=64, help="examples per batch")
    parser.add_argument("--batches", type=int, default=3, help="timed batches per case (r < 1e7)")
    parser.add_argument("--batches-large", type=int, default=1, help="timed batches per case at r >= 1e7")
    parser.add_argument("--nnz", type=int, default=4, help="sparse sign non-zeros per coordinate")
    parser.add_argument("--d", type=int, nargs=2, default=[768, 768], help="Kronecker layer d_out d_in")
    parser.add_argument("--T", type=int, default=128, help="positions per example for the Kronecker case")
    parser.add_argument("--kron-batches", type=int, default=2, help="timed batches for the Kronecker cases")
    parser.add_argument("--dattri-site", default=None, help="directory holding dattri (pip install --target)")
    parser.add_argument(
        "--dattri-max-r",
        type=float,
        default=1e6,
        help="largest r given to dattri (its Γ block is r×100 floats)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="round-robin repetitions (r >= 1e7: one)")
    parser.add_argument(
        "--skip-cached", action="store_true", help="skip the materialise + cached dense Γ case"
    )
    parser.add_argument("--small", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", default=str(RESULTS / "benchmark_sketch"), help="output path without suffix")
    parser.add_argument("--render-only", default=None, help="re-render ratios + markdown from a result .json")
    parser.add_argument("--run-case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.run_case:
        print(json.dumps(run_case(json.loads(args.run_case))))
        return
    if args.render_only:  # recompute ratios and the markdown from an existing result file (no new timings)
        payload = json.loads(Path(args.render_only).read_text())
        payload["ratios"], payload["ratios_per_round"] = compute_ratios(payload["results"])
        out = Path(args.render_only).with_suffix("")
        _atomic_write(out.with_suffix(".json"), json.dumps(payload, indent=2))
        _atomic_write(out.with_suffix(".md"), _markdown(payload))
        print(json.dumps(payload["ratios"], indent=2))
        return
    if args.small:
        args.r, args.batch, args.d, args.T, args.m = [1e4, 1e5], 16, [64, 64], 16, 64
        args.batches, args.batches_large, args.kron_batches = 2, 1, 2

    import torch

    dattri = _dattri_status(args.dattri_site)
    cases = []
    for r in (int(v) for v in args.r):
        nb = args.batches_large if r >= 10**7 else args.batches
        common = {"experiment": "flat", "r": r, "m": args.m, "batch": args.batch, "batches": nb}
        cases.append({**common, "kind": "gaussian"})
        if r * args.m * 4 <= 256 * 2**20:  # fits GaussianSketch's default cache: also time the cached Γ
            cases.append({**common, "kind": "gaussian", "cached": True})
        cases.append({**common, "kind": "sparse_sign", "nnz": args.nnz})
        if dattri and r <= args.dattri_max_r:
            cases.append({**common, "kind": "dattri", "dattri_site": args.dattri_site})
    kron = {
        "experiment": "kron", "d_out": args.d[0], "d_in": args.d[1], "T": args.T, "m": args.m,
        "batch": args.batch, "batches": args.kron_batches,
    }  # fmt: skip
    cases.append({**kron, "kind": "kronecker"})
    cases.append({**kron, "kind": "gaussian"})
    if not args.skip_cached:
        cases.append({**kron, "kind": "gaussian", "cached": True})
    cases.append({**kron, "kind": "sparse_sign", "nnz": args.nnz})

    # Round robin: every case runs once per round (large ones only in the first), so a burst of load from
    # other processes hits all cases alike; each case keeps its best round.
    runs: list[list[dict]] = [[] for _ in cases]
    for rnd in range(args.rounds):
        for i, case in enumerate(cases):
            if rnd > 0 and case.get("r", 0) >= 10**7:
                continue
            label = f"{case['experiment']}:{case['kind']}{'+cached' if case.get('cached') else ''} r={case.get('r', '')}"
            print(f"round {rnd + 1}: {label} ...", flush=True)
            res = _spawn(case)
            runs[i].append(res)
            if "error" in res:
                print(f"  ERROR {res['error']}", flush=True)
            else:
                print(
                    f"  {res['mean_batch_s']:.3f} s/batch, {res['examples_per_s']:.1f} ex/s, setup {res['setup_s']:.2f} s, "
                    f"peak extra {_fmt_bytes(res['peak_extra_bytes'])}",
                    flush=True,
                )
    results = []
    for case_runs in runs:
        ok = [r for r in case_runs if "error" not in r]
        if not ok:
            results.append(case_runs[-1])
            continue
        best = dict(min(ok, key=lambda r: r["mean_batch_s"]))
        best["rounds"] = len(ok)
        best["all_batch_s"] = [t for r in ok for t in r["batch_s"]]
        best["peak_extra_bytes"] = max(r["peak_extra_bytes"] for r in ok)
        best["round_means"] = [r["mean_batch_s"] for r in ok]
        results.append(best)

    ratios, ratios_per_round = compute_ratios(results)

    meta = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "load_avg_at_end": os.getloadavg(),
        "dattri": dattri
        or "not importable (install with: pip install --no-deps --target DIR dattri; pass --dattri-site DIR)",
        "args": {k: v for k, v in vars(args).items() if k != "run_case"},
    }
    payload = {"meta": meta, "ratios": ratios, "ratios_per_round": ratios_per_round, "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(out.with_suffix(".json"), json.dumps(payload, indent=2))
    _atomic_write(out.with_suffix(".md"), _markdown(payload))
    print(json.dumps(ratios, indent=2))


_PAIRS = [  # (name, numerator case, denominator case): ratio = time(numerator) / time(denominator)
    ("sparse_vs_cached_gaussian_speedup_r{r}", ("flat", "gaussian", True), ("flat", "sparse_sign", False)),
    ("sparse_vs_gaussian_speedup_r{r}", ("flat", "gaussian", False), ("flat", "sparse_sign", False)),
    ("gaussian_vs_dattri_speedup_r{r}", ("flat", "dattri", False), ("flat", "gaussian", False)),
    ("sparse_vs_dattri_speedup_r{r}", ("flat", "dattri", False), ("flat", "sparse_sign", False)),
    ("kronecker_vs_materialise_gaussian_speedup", ("kron", "gaussian", False), ("kron", "kronecker", False)),
    (
        "kronecker_vs_materialise_gaussian_cached_speedup",
        ("kron", "gaussian", True),
        ("kron", "kronecker", False),
    ),
    ("kronecker_vs_materialise_sparse_speedup", ("kron", "sparse_sign", False), ("kron", "kronecker", False)),
]


def _round_means(res: dict) -> list[float]:
    if "round_means" in res:
        return res["round_means"]
    n = res["case"]["batches"]  # older result files: split the concatenated batch times by round
    times = res.get("all_batch_s", res["batch_s"])
    return [sum(times[i : i + n]) / n for i in range(0, len(times), n)]


def compute_ratios(results: list[dict]) -> tuple[dict, dict]:
    """Speed-up ratios from the best round of each case, and the same ratio round by round."""
    index = {}
    for res in results:
        if "error" in res:
            continue
        c = res["case"]
        index[(c["experiment"], c["kind"], bool(c.get("cached")), c.get("r"))] = res
    ratios, per_round = {}, {}
    rs = sorted({c[3] for c in index if c[3] is not None}) or [None]
    for name, (e1, k1, c1), (e2, k2, c2) in _PAIRS:
        for r in rs if "{r}" in name else [None]:
            num, den = index.get((e1, k1, c1, r)), index.get((e2, k2, c2, r))
            if num is None or den is None:
                continue
            key = name.format(r=f"{r:.0e}") if r is not None else name
            ratios[key] = num["mean_batch_s"] / den["mean_batch_s"]
            a, b = _round_means(num), _round_means(den)
            if len(a) == len(b) > 1:
                per_round[key] = [x / y for x, y in zip(a, b)]
    return ratios, per_round


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _markdown(payload: dict) -> str:
    meta, ratios, results = payload["meta"], payload["ratios"], payload["results"]
    lines = [
        "# Sketch benchmark",
        "",
        f"torch {meta['torch']} on {meta['cpu_count']} CPU cores ({meta['torch_threads']} torch threads), "
        f"load average at the end {tuple(round(v, 1) for v in meta['load_avg_at_end'])}: the machine is shared, so "
        "absolute times are noisy; the ratios are measured side by side in one run. Each case runs in a fresh "
        "process; 'peak extra' is the peak resident set minus the resident set once the inputs exist. "
        f"Peer: {meta['dattri']}.",
        "",
        f"## Flat gradients (dense float32 input, m = {meta['args']['m']})",
        "",
        "| r | sketch | batch | timed batches × rounds | best s / batch | examples / s | setup s | peak extra memory |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        c = res["case"]
        if c["experiment"] != "flat":
            continue
        if "error" in res:
            lines.append(f"| {c['r']:.0e} | {c['kind']} | {c['batch']} | - | error: {res['error']} | | | |")
            continue
        label = {
            "sparse_sign": f"sparse_sign (nnz={c.get('nnz')})",
            "gaussian": "gaussian (dense Γ cached)"
            if c.get("cached")
            else "gaussian (Γ regenerated per batch)",
            "dattri": "dattri BasicProjector (normal)",
        }[c["kind"]]
        lines.append(
            f"| {c['r']:.0e} | {label} | {c['batch']} "
            f"| {c['batches']} × {res.get('rounds', 1)} | {res['mean_batch_s']:.3f} | {res['examples_per_s']:.1f} | {res['setup_s']:.2f} "
            f"| {_fmt_bytes(res['peak_extra_bytes'])} |"
        )
    kr = [r for r in results if r["case"]["experiment"] == "kron"]
    if kr:
        c0 = kr[0]["case"]
        lines += [
            "",
            f"## One {c0['d_out']}×{c0['d_in']} linear layer, T = {c0['T']}, batch {c0['batch']}, m = {c0['m']}",
            "",
            "| path | s / batch | examples / s | setup s | peak extra memory | median abs(‖sketch‖²/‖ΔW‖² − 1) |",
            "|---|---|---|---|---|---|",
        ]
        names = {
            ("kronecker", False): "KroneckerSketch.apply_factors(δ, h) (m_out×m_in = %s)",
            ("gaussian", False): "materialise ΔW, GaussianSketch (Γ regenerated)",
            ("gaussian", True): "materialise ΔW, GaussianSketch (dense Γ cached)",
            ("sparse_sign", False): "materialise ΔW, SparseSignSketch (nnz=4)",
        }
        for res in kr:
            c = res["case"]
            name = names[(c["kind"], bool(c.get("cached")))]
            if "%s" in name:
                name = name % "×".join(map(str, res.get("m_out_m_in", ["?", "?"])))
            if "error" in res:
                lines.append(f"| {name} | error: {res['error']} | | | | |")
                continue
            lines.append(
                f"| {name} | {res['mean_batch_s']:.3f} | {res['examples_per_s']:.1f} | {res['setup_s']:.2f} | "
                f"{_fmt_bytes(res['peak_extra_bytes'])} | {res['norm_ratio_median_abs_dev']:.3f} |"
            )
    lines += ["", "## Ratios (same run, best round of each case)", ""]
    per_round = payload.get("ratios_per_round", {})
    lines += [
        f"- `{k}`: **{v:.1f}×**"
        + (f" (round by round: {', '.join(f'{x:.1f}×' for x in per_round[k])})" if k in per_round else "")
        for k, v in ratios.items()
    ]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in NOTES] + [""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
