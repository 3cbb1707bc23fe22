"""Why does (or doesn't) SkMM beat uniform on VADER? Fast closed-form ablations of the selection knobs.

Same data, features and sketches as ``sweep_vader.py`` (linear probe on cached all-MiniLM-L6-v2
features; head gradients sketched through the real ``extract_sketches`` pipeline), but the head is
fitted in closed form (ridge regression on the coreset, ``alpha`` fixed) instead of with Trainer, so
many settings x seeds run in minutes. Ridge on the coreset is the estimator SkMM's theory is about
(Dong et al., 2024, §3); the sweep confirms the conclusions with Trainer.

    python scripts/investigate_vader.py --sizes 50 300 --seeds 0 1 2 3 4 5 6 7
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def ridge_test_mse(x, y, xt, yt, weights=None, alpha=1.0):
    xa = np.c_[x, np.ones(len(x))]
    xta = np.c_[xt, np.ones(len(xt))]
    w = np.ones(len(x)) if weights is None else weights / weights.mean()
    reg = alpha * np.eye(xa.shape[1])
    reg[-1, -1] = 0.0  # do not shrink the bias
    theta = np.linalg.solve(xa.T @ (w[:, None] * xa) + reg, xa.T @ (w * y))
    return float(np.mean((xta @ theta - yt) ** 2))


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", nargs="+", type=int, default=[50, 300])
    p.add_argument("--seeds", nargs="+", type=int, default=list(range(8)))
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--out", default="scripts/results/investigate_vader_regression")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from hf_skmm.integrations.coreset import sketch_matrix
    from hf_skmm.integrations.recipe import RecipeConfig, extract_step, prepare_task, quiet_datasets
    from hf_skmm.selection import select

    base = RecipeConfig(task="regression", output_dir=str(Path(args.out) / "work"))
    prepared = prepare_task(base)
    x = np.asarray(prepared.train["features"], dtype=np.float64)
    y = np.asarray(prepared.train["label"], dtype=np.float64)
    xt = np.asarray(prepared.test["features"], dtype=np.float64)
    yt = np.asarray(prepared.test["label"], dtype=np.float64)
    full = ridge_test_mse(x, y, xt, yt, alpha=args.alpha)
    # settings: (name, sketch target, sketch dim, method, selector kwargs)
    settings = [
        ("uniform", "output", 32, "uniform", {}),
        ("skmm m=32 target=output (default)", "output", 32, "skmm", {}),
        ("skmm m=16", "output", 16, "skmm", {}),
        ("skmm m=64", "output", 64, "skmm", {}),
        ("skmm m=128", "output", 128, "skmm", {}),
        ("skmm c_S=0.999 fixed", "output", 32, "skmm", {"c_s": 0.999}),
        ("skmm scaling=relative", "output", 32, "skmm", {"scaling": "relative"}),
        ("skmm draw=topk", "output", 32, "skmm", {"draw": "topk"}),
        ("skmm target=loss (θ=0: -2y·[h,1])", "loss", 32, "skmm", {}),
        ("ridge_leverage", "output", 32, "ridge_leverage", {}),
        ("herding", "output", 32, "herding", {}),
        ("kcenter", "output", 32, "kcenter", {}),
    ]
    rows = []
    cache: dict = {}
    with quiet_datasets():
        for seed in args.seeds:
            for name, target, dim, method, kwargs in settings:
                key = (target, dim, seed)
                if key not in cache:
                    cfg = dataclasses.replace(base, gradient_target=target, sketch_dim=dim)
                    cache[key] = sketch_matrix(extract_step(prepared, cfg, seed))
                sk = cache[key]
                for n in args.sizes:
                    res = select(sk, n, method=method, seed=seed, **kwargs)
                    mse = ridge_test_mse(x[res.indices], y[res.indices], xt, yt, alpha=args.alpha)
                    mse_w = ridge_test_mse(
                        x[res.indices], y[res.indices], xt, yt, res.weights, alpha=args.alpha
                    )
                    rows.append(
                        dict(setting=name, n=n, seed=seed, mse=mse, mse_weighted=mse_w,
                             c_s=float(res.info.get("c_s_achieved", np.nan)),
                             c_s_target=res.info.get("c_s"), feasible=res.info.get("feasible"),
                             mean_norm=float(np.linalg.norm(x[res.indices], axis=1).mean()),
                             mean_abs_y=float(np.abs(y[res.indices]).mean()))
                    )  # fmt: skip
            print(f"seed {seed} done", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=1, default=str))
    lines = [
        f"Closed-form ridge (alpha={args.alpha}) on coresets of {len(x)} VADER train words, test MSE on {len(xt)} "
        f"(mean ± std over {len(args.seeds)} seeds). Full-data ridge: {full:.4f}. "
        f"Pool: mean ‖h‖ = {np.linalg.norm(x, axis=1).mean():.3f}, mean |y| = {np.abs(y).mean():.3f}.",
        "",
        "| setting | "
        + " | ".join(
            f"n={n} MSE | n={n} MSE weighted | n={n} c_S | n={n} mean ‖h‖ / mean abs(y)" for n in args.sizes
        )
        + " |",
        "|---|" + "---|---|---|---|" * len(args.sizes),
    ]
    for name, *_ in settings:
        cells = []
        for n in args.sizes:
            r = [row for row in rows if row["setting"] == name and row["n"] == n]
            m = np.array([row["mse"] for row in r])
            mw = np.array([row["mse_weighted"] for row in r])
            cells += [
                f"{m.mean():.4f} ± {m.std(ddof=1):.4f}",
                f"{mw.mean():.4f} ± {mw.std(ddof=1):.4f}",
                f"{np.median([row['c_s'] for row in r]):.3g}",
                f"{np.mean([row['mean_norm'] for row in r]):.3f} / {np.mean([row['mean_abs_y'] for row in r]):.2f}",
            ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
