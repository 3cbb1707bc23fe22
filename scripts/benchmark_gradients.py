"""Benchmark of the gradient layer: sketched per-example gradients vs a plain training step.

On a BERT-like model built from a config (random weights; default hidden 256, 4 layers, seq 64,
batch 32) it times, per 1,000 examples:

- ``forward``: a plain eval forward under ``torch.no_grad()`` (the yardstick of head extraction);
- ``train_step``: forward + backward + AdamW step of the full model (train mode), the paper-style
  "one epoch of finetuning" unit;
- ``train_step_lora``: the same for a peft LoRA model (only LoRA trainable);
- ``head_structured``: ``GradientSketcher(params="head")`` (structured engine);
- ``lora_structured``: ``GradientSketcher(params="lora")`` with the structured engine;
- ``lora_generic``: ``GradientSketcher(params="lora", engine="generic")`` (torch.func vmap);

each returning the sketches on the CPU. Settings run in interleaved rounds (A B C ... A B C ...); a ratio
is the median over rounds of the per-round ratio (the two settings ran back to back), so a load spike on
the shared machine hits both sides alike. The ratios are the result; absolute times are noisy.

Peak memory: each setting also runs alone in a fresh subprocess (two batches) and reports the peak above
the memory held once the model and batch exist: ``torch.cuda.max_memory_allocated`` on CUDA, the peak
resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) on CPU. It includes one-time costs
(optimizer state, sketch matrices) and, on CPU, allocator noise of a few MiB.

Usage::

    python scripts/benchmark_gradients.py                       # CPU defaults, writes scripts/results/
    python scripts/benchmark_gradients.py --hidden 768 --layers 12 --batch 64 --device cuda  # larger, GPU

Targets (issue 5): LoRA extraction + sketch <= 1.5x a training step; head extraction <= 1.1x a forward.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch

SETTINGS = ("forward", "train_step", "train_step_lora", "head_structured", "lora_structured", "lora_generic")
RESULTS = Path(__file__).resolve().parent / "results"


def build(args: argparse.Namespace, setting: str):
    """Model (plain or LoRA) and a fixed random batch on ``args.device``."""
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 64),
        intermediate_size=4 * args.hidden,
        max_position_embeddings=max(512, args.seq),
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    if "lora" in setting:
        model = get_peft_model(
            model,
            LoraConfig(
                r=args.lora_r,
                lora_alpha=2 * args.lora_r,
                target_modules=["query", "value"],
                task_type="SEQ_CLS",
            ),
        )
        with torch.no_grad():  # as after some finetuning: B != 0, so A's gradient is not identically 0
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.02)
    model.to(args.device)
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(args.seq // 2, args.seq + 1, (args.batch,), generator=gen)
    mask = (torch.arange(args.seq)[None] < lengths[:, None]).long()
    batch = {
        "input_ids": torch.randint(5, args.vocab, (args.batch, args.seq), generator=gen) * mask,
        "attention_mask": mask,
        "labels": torch.randint(0, 2, (args.batch,), generator=gen),
    }
    return model, {k: v.to(args.device) for k, v in batch.items()}


def make_step(args: argparse.Namespace, setting: str):
    """A zero-argument callable running one batch of ``setting``."""
    from hf_skmm.gradients import GradientConfig, GradientSketcher
    from hf_skmm.sketch import SketchConfig

    model, batch = build(args, setting)
    sketch = SketchConfig(kind=args.sketch, dim=args.dim, seed=0)
    rows = torch.arange(args.batch)
    if setting == "forward":
        model.eval()
        inputs = {k: v for k, v in batch.items() if k != "labels"}

        def step():
            with torch.no_grad():
                return model(**inputs).logits

        return step
    if setting.startswith("train_step"):
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

        def step():
            loss = model(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

        return step
    params = "head" if setting.startswith("head") else "lora"
    engine = setting.split("_")[1]
    sketcher = GradientSketcher(model, GradientConfig(params=params, engine=engine), sketch)

    def step():
        return sketcher(batch, row_indices=rows)

    return step


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _proc_status(key: str) -> float:
    """A ``/proc/self/status`` entry in MiB (Linux)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_memory(args: argparse.Namespace, setting: str) -> float:
    """Peak memory (MiB) of ``args.batches`` steps of ``setting`` above the state right after building it."""
    # measured from right after the model and batch exist, so one-time costs of the setting (optimizer
    # state, sketch matrices, vmap tracing) count; the first step is included
    step = make_step(args, setting)
    n = max(2, args.batches)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(n):
            step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    base = _proc_status("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM to the current RSS
        fh.write("5")
    for _ in range(n):
        step()
    return _proc_status("VmHWM") - base


def run_timing(args: argparse.Namespace) -> dict[str, list[float]]:
    steps = {s: make_step(args, s) for s in args.settings}
    for step in steps.values():  # warm-up (vmap tracing, sketch generation, optimizer state)
        step()
        _sync(args.device)
    times: dict[str, list[float]] = {s: [] for s in steps}
    for r in range(args.rounds):
        for s, step in steps.items():
            _sync(args.device)
            t0 = time.perf_counter()
            for _ in range(args.batches):
                step()
            _sync(args.device)
            times[s].append((time.perf_counter() - t0) / (args.batches * args.batch) * 1000)
        print(
            f"round {r + 1}/{args.rounds}: " + ", ".join(f"{s} {times[s][-1]:.2f}s" for s in steps),
            flush=True,
        )
    return times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--sketch", default="kronecker", choices=["kronecker", "gaussian", "sparse_sign"])
    parser.add_argument("--dim", type=int, default=512, help="sketch dimension m")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved timing rounds (median reported)")
    parser.add_argument("--batches", type=int, default=1, help="batches per setting per round")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--no-memory", action="store_true", help="skip the per-setting memory runs")
    parser.add_argument("--memory-only", default=None, help=argparse.SUPPRESS)  # child process mode
    parser.add_argument("--out", default=str(RESULTS / "benchmark_gradients"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.memory_only:
        print(json.dumps({"peak_mib": measure_memory(args, args.memory_only)}))
        return {}

    times = run_timing(args)
    med = {s: statistics.median(v) for s, v in times.items()}
    memory: dict[str, float | None] = {}
    for s in args.settings:
        if args.no_memory:
            memory[s] = None
            continue
        child = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--memory-only", s]
        out = subprocess.run(child, capture_output=True, text=True, check=True).stdout
        memory[s] = json.loads(out.strip().splitlines()[-1])["peak_mib"]

    def ratio(a: str, b: str) -> float | None:
        # median of the per-round ratios: both settings ran back to back in each round (paired under load)
        if a not in times or b not in times:
            return None
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    ratios = {
        "head_structured / forward": ratio("head_structured", "forward"),
        "lora_structured / train_step": ratio("lora_structured", "train_step"),
        "lora_structured / train_step_lora": ratio("lora_structured", "train_step_lora"),
        "lora_generic / train_step": ratio("lora_generic", "train_step"),
        "lora_generic / train_step_lora": ratio("lora_generic", "train_step_lora"),
        "head_structured / train_step": ratio("head_structured", "train_step"),
    }
    targets = {
        "head_structured / forward <= 1.1": (ratios["head_structured / forward"] or 99) <= 1.1,
        "lora_structured / train_step <= 1.5": (ratios["lora_structured / train_step"] or 99) <= 1.5,
    }
    result = {
        "config": {k: v for k, v in vars(args).items() if k not in ("memory_only", "out")},
        "machine": {
            "device": args.device,
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "seconds_per_1000_examples_median": med,
        "seconds_per_1000_examples_all_rounds": times,
        "peak_memory_mib_above_model": memory,
        "ratios": ratios,
        "targets_met": targets,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out.with_suffix(".json"))
    lines = [
        "# Gradient extraction benchmark",
        "",
        f"BERT-like model from config: hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}, seq {args.seq} "
        f"(random lengths {args.seq // 2}-{args.seq}), batch {args.batch}; LoRA r={args.lora_r} on query/value; "
        f"sketch {args.sketch} m={args.dim}. Device {args.device}, {args.threads} thread(s), "
        f"{args.rounds} interleaved rounds x {args.batches} batch(es); times are medians over rounds, ratios are "
        "medians of the per-round ratios. Load average at the end of the run: "
        f"{result['machine']['load_average_1m']}. The machine is shared: absolute times are noisy; the ratios "
        "were measured side by side in one run.",
        "",
        "| setting | s / 1,000 examples | x forward | x train step (full) | peak memory above model (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in args.settings:
        mem = memory[s]
        fwd = f"{ratio(s, 'forward'):.2f}" if "forward" in med else "-"
        trn = f"{ratio(s, 'train_step'):.2f}" if "train_step" in med else "-"
        lines.append(f"| {s} | {med[s]:.2f} | {fwd} | {trn} | {'-' if mem is None else f'{mem:.0f}'} |")
    lines += ["", "Ratios:", ""]
    lines += [f"- {k}: {'-' if v is None else f'{v:.2f}'}" for k, v in ratios.items()]
    lines += ["", "Targets:", ""]
    lines += [f"- {k}: {'met' if ok else 'NOT met'}" for k, ok in targets.items()]
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out.with_suffix(".md"))
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
