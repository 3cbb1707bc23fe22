"""Wall time and peak RSS of selection: SkMM vs uniform vs ridge leverage at N ∈ {1e4, 1e5, 1e6}, m = 256.

Every (method, N) case runs in a fresh subprocess so its peak RSS (``ru_maxrss``) is its own. The sketch
matrix is float32 [N, m] (1 GiB at N = 1e6), generated block-wise inside the worker: a Gaussian mixture
of 16 clusters with a decaying spectrum (scale_j = j^{-1/2}), so the eigenvalues spread over two orders
of magnitude as sketched gradients do. The coreset size is n = N/100. ``select`` runs with its defaults
(``diagnostics=True``; SkMM: c_S schedule ``"auto"``, FISTA ``max_iter=300`` per c_S value).

Reported: wall seconds of ``select`` (data generation excluded), peak RSS of the whole worker process
(data included), RSS right after generating the data (so ``peak - data`` is what selection added),
and for SkMM the iteration count and c_S reached. Absolute times are noisy on a shared machine; the
ratios between methods, measured in the same run, are the meaningful part.

    python scripts/benchmark_selection.py                 # N = 1e4, 1e5, 1e6
    python scripts/benchmark_selection.py --sizes 10000 100000 --methods skmm uniform
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_SECONDS, TARGET_GIB = 120.0, 3.0


def _rss_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def make_sketches(num: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = (3.0 * rng.standard_normal((16, dim))).astype(np.float32)
    scale = (1.0 / np.sqrt(np.arange(1, dim + 1))).astype(np.float32)
    out = np.empty((num, dim), dtype=np.float32)
    for start in range(0, num, 65536):
        stop = min(start + 65536, num)
        block = rng.standard_normal((stop - start, dim), dtype=np.float32)
        block *= scale
        block += centers[rng.integers(0, 16, stop - start)]
        out[start:stop] = block
    return out


def parse_method(spec: str) -> tuple[str, dict]:
    """``"skmm"`` or ``"skmm:max_iter=100,c_s=0.9"`` -> (method, kwargs); values parsed as JSON when possible."""
    name, _, rest = spec.partition(":")
    kwargs = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    return name, kwargs


def worker(method: str, num: int, dim: int, n: int) -> dict:
    from hf_skmm.selection import select

    name, kwargs = parse_method(method)
    x = make_sketches(num, dim)
    data_gib = _rss_gib()
    t0 = time.perf_counter()
    res = select(x, n, method=name, seed=0, **kwargs)
    seconds = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    info = res.info
    return {
        "method": method,
        "N": num,
        "m": dim,
        "n": n,
        "seconds": seconds,
        "peak_rss_gib": peak_gib,
        "data_rss_gib": data_gib,
        "n_iter": info.get("n_iter"),
        "c_s_target": info.get("c_s_target"),
        "feasible": info.get("feasible"),
        "setup_seconds": info.get("setup_seconds"),
        "c_s_achieved": info.get("c_s_achieved"),
        "attempts": [
            {k: a.get(k) for k in ("c_s", "feasible", "n_iter", "stop")} for a in info.get("attempts", [])
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["skmm", "skmm:max_iter=100", "uniform", "ridge_leverage"],
        help="registered names, optionally with kwargs: skmm:max_iter=100",
    )
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--fraction", type=float, default=0.01, help="coreset size n = fraction * N")
    parser.add_argument(
        "--name", default="benchmark_selection", help="results file stem under scripts/results/"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="BLAS threads per worker (default: inherit)"
    )
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "N", "n"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, num, n = args.worker[0], int(args.worker[1]), int(args.worker[2])
        print(json.dumps(worker(method, num, args.dim, n)))
        return

    rows = []
    for num in args.sizes:
        for method in args.methods:
            n = max(1, round(args.fraction * num))
            cmd = [sys.executable, __file__, "--dim", str(args.dim), "--worker", method, str(num), str(n)]
            env = dict(os.environ)
            if args.threads:
                env.update(OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"worker {method} N={num} failed with code {proc.returncode}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{method:>15} N={num:>8} n={n:>6}: {row['seconds']:8.2f} s, peak RSS {row['peak_rss_gib']:.2f} GiB "
                f"(data {row['data_rss_gib']:.2f} GiB)"
                + (f", {row['n_iter']} it, c_S={row['c_s_target']}" if method.startswith("skmm") else ""),
                flush=True,
            )

    env = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "blas_threads": args.threads or os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "note": "2 shared cores, other jobs running: absolute times are noisy; ratios from one run",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"rows": rows, "environment": env, "target": {"seconds": TARGET_SECONDS, "peak_gib": TARGET_GIB}}
    tmp = RESULTS / f".{args.name}.json.tmp"
    tmp.write_text(json.dumps(out, indent=2))
    os.replace(tmp, RESULTS / f"{args.name}.json")

    lines = [
        "# Selection benchmark",
        "",
        f"m = {args.dim}, float32 sketches, n = {args.fraction:g}·N, one fresh process per case "
        f"(peak RSS includes the {args.dim}·N·4-byte data). {env['note']}.",
        "",
        "| method | N | n | seconds | peak RSS (GiB) | data RSS (GiB) | SkMM iterations | c_S reached |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        it = r["n_iter"] if r["method"].startswith("skmm") else ""
        cs = r["c_s_target"] if r["method"].startswith("skmm") else ""
        lines.append(
            f"| {r['method']} | {r['N']:,} | {r['n']:,} | {r['seconds']:.2f} | {r['peak_rss_gib']:.2f} | "
            f"{r['data_rss_gib']:.2f} | {it} | {cs} |"
        )
    skmm_rows = [r for r in rows if r["method"].startswith("skmm")]
    if skmm_rows:
        lines += ["", "SkMM time per FISTA iteration (after setup: Σ̃, A = (G̃V)², Lipschitz constant):", ""]
        for r in skmm_rows:
            per_it = (r["seconds"] - (r["setup_seconds"] or 0)) / max(r["n_iter"] or 1, 1)
            lines.append(
                f"- {r['method']}, N = {r['N']:,}: setup {r['setup_seconds']:.2f} s, "
                f"{per_it * 1e3:.1f} ms / iteration over {r['n_iter']} iterations"
            )
    big = [r for r in rows if r["N"] >= 1_000_000 and r["method"].startswith("skmm")]
    for r in big:
        ok = r["seconds"] <= TARGET_SECONDS and r["peak_rss_gib"] <= TARGET_GIB
        lines += [
            "",
            f"Target N = 1e6 ({r['method']}): ≤ {TARGET_SECONDS:.0f} s and ≤ {TARGET_GIB:.0f} GiB → "
            f"{r['seconds']:.1f} s, {r['peak_rss_gib']:.2f} GiB: {'met' if ok else 'NOT met'}.",
        ]
    tmp = RESULTS / f".{args.name}.md.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, RESULTS / f"{args.name}.md")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
