"""Worker for the extraction tests that need separate processes (multi-process run, kill-and-resume).

Run as ``python tests/mp_extract_worker.py --cache-dir D --out O [...]`` (one process) or under
``torchrun --nproc_per_node 2 tests/mp_extract_worker.py ...``. Every process writes
``O/rank{r}.npz`` (skmm_index, skmm_sketch, rows it sketched itself) so the test can check that every
process returns the same Dataset. ``--sleep`` slows every batch down so a test can kill the run mid-way.

Also importable: :class:`CountingSketcher` is the stand-in gradient layer used by the machinery tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class CountingSketcher:
    """Stand-in for ``GradientSketcher``: a deterministic function of the model output and the row index.

    ``sketch[i] = logits_i @ P + 0.01 * row_i`` with ``P`` drawn from ``sketch_config.seed``; for token-level
    logits the masked mean over tokens is used, so padding does not change the result. Counts the rows
    it sketched (class attribute, so tests can read it through ``extract_sketches``).
    """

    rows_seen = 0
    sleep = 0.0

    def __init__(self, model, gradient_config, sketch_config):
        self.model = model
        self.gradient_config, self.sketch_config = gradient_config, sketch_config
        self.out_dim = int(sketch_config.dim)
        self.seed = int(sketch_config.seed)

    def identity(self) -> dict:
        from hf_skmm.integrations.fingerprint import to_jsonable

        return {"stand_in": True, "configs": to_jsonable([self.gradient_config, self.sketch_config])}

    def __call__(self, batch, row_indices):
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "features")}
        with torch.no_grad():
            out = self.model(**inputs)
        logits = getattr(out, "logits", out).float()
        if logits.dim() == 3:
            mask = batch.get("attention_mask", torch.ones(logits.shape[:2]))
            mask = mask.to(logits).unsqueeze(-1)
            logits = (logits * mask).sum(1) / mask.sum(1)
        gen = torch.Generator().manual_seed(self.seed)
        proj = torch.randn(logits.shape[-1], self.out_dim, generator=gen)
        type(self).rows_seen += len(row_indices)
        if self.sleep:
            time.sleep(self.sleep)
        return (logits.cpu() @ proj) + 0.01 * row_indices.to(torch.float32)[:, None]


@dataclass
class FakeGradientConfig:
    """Stand-in for GradientConfig (only the fields the extraction reads)."""

    target: str = "loss"
    params: str = "head"


@dataclass
class FakeSketchConfig:
    """Stand-in for SketchConfig."""

    dim: int = 6
    seed: int = 0


def build_inputs(num_rows: int, sketcher: str, dim: int = 6):
    """Tiny BERT classifier + raw-text dataset + configs, identical in every process (seeded)."""
    from datasets import Dataset

    from hf_skmm.testing import tiny_bert_classifier, tiny_texts

    model = tiny_bert_classifier(num_labels=2, seed=0)
    dataset = Dataset.from_dict(tiny_texts(num_rows, seed=1))
    if sketcher == "fake":
        return model, dataset, FakeGradientConfig(), FakeSketchConfig(dim=dim)
    from hf_skmm.gradients import GradientConfig
    from hf_skmm.sketch import SketchConfig

    return model, dataset, GradientConfig(params="head", target="loss"), SketchConfig(dim=dim, seed=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--rows-per-chunk", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--sketcher", choices=["fake", "real"], default="real")
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    from accelerate import PartialState

    from hf_skmm.integrations import extract
    from hf_skmm.testing import tiny_tokenizer

    state = PartialState(cpu=True)
    model, dataset, gradient_config, sketch_config = build_inputs(args.rows, args.sketcher)
    if args.sketcher == "fake":
        CountingSketcher.sleep = args.sleep
        extract._build_sketcher = CountingSketcher
        counter = CountingSketcher
    else:
        real_build = extract._build_sketcher
        counter = type("Counter", (), {"rows_seen": 0})

        def counting_build(model, gc, sc):
            sketcher = real_build(model, gc, sc)
            call = sketcher.__call__

            class Wrapped:
                out_dim = sketcher.out_dim
                identity = staticmethod(sketcher.identity)

                def __call__(self, batch, rows):
                    counter.rows_seen += len(rows)
                    if args.sleep:
                        time.sleep(args.sleep)
                    return call(batch, rows)

            return Wrapped()

        extract._build_sketcher = counting_build

    sketched = extract.extract_sketches(
        model,
        dataset,
        gradient_config,
        sketch_config,
        tokenizer=tiny_tokenizer(),
        batch_size=args.batch_size,
        accelerator=state,
        cache_dir=args.cache_dir,
        rows_per_chunk=args.rows_per_chunk,
    )
    table = sketched.with_format("numpy")[:]
    os.makedirs(args.out, exist_ok=True)
    np.savez(
        os.path.join(args.out, f"rank{state.process_index}.npz"),
        index=table["skmm_index"],
        sketch=table["skmm_sketch"],
        rows_seen=np.int64(counter.rows_seen),
        num_processes=np.int64(state.num_processes),
    )
    state.wait_for_everyone()
    return 0


if __name__ == "__main__":
    sys.exit(main())
