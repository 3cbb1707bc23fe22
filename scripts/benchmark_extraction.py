"""Benchmark of the extraction pipeline: ``extract_sketches`` vs the bare gradient-layer loop vs a Trainer epoch.

On a BERT-like classifier built from a config (random weights; default hidden 128, 4 layers, LoRA r=8 on
query/value) over ``--rows`` in-code texts of ~40 words, batch 32, it measures examples/s of:

- ``bare_loop``: tokenise + ``DataCollatorWithPadding`` + ``GradientSketcher(params="lora")`` in a plain
  Python loop, sketches stacked in memory (what extraction costs without any machinery);
- ``extract_cold``: ``extract_sketches`` with an empty cache (Dataset.map in chunks, Arrow writes, manifest,
  fingerprint incl. the model hash): the overhead over ``bare_loop`` is the cost of the machinery
  (issue 6 target: <= 10%);
- ``extract_warm``: the second call, served from the cache (no model call);
- ``trainer_epoch``: one epoch of ``transformers.Trainer`` on the same LoRA model, data, collator and batch
  size (train mode, AdamW) -- issue 6 target: extraction time <= 1.5x this epoch;
- ``processes``: ``extract_sketches`` launched as 1 process and as 2 CPU processes (``torchrun``; gloo),
  1 torch thread per process, timed inside the workers between two barriers.

Settings run in interleaved rounds (A B C D, A B C D, ...) and the median is reported, so a load spike on
the shared machine hits every setting alike. The *ratios* measured side by side are the result; absolute
times are noisy (the development machine has 2 cores shared with other jobs).

Usage::

    python scripts/benchmark_extraction.py                  # CPU defaults, writes scripts/results/
    python scripts/benchmark_extraction.py --rows 4096 --hidden 256 --device cuda   # larger, on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def build(args: argparse.Namespace):
    """(LoRA model, raw-text dataset, tokenizer, gradient config, sketch config), identical in every process."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    from hf_skmm import GradientConfig, SketchConfig
    from hf_skmm.testing import VOCAB, tiny_texts, tiny_tokenizer

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 32),
        intermediate_size=4 * args.hidden,
        max_position_embeddings=128,
        num_labels=2,
        pad_token_id=VOCAB["[PAD]"],
    )
    model = get_peft_model(
        BertForSequenceClassification(config),
        LoraConfig(r=args.lora_r, target_modules=["query", "value"], task_type="SEQ_CLS"),
    )
    raw = tiny_texts(4 * args.rows, seed=0)
    texts = [" ".join(raw["text"][4 * i : 4 * i + 4]) for i in range(args.rows)]
    labels = [int(sum(raw["label"][4 * i : 4 * i + 4]) >= 2) for i in range(args.rows)]
    dataset = Dataset.from_dict({"text": texts, "label": labels})
    return (
        model,
        dataset,
        tiny_tokenizer(),
        GradientConfig(params="lora", target="loss"),
        SketchConfig(kind=args.sketch, dim=args.dim, seed=0),
    )


def time_bare_loop(args, model, dataset, tokenizer, gc, sc) -> tuple[float, float]:
    from transformers import DataCollatorWithPadding

    from hf_skmm import GradientSketcher

    model.to(args.device).eval()
    collator = DataCollatorWithPadding(tokenizer)
    start, cpu = time.perf_counter(), time.process_time()
    sketcher = GradientSketcher(model, gc, sc)
    out = []
    for lo in range(0, len(dataset), args.batch_size):
        rows = dataset[lo : lo + args.batch_size]
        encoded = tokenizer(rows["text"])
        examples = [
            {"input_ids": i, "attention_mask": a, "labels": y}
            for i, a, y in zip(encoded["input_ids"], encoded["attention_mask"], rows["label"])
        ]
        batch = {k: v.to(args.device) for k, v in collator(examples).items()}
        out.append(sketcher(batch, torch.arange(lo, lo + len(examples))))
    torch.cat(out)
    return time.perf_counter() - start, time.process_time() - cpu


def time_extract(args, model, dataset, tokenizer, gc, sc, cache_dir: str) -> tuple[float, float]:
    from hf_skmm import extract_sketches

    start, cpu = time.perf_counter(), time.process_time()
    extract_sketches(
        model, dataset, gc, sc, tokenizer=tokenizer, batch_size=args.batch_size, cache_dir=cache_dir
    )
    return time.perf_counter() - start, time.process_time() - cpu


def time_trainer_epoch(args, model, dataset, tokenizer) -> tuple[float, float]:
    import copy

    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    tokenised = dataset.map(lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"])
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            num_train_epochs=1,
            use_cpu=args.device == "cpu",
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=copy.deepcopy(model),
            args=training_args,
            train_dataset=tokenised,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        start, cpu = time.perf_counter(), time.process_time()
        trainer.train()
        return time.perf_counter() - start, time.process_time() - cpu


def worker(args: argparse.Namespace) -> int:
    """One process of the 1-vs-2-process comparison (run directly or under torchrun)."""
    from accelerate import PartialState

    from hf_skmm import extract_sketches

    torch.set_num_threads(args.threads)
    state = PartialState(cpu=True)
    model, dataset, tokenizer, gc, sc = build(args)
    state.wait_for_everyone()
    start = time.perf_counter()
    extract_sketches(
        model, dataset, gc, sc, tokenizer=tokenizer, batch_size=args.batch_size, accelerator=state,
        cache_dir=args.cache_dir,
    )  # fmt: skip
    state.wait_for_everyone()
    elapsed = time.perf_counter() - start
    if state.is_main_process:
        Path(args.worker_out).write_text(json.dumps({"seconds": elapsed, "processes": state.num_processes}))
    return 0


def time_processes(args: argparse.Namespace, nproc: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        common = [
            __file__, "--worker", "--worker-out", out, "--cache-dir", os.path.join(tmp, "cache"),
            "--rows", str(args.rows), "--hidden", str(args.hidden), "--layers", str(args.layers),
            "--lora-r", str(args.lora_r), "--dim", str(args.dim), "--sketch", args.sketch,
            "--batch-size", str(args.batch_size), "--threads", "1",
        ]  # fmt: skip
        if nproc == 1:
            cmd = [sys.executable, *common]
        else:
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={nproc}",
                *common,
            ]
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return json.loads(Path(out).read_text())["seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--sketch", default="gaussian")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the in-process settings")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-processes", action="store_true")
    parser.add_argument("--name", default="benchmark_extraction")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    import datasets

    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)
    model, dataset, tokenizer, gc, sc = build(args)
    keys = ("bare_loop", "extract_cold", "extract_warm", "trainer_epoch")
    times: dict[str, list[float]] = {k: [] for k in keys}
    cpu_times: dict[str, list[float]] = {k: [] for k in keys}
    procs: dict[str, list[float]] = {"1_process": [], "2_processes": []}
    # warm-up (torch kernels, allocator, tokenizer) so that round 1 does not charge it to the first setting
    time_bare_loop(args, model, dataset.select(range(min(64, len(dataset)))), tokenizer, gc, sc)
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory() as cache:
            measured = {
                "bare_loop": time_bare_loop(args, model, dataset, tokenizer, gc, sc),
                "extract_cold": time_extract(args, model, dataset, tokenizer, gc, sc, cache),
                "extract_warm": time_extract(args, model, dataset, tokenizer, gc, sc, cache),
            }
        measured["trainer_epoch"] = time_trainer_epoch(args, model, dataset, tokenizer)
        for key, (wall, cpu) in measured.items():
            times[key].append(wall)
            cpu_times[key].append(cpu)
        if not args.skip_processes:
            procs["1_process"].append(time_processes(args, 1))
            procs["2_processes"].append(time_processes(args, 2))
        print(
            f"round {round_ + 1}/{args.rounds}: "
            + ", ".join(f"{k}={times[k][-1]:.2f}s wall/{cpu_times[k][-1]:.2f}s cpu" for k in keys)
        )

    med = {k: statistics.median(v) for k, v in times.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu_times.items()}

    def ratios(m: dict[str, float]) -> dict[str, float]:
        return {
            "extract_overhead_vs_bare_loop": m["extract_cold"] / m["bare_loop"] - 1.0,
            "extract_vs_trainer_epoch": m["extract_cold"] / m["trainer_epoch"],
            "warm_vs_cold": m["extract_warm"] / m["extract_cold"],
        }

    result = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "worker_out", "cache_dir")},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "note": "shared 2-core development machine: absolute times are noisy, ratios are the result",
        },
        "seconds": times,
        "median_seconds": med,
        "cpu_seconds": cpu_times,
        "median_cpu_seconds": cpu_med,
        "examples_per_second": {k: args.rows / v for k, v in med.items() if k != "extract_warm"},
        # with 1 torch thread a process's CPU time is the work it did, whatever else runs on the shared
        # machine; wall-clock ratios move by +-10% between rounds there, so the CPU ratios are the headline
        "ratios": ratios(cpu_med),
        "wall_ratios": ratios(med),
        "targets": {"extract_overhead_vs_bare_loop": "<= 0.10", "extract_vs_trainer_epoch": "<= 1.5 (LoRA)"},
    }
    if not args.skip_processes:
        pmed = {k: statistics.median(v) for k, v in procs.items()}
        result["processes"] = {
            "seconds": procs,
            "median_seconds": pmed,
            "examples_per_second": {k: args.rows / v for k, v in pmed.items()},
            "speedup_2_vs_1": pmed["1_process"] / pmed["2_processes"],
            "note": "1 torch thread per process, wall time between barriers inside the workers (startup excluded)",
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{args.name}.md").write_text(render_markdown(result))
    print(render_markdown(result))
    return 0


def render_markdown(result: dict) -> str:
    s, med, cpu, eps = (
        result["settings"],
        result["median_seconds"],
        result["median_cpu_seconds"],
        result["examples_per_second"],
    )
    ratios, wall = result["ratios"], result["wall_ratios"]
    lines = [
        "# Extraction benchmark (`scripts/benchmark_extraction.py`)",
        "",
        f"BERT-like classifier (hidden {s['hidden']}, {s['layers']} layers) + LoRA r={s['lora_r']} on query/value, "
        f"`GradientConfig(params='lora', target='loss')`, {s['sketch']} sketch m={s['dim']}; {s['rows']} texts of "
        f"~40 words, batch {s['batch_size']}, device {s['device']}, {s['threads']} torch thread(s); median of "
        f"{s['rounds']} interleaved rounds. {result['machine']['note']}.",
        "",
        "| setting | median wall s | median CPU s | examples/s (wall) |",
        "|---|---:|---:|---:|",
    ]
    for key in ("bare_loop", "extract_cold", "extract_warm", "trainer_epoch"):
        rate = f"{eps[key]:.1f}" if key in eps else "(cache hit)"
        lines.append(f"| {key} | {med[key]:.3f} | {cpu[key]:.3f} | {rate} |")
    lines += [
        "",
        "Ratios of median CPU time (1 torch thread: a process's CPU time is its own work, whatever else runs "
        "on the shared machine); wall-clock ratios in parentheses.",
        "",
        f"- machinery overhead of `extract_sketches` over the bare gradient-layer loop: "
        f"**{100 * ratios['extract_overhead_vs_bare_loop']:+.1f}%** "
        f"({100 * wall['extract_overhead_vs_bare_loop']:+.1f}% wall; target <= +10%)",
        f"- `extract_sketches` time / one Trainer epoch (LoRA): **{ratios['extract_vs_trainer_epoch']:.2f}x** "
        f"({wall['extract_vs_trainer_epoch']:.2f}x wall; target <= 1.5x)",
        f"- second call (cache hit) / first call: {ratios['warm_vs_cold']:.3f} ({wall['warm_vs_cold']:.3f} wall)",
    ]
    if "processes" in result:
        p = result["processes"]
        lines += [
            f"- 1 vs 2 CPU processes (torchrun, gloo, 1 thread each): "
            f"{p['examples_per_second']['1_process']:.1f} vs {p['examples_per_second']['2_processes']:.1f} "
            f"examples/s, speed-up **{p['speedup_2_vs_1']:.2f}x** ({p['note']})",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
