"""``hf-skmm extract``: sketch the per-example gradients of a model over a dataset → sketch dataset dir.

Runs as is on one process, and under ``accelerate launch`` / ``torchrun`` on several (every process
computes a contiguous share of the rows; the main process writes the output directory). The output is a
``save_to_disk`` dataset with the columns ``skmm_index`` and ``skmm_sketch`` and the provenance record
(source fingerprint, model, adapter, configs) that ``hf-skmm select`` / ``export`` check.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from hf_skmm.cli.errors import handle_user_errors, require_paths

PROG = "hf-skmm extract"
COMMAND_FILE = "command.txt"  # read by 'hf-skmm select' for the card's "how to reproduce"


@dataclass
class ExtractArguments:
    """Inputs and output of ``hf-skmm extract`` (the gradient, sketch and extraction options are separate)."""

    model_path: str | None = field(
        default=None,
        metadata={
            "help": "save_pretrained directory of the model, or of a peft adapter whose base is local (required)."
        },
    )
    adapter_path: str | None = field(
        default=None, metadata={"help": "Optional peft adapter directory applied on top of model_path."}
    )
    dataset_path: str | None = field(
        default=None,
        metadata={
            "help": "Source dataset: a save_to_disk directory or a local csv/json/jsonl/parquet file (required)."
        },
    )
    split: str | None = field(
        default=None,
        metadata={"help": "Split of dataset_path to use when it holds several (default: train)."},
    )
    output_dir: str | None = field(
        default=None,
        metadata={"help": "Where to write the sketch dataset (must not exist unless --overwrite)."},
    )
    cpu: bool = field(default=False, metadata={"help": "Run on CPU even when an accelerator is available."})
    overwrite: bool = field(default=False, metadata={"help": "Replace output_dir if it exists."})

    def __post_init__(self) -> None:
        require_paths(self, "model_path", "dataset_path", "output_dir")


def run_extract(args, gradient_config, sketch_config, extract_config, command: str | None = None):
    """Extract the sketches described by the configs and write them to ``args.output_dir``."""
    from accelerate import PartialState

    from hf_skmm.integrations.extract import extract_sketches
    from hf_skmm.integrations.io import (
        atomic_output_dir,
        check_output_dir,
        load_dataset_from_path,
        load_model_from_path,
    )

    state = PartialState(cpu=args.cpu)
    check_output_dir(args.output_dir, overwrite=args.overwrite)
    dataset = load_dataset_from_path(args.dataset_path, split=args.split)
    model, tokenizer, _ = load_model_from_path(args.model_path, adapter_path=args.adapter_path)
    sketched = extract_sketches(
        model,
        dataset,
        gradient_config,
        sketch_config,
        tokenizer=tokenizer,
        accelerator=state,
        **extract_config.to_kwargs(),
    )
    if state.is_main_process:
        with atomic_output_dir(args.output_dir, overwrite=args.overwrite) as tmp:
            sketched.save_to_disk(str(tmp))
            if command:
                (tmp / COMMAND_FILE).write_text(command + "\n", encoding="utf-8")
    state.wait_for_everyone()
    return sketched


@handle_user_errors(PROG)
def main(argv: Sequence[str]) -> int:
    from hf_skmm.cli.parsing import parse_dataclasses
    from hf_skmm.gradients import GradientConfig
    from hf_skmm.integrations.extract import ExtractConfig
    from hf_skmm.sketch import SketchConfig

    (args, gradient_config, sketch_config, extract_config), _ = parse_dataclasses(
        [ExtractArguments, GradientConfig, SketchConfig, ExtractConfig],
        argv,
        prog=PROG,
        description="Sketch the per-example gradients of a model over a dataset and write the sketch "
        "dataset (skmm_index, skmm_sketch + provenance) to --output_dir. Works under 'accelerate launch'.",
    )
    sketched = run_extract(
        args,
        gradient_config,
        sketch_config,
        extract_config,
        command=shlex.join(["hf-skmm", "extract", *argv]),
    )
    from accelerate import PartialState

    if PartialState().is_main_process:
        m = len(sketched[0]["skmm_sketch"]) if len(sketched) else 0
        print(f"wrote sketches of {len(sketched)} rows (m={m}) to {args.output_dir}")
    return 0
