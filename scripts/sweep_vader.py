"""Sweep: coreset methods x sizes x seeds on the VADER lexicon with all-MiniLM-L6-v2 (linear probing).

The headline result of hf_skmm: finetune (linear probe, transformers.Trainer) on a coreset chosen by
each method, evaluate on the held-out split, average over seeds; full-data training is the ceiling.
Every run goes through the real pipeline (``extract_sketches`` → ``select_coreset`` →
``train_and_evaluate``). Rows are appended to ``<out>/runs.jsonl`` as they finish (``--resume`` skips
rows already there), then ``<out>/table.md`` (mean ± std) and ``<out>/plot.png`` (metric vs n with
error bars) are written.

    python scripts/sweep_vader.py --task regression
    python scripts/sweep_vader.py --task classification --methods skmm uniform ridge_leverage herding kcenter margin entropy
    python scripts/sweep_vader.py --report-only --out scripts/results/sweep_vader_regression
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REG_METHODS = ["skmm", "uniform", "ridge_leverage", "herding", "kcenter"]
CLS_METHODS = [*REG_METHODS, "margin", "entropy"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="regression", choices=["regression", "classification"])
    p.add_argument("--methods", nargs="+", default=None, help="default: all baselines of the task")
    p.add_argument("--weighted", nargs="*", default=["skmm"], help="methods also trained with skmm_weight")
    p.add_argument("--sizes", nargs="+", type=int, default=[20, 50, 100, 300, 1200])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--sketch-dim", type=int, default=32)
    p.add_argument("--target", default="auto", help="GradientConfig target (auto: output / loss)")
    p.add_argument("--c-s", type=float, default=None)
    p.add_argument("--stratify", action="store_true")
    p.add_argument("--no-full", action="store_true", help="skip the full-data ceiling")
    p.add_argument("--mode", default="linear_probe", choices=["linear_probe", "lora"])
    p.add_argument("--pool-size", type=int, default=0, help="subsample the training pool (0 = all 6,004)")
    p.add_argument(
        "--learning-rate", type=float, default=None, help="default: 1e-2 (linear probe), 1e-3 (LoRA)"
    )
    p.add_argument("--min-steps", type=int, default=None, help="default: 200 (linear probe), 100 (LoRA)")
    p.add_argument("--num-epochs", type=float, default=None, help="default: 10 (linear probe), 5 (LoRA)")
    p.add_argument("--out", default=None, help="default: scripts/results/sweep_vader_<task>")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def run_key(row: dict) -> tuple:
    return (row["method"], bool(row["weighted"]), int(row["n"]), int(row["seed"]))


def sweep(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    from hf_skmm.integrations.recipe import (
        PROBABILITY_METHODS,
        RecipeConfig,
        _class_probabilities,
        extract_step,
        prepare_task,
        quiet_datasets,
        select_step,
    )
    from hf_skmm.integrations.trainer import TrainConfig, train_and_evaluate

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_file = out / "runs.jsonl"
    done = set()
    if args.resume and runs_file.exists():
        done = {run_key(json.loads(line)) for line in runs_file.read_text().splitlines() if line.strip()}
    elif runs_file.exists():
        runs_file.unlink()
    config = RecipeConfig(
        task=args.task,
        mode=args.mode,
        pool_size=args.pool_size,
        sketch_dim=args.sketch_dim,
        gradient_target=args.target,
        c_s=args.c_s,
        stratify=args.stratify,
        output_dir=str(out / "work"),
    )
    lora = args.mode == "lora"
    train_config = TrainConfig(
        learning_rate=args.learning_rate or (1e-3 if lora else 1e-2),
        min_steps=args.min_steps if args.min_steps is not None else (100 if lora else 200),
        num_epochs=args.num_epochs or (5.0 if lora else 10.0),
    )
    (out / "config.json").write_text(
        json.dumps(
            {"recipe": config.to_dict(), "train": train_config.to_dict(), "argv": sys.argv[1:]}, indent=2
        )
    )
    prepared = prepare_task(config)
    tmp_dir = str(out / "work" / "trainer")

    def record(row: dict) -> None:
        with open(runs_file, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        metric = "mse" if args.task == "regression" else "accuracy"
        print(
            f"{row['method']:>16}{'+w' if row['weighted'] else '  '} n={row['n']:>5} seed={row['seed']} "
            f"{metric}={row[metric]:.4f} c_S={row.get('c_s_achieved', float('nan')):.3g} ({row['seconds']:.1f}s)",
            flush=True,
        )

    for seed in args.seeds:
        if not args.no_full and ("full", False, len(prepared.train), seed) not in done:
            t0 = time.time()
            scores = train_and_evaluate(
                prepared.build_model(seed),
                prepared.train,
                prepared.test,
                prepared.task,
                prepared.input_columns,
                dataclasses.replace(train_config, seed=seed),
                tmp_dir,
                base_collator=prepared.base_collator,
            )
            record(
                dict(
                    method="full",
                    weighted=False,
                    n=len(prepared.train),
                    seed=seed,
                    seconds=time.time() - t0,
                    **scores,
                )
            )
        with quiet_datasets():
            t0 = time.time()
            sketched = extract_step(prepared, dataclasses.replace(config, n=max(args.sizes)), seed)
            extract_seconds = time.time() - t0
            probs = (
                _class_probabilities(prepared, seed)
                if any(m in PROBABILITY_METHODS for m in args.methods)
                else None
            )
            for n in args.sizes:
                cfg_n = dataclasses.replace(config, n=n)
                for method in args.methods:
                    variants = [False] + ([True] if method in args.weighted else [])
                    if all((method, w, n, seed) in done for w in variants):
                        continue
                    t0 = time.time()
                    coreset, result = select_step(prepared, sketched, cfg_n, method, seed, probs=probs)
                    select_seconds = time.time() - t0
                    for weighted in variants:
                        if (method, weighted, n, seed) in done:
                            continue
                        t0 = time.time()
                        scores = train_and_evaluate(
                            prepared.build_model(seed),
                            coreset,
                            prepared.test,
                            prepared.task,
                            prepared.input_columns,
                            dataclasses.replace(train_config, seed=seed, weighted=weighted),
                            tmp_dir,
                            base_collator=prepared.base_collator,
                        )
                        record(
                            dict(
                                method=method,
                                weighted=weighted,
                                n=n,
                                seed=seed,
                                c_s_achieved=float(result.info.get("c_s_achieved", float("nan"))),
                                c_s_weighted=float(result.info.get("c_s_achieved_weighted", float("nan"))),
                                select_seconds=select_seconds,
                                extract_seconds=extract_seconds,
                                seconds=time.time() - t0,
                                **scores,
                            )
                        )


def report(out: Path, task: str) -> str:
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines() if line.strip()]
    metric, second = ("mse", "pearson") if task == "regression" else ("accuracy", "macro_f1")
    better = "lower" if task == "regression" else "higher"
    sizes = sorted({r["n"] for r in rows if r["method"] != "full"})
    names = []
    for r in rows:
        name = r["method"] + ("+weighted" if r["weighted"] else "")
        if r["method"] != "full" and name not in names:
            names.append(name)

    def cell(name: str, n: int, key: str) -> tuple[float, float, int]:
        vals = [
            r[key]
            for r in rows
            if r["method"] + ("+weighted" if r["weighted"] else "") == name and r["n"] == n
        ]
        if not vals:
            return float("nan"), float("nan"), 0
        arr = np.asarray(vals, dtype=float)
        return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, len(arr)

    full = [r for r in rows if r["method"] == "full"]
    lines = []
    for key in (metric, second):
        lines += [
            f"**{key}** on the held-out split (mean ± std over seeds; {better if key == metric else 'higher'} is better)",
            "",
        ]
        lines += ["| method | " + " | ".join(f"n={n}" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
        for name in names:
            best_cells = []
            for n in sizes:
                mean, std, count = cell(name, n, key)
                best_cells.append(f"{mean:.4f} ± {std:.4f}" if count else "–")
            lines.append(f"| {name} | " + " | ".join(best_cells) + " |")
        if full:
            vals = np.asarray([r[key] for r in full], dtype=float)
            std = vals.std(ddof=1) if len(vals) > 1 else 0.0
            lines.append(
                f"| full data (N={full[0]['n']}) | "
                + " | ".join([f"{vals.mean():.4f} ± {std:.4f}"] * len(sizes))
                + " |"
            )
        lines.append("")
    lines += [
        "**c_S achieved** (median over seeds, unweighted coreset, m-dim sketches; inf = rank-deficient)",
        "",
    ]
    lines += ["| method | " + " | ".join(f"n={n}" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for name in names:
        if name.endswith("+weighted"):
            continue
        cells = []
        for n in sizes:
            vals = [
                r.get("c_s_achieved", float("nan"))
                for r in rows
                if r["method"] == name and not r["weighted"] and r["n"] == n
            ]
            cells.append(f"{np.median(vals):.3g}" if vals else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in rows})
    lines += ["", f"seeds: {seeds}; {len(rows)} training runs."]
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    plot(out, rows, names, sizes, metric, full, task)
    return text


def plot(out: Path, rows, names, sizes, metric, full, task) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, name in enumerate(names):
        means, stds, xs = [], [], []
        for n in sizes:
            vals = [
                r[metric]
                for r in rows
                if r["method"] + ("+weighted" if r["weighted"] else "") == name and r["n"] == n
            ]
            if vals:
                xs.append(n * (1 + 0.03 * (i - len(names) / 2)))  # small dodge so error bars do not overlap
                means.append(np.mean(vals))
                stds.append(np.std(vals, ddof=1) if len(vals) > 1 else 0.0)
        style = "-" if not name.endswith("+weighted") else "--"
        lw = 2.5 if name.startswith("skmm") else 1.3
        ax.errorbar(
            xs, means, yerr=stds, label=name, marker="o", ms=3, capsize=3, linestyle=style, linewidth=lw
        )
    if full:
        ax.axhline(np.mean([r[metric] for r in full]), color="k", linestyle=":", label="full data")
    ax.set_xscale("log")
    ax.set_xlabel("coreset size n (log scale)")
    ax.set_ylabel(f"test {metric}")
    mode = (
        json.loads((out / "config.json").read_text())["recipe"]["mode"]
        if (out / "config.json").exists()
        else ""
    )
    ax.set_title(f"VADER {task}, all-MiniLM-L6-v2 {mode}: coreset vs n (mean ± std over seeds)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "plot.png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if args.methods is None:
        args.methods = REG_METHODS if args.task == "regression" else CLS_METHODS
    args.out = args.out or f"scripts/results/sweep_vader_{args.task}"
    if not args.report_only:
        sweep(args)
    print(report(Path(args.out), args.task))
    return 0


if __name__ == "__main__":
    sys.exit(main())
