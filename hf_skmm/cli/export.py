"""``hf-skmm export``: cut the coreset out of the source dataset → coreset directory (+ the Hub).

The coreset directory is a ``save_to_disk`` dataset (``datasets.load_from_disk`` reads it) with the
selection under ``selection/`` and the dataset card as ``README.md``. ``--push_to_hub USER/NAME``
also uploads it (private unless ``--private false``); ``--hub_folder DIR`` writes the exact files of
that upload locally instead (``datasets.load_dataset(DIR)`` reads them).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from hf_skmm.cli.errors import handle_user_errors, require_paths

PROG = "hf-skmm export"


@dataclass
class ExportArguments:
    """Options of ``hf-skmm export``."""

    dataset_path: str | None = field(
        default=None,
        metadata={
            "help": "Source dataset: a save_to_disk directory or a local csv/json/parquet file (required)."
        },
    )
    selection_dir: str | None = field(
        default=None, metadata={"help": "Selection directory written by 'hf-skmm select' (required)."}
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Where to write the coreset (must not exist unless --overwrite)."}
    )
    split: str | None = field(
        default=None,
        metadata={"help": "Split of dataset_path to use when it holds several (default: train)."},
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Name of the source dataset recorded in the card (default: dataset_path)."},
    )
    dataset_revision: str | None = field(
        default=None,
        metadata={"help": "Hub revision (commit / tag) of the source dataset, recorded in the card."},
    )
    push_to_hub: str | None = field(
        default=None,
        metadata={"help": "Also push the coreset and its card to this Hub dataset repo (USER/NAME)."},
    )
    private: bool = field(default=True, metadata={"help": "Create the Hub repository private."})
    hub_folder: str | None = field(
        default=None,
        metadata={
            "help": "Also write the files a Hub push would upload (data/*.parquet + README.md) to this folder."
        },
    )
    overwrite: bool = field(
        default=False, metadata={"help": "Replace output_dir (and hub_folder) if they exist."}
    )

    def __post_init__(self) -> None:
        require_paths(self, "dataset_path", "selection_dir", "output_dir")
        if self.push_to_hub is not None and self.push_to_hub.count("/") > 1:
            raise ValueError(f"push_to_hub must be a repo id USER/NAME, got {self.push_to_hub!r}.")


def run_export(args: ExportArguments, command: str | None = None):
    """Write the coreset described by ``args``; returns ``(coreset, card)``."""
    from pathlib import Path

    from hf_skmm.integrations.card import build_card
    from hf_skmm.integrations.coreset import (
        check_sketches_match,
        coreset_from_selection,
        push_coreset_to_hub,
        save_coreset,
        write_hub_folder,
    )
    from hf_skmm.integrations.io import check_output_dir, load_dataset_from_path
    from hf_skmm.selection import SelectionResult

    check_output_dir(args.output_dir, overwrite=args.overwrite)
    if args.hub_folder:
        check_output_dir(args.hub_folder, overwrite=args.overwrite, name="hub_folder")
    if not Path(args.selection_dir).is_dir():
        raise FileNotFoundError(
            f"selection_dir={args.selection_dir!r} does not exist; pass the output_dir of 'hf-skmm select'."
        )
    dataset = load_dataset_from_path(args.dataset_path, split=args.split)
    result = SelectionResult.load(args.selection_dir)
    info = result.info
    num_rows = info.get("source_num_rows")
    if num_rows is None:
        raise ValueError(
            f"selection_dir={args.selection_dir!r} does not record the size of its source dataset; "
            "pass a directory written by 'hf-skmm select'."
        )
    check_sketches_match(dataset, int(num_rows), info.get("source_fingerprint"))
    coreset = coreset_from_selection(dataset, result)
    commands = [*(info.get("commands") or []), *([command] if command else [])]
    card = build_card(
        result,
        source_dataset=args.dataset_name or args.dataset_path,
        source_fingerprint=getattr(dataset, "_fingerprint", None),
        source_revision=args.dataset_revision,
        num_source_rows=len(dataset),
        reproduce_command=" && \\\n".join(commands) if commands else None,
    )
    save_coreset(coreset, result, args.output_dir, card=card, overwrite=args.overwrite)
    if args.hub_folder:
        write_hub_folder(coreset, card, args.hub_folder, overwrite=args.overwrite)
    if args.push_to_hub:
        push_coreset_to_hub(coreset, card, args.push_to_hub, private=args.private)
    return coreset, card


@handle_user_errors(PROG)
def main(argv: Sequence[str]) -> int:
    from hf_skmm.cli.parsing import parse_dataclasses

    (args,), _ = parse_dataclasses(
        [ExportArguments],
        argv,
        prog=PROG,
        description="Cut the selected rows out of the source dataset and write the coreset (dataset + "
        "selection + README.md card) to --output_dir; optionally push it to the Hub.",
    )
    coreset, _ = run_export(args, command=shlex.join(["hf-skmm", "export", *argv]))
    print(f"wrote a coreset of {len(coreset)} rows to {args.output_dir}", file=sys.stdout)
    if args.push_to_hub:
        print(f"pushed to https://huggingface.co/datasets/{args.push_to_hub}", file=sys.stdout)
    return 0
