"""CLI start-up and coreset-output costs.

1. ``hf-skmm --help`` must answer fast (< 1 s): it imports no command module, torch or the HF stack.
   Measured as the median wall time of fresh ``python -m hf_skmm.cli.main --help`` processes, next to
   ``python -c pass`` (the interpreter floor) and each command's ``--help`` (those import transformers).
2. The coreset-output step on a synthetic sketch dataset (N rows, m dims): selection time vs the
   time to cut the coreset (``dataset.select`` + 2 columns), save it with its card, and write the Hub folder.

Absolute times are noisy on a shared machine; the ratios within one run are what to read.

    python scripts/benchmark_cli.py [--rows 20000] [--dim 64] [--n 1000] [--repeats 5] [--name benchmark_cli]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _wall(cmd: list[str], repeats: int) -> float:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def startup(repeats: int) -> dict[str, float]:
    py = sys.executable
    out = {
        "python -c pass": _wall([py, "-c", "pass"], repeats),
        "hf-skmm --help": _wall([py, "-m", "hf_skmm.cli.main", "--help"], repeats),
    }
    for command in ("extract", "select", "export", "methods"):
        out[f"hf-skmm {command} --help"] = _wall(
            [py, "-m", "hf_skmm.cli.main", command, "--help"], max(1, repeats // 2)
        )
    return out


def coreset_output(rows: int, dim: int, n: int) -> dict[str, float]:
    import numpy as np
    from datasets import Dataset, Features, List, Value

    from hf_skmm.integrations.card import build_card
    from hf_skmm.integrations.coreset import (
        coreset_from_selection,
        save_coreset,
        select_from_sketches,
        write_hub_folder,
    )

    rng = np.random.default_rng(0)
    # a low-rank-plus-noise spectrum, like sketched gradients
    x = (rng.normal(size=(rows, 8)) @ rng.normal(size=(8, dim)) + 0.1 * rng.normal(size=(rows, dim))).astype(
        np.float32
    )
    source = Dataset.from_dict(
        {"text": [f"example {i}" for i in range(rows)], "label": (x[:, 0] > 0).astype(int)}
    )
    features = Features({"skmm_index": Value("int64"), "skmm_sketch": List(Value("float32"), length=dim)})
    sketched = Dataset.from_dict({"skmm_index": np.arange(rows), "skmm_sketch": x}, features=features)
    out: dict[str, float] = {}
    for method in ("skmm", "uniform"):
        start = time.perf_counter()
        result = select_from_sketches(sketched, n=n, method=method, seed=0)
        out[f"select {method} (s)"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        coreset = coreset_from_selection(source, result)
        out["cut coreset (s)"] = time.perf_counter() - start
        start = time.perf_counter()
        card = build_card(result, source_dataset="synthetic")
        save_coreset(coreset, result, Path(tmp) / "coreset", card=card)
        out["card + save_coreset (s)"] = time.perf_counter() - start
        start = time.perf_counter()
        write_hub_folder(coreset, card, Path(tmp) / "hub")
        out["write_hub_folder (s)"] = time.perf_counter() - start
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--name", default="benchmark_cli")
    args = parser.parse_args()

    start_times = startup(args.repeats)
    output_times = coreset_output(args.rows, args.dim, args.n)
    payload = {"config": vars(args), "startup_median_s": start_times, "coreset_output": output_times}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=2))
    lines = [
        f"# {args.name}",
        "",
        "Shared 2-core machine: absolute times are noisy, compare rows within this run.",
        "",
        f"## Start-up (median of {args.repeats} fresh processes)",
        "",
        "| command | wall (s) |",
        "|---|---|",
        *[f"| `{k}` | {v:.3f} |" for k, v in start_times.items()],
        "",
        f"## Coreset output (N={args.rows}, m={args.dim}, n={args.n})",
        "",
        "| step | wall (s) |",
        "|---|---|",
        *[f"| {k} | {v:.3f} |" for k, v in output_times.items()],
        "",
    ]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
