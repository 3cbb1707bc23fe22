"""``hf-skmm train``: finetune on an exported coreset directory and evaluate on a held-out split.

The coreset directory is what ``hf-skmm export`` / ``hf-skmm run`` write (``save_to_disk`` data with
``text``, ``label``, ``skmm_index``, ``skmm_weight`` + ``selection/``). ``--weighted`` uses ``skmm_weight``
as per-example loss weights (normalised to mean 1). Writes ``metrics.json`` and the trained weights
(the linear head, or the peft adapter + head) to ``--output_dir``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from hf_skmm.cli.errors import handle_user_errors

PROG = "hf-skmm train"
METRICS_FILE = "metrics.json"


@dataclass
class TrainCommandArguments:
    """Options of ``hf-skmm train`` (the optimisation settings are ``TrainConfig``'s flags)."""

    coreset_dir: str | None = field(default=None, metadata={"help": "Exported coreset directory (required)."})
    output_dir: str = field(
        default="hf_skmm_outputs/train", metadata={"help": "Where metrics.json and the trained weights go."}
    )
    eval_dataset_path: str | None = field(
        default=None,
        metadata={
            "help": "Held-out data (save_to_disk dir or csv/json/parquet) with text + label columns; "
            "default: the VADER test split of --task (the split the recipe's coresets come from)."
        },
    )
    eval_split: str | None = field(default=None, metadata={"help": "Split of --eval_dataset_path to use."})
    task: str = field(
        default="regression",
        metadata={"help": "'regression' or 'classification'.", "choices": ["regression", "classification"]},
    )
    mode: str = field(
        default="linear_probe",
        metadata={"help": "'linear_probe' or 'lora'.", "choices": ["linear_probe", "lora"]},
    )
    model_path: str | None = field(
        default=None, metadata={"help": "Encoder folder (default: all-MiniLM-L6-v2 from hf-skmm[examples])."}
    )
    pooling: str = field(default="mean", metadata={"help": "Linear-probe pooling: 'mean' or 'pooler'."})
    max_length: int = field(default=16, metadata={"help": "Tokenizer truncation length."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (mode=lora)."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (mode=lora)."})
    split_seed: int = field(default=0, metadata={"help": "Seed of the VADER split (default eval data only)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace output_dir if it exists."})

    def __post_init__(self) -> None:
        if not self.coreset_dir:
            raise ValueError(
                "coreset_dir is required; pass --coreset_dir PATH (a directory from hf-skmm export/run)."
            )


def run_train(args, train_config) -> dict:
    """Train on ``args.coreset_dir``; returns the metrics (also written to ``output_dir/metrics.json``)."""
    import json
    from pathlib import Path

    from datasets import DatasetDict, load_from_disk

    from hf_skmm.integrations.data import load_vader
    from hf_skmm.integrations.io import atomic_output_dir, check_output_dir, load_dataset_from_path
    from hf_skmm.integrations.recipe import RecipeConfig, prepare_task
    from hf_skmm.integrations.trainer import train_and_evaluate

    check_output_dir(args.output_dir, overwrite=args.overwrite)
    if not Path(args.coreset_dir).is_dir():
        raise FileNotFoundError(
            f"coreset_dir={args.coreset_dir!r} does not exist; pass an exported coreset directory."
        )
    coreset = load_from_disk(args.coreset_dir).with_format(None)
    if args.eval_dataset_path is None:
        test = load_vader(args.task, seed=args.split_seed)["test"]
    else:
        test = load_dataset_from_path(args.eval_dataset_path, split=args.eval_split)
    if args.task == "classification" and "label" in test.features:
        coreset = coreset.cast_column("label", test.features["label"])
    recipe = RecipeConfig(
        task=args.task,
        mode=args.mode,
        n=len(coreset),
        model_path=args.model_path,
        pooling=args.pooling,
        max_length=args.max_length,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
    )
    prepared = prepare_task(recipe, data=DatasetDict(train=coreset, test=test))
    model = prepared.build_model(train_config.seed)
    with atomic_output_dir(args.output_dir, overwrite=args.overwrite) as tmp:
        scores = train_and_evaluate(
            model,
            prepared.train,
            prepared.test,
            prepared.task,
            prepared.input_columns,
            train_config,
            output_dir=str(tmp / "trainer"),
            base_collator=prepared.base_collator,
            disable_tqdm=False,
        )
        if args.mode == "lora":
            model.save_pretrained(str(tmp / "adapter"))
        else:
            from safetensors.torch import save_file

            save_file(
                {k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "head.safetensors")
            )
        payload = {
            "coreset_dir": args.coreset_dir,
            "num_train": len(coreset),
            "num_test": len(test),
            **scores,
        }
        (tmp / METRICS_FILE).write_text(json.dumps(payload, indent=2))
        import shutil

        shutil.rmtree(tmp / "trainer", ignore_errors=True)
    return payload


@handle_user_errors(PROG)
def main(argv: Sequence[str]) -> int:
    from hf_skmm.cli.parsing import parse_dataclasses
    from hf_skmm.integrations.trainer import TrainConfig

    (args, train_config), _ = parse_dataclasses(
        [TrainCommandArguments, TrainConfig],
        argv,
        prog=PROG,
        description="Finetune on an exported coreset (optionally weighted by skmm_weight) and evaluate.",
    )
    payload = run_train(args, train_config)
    metrics = {k: round(v, 4) for k, v in payload.items() if isinstance(v, float)}
    print(f"trained on {payload['num_train']} examples, tested on {payload['num_test']}: {metrics}")
    print(f"outputs: {args.output_dir}/{METRICS_FILE}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
