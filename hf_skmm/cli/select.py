"""``hf-skmm select``: choose n examples from a sketch dataset → selection directory + report + plot.

The output directory holds the ``SelectionResult`` (``selection.json`` + index / weight arrays),
``report.md`` (N, n, method, c_S achieved, spectrum coverage, time) and ``spectrum.png``.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from hf_skmm.cli.errors import handle_user_errors, require_paths

PROG = "hf-skmm select"
REPORT_FILE = "report.md"
PLOT_FILE = "spectrum.png"
COMMAND_FILE = "command.txt"  # written by 'hf-skmm extract' into the sketch directory


@dataclass
class SelectArguments:
    """Options of ``hf-skmm select``."""

    sketch_dir: str | None = field(
        default=None, metadata={"help": "Sketch dataset directory written by 'hf-skmm extract' (required)."}
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Where to write the selection (must not exist unless --overwrite)."}
    )
    n: int | None = field(default=None, metadata={"help": "Coreset size (give n or fraction)."})
    fraction: float | None = field(
        default=None,
        metadata={"help": "Coreset size as a share of the dataset, in (0, 1] (give n or fraction)."},
    )
    method: str = field(default="skmm", metadata={"help": "Selector; 'hf-skmm methods' lists them."})
    seed: int = field(default=0, metadata={"help": "Selection seed: the same seed gives the same coreset."})
    c_s: float | None = field(
        default=None,
        metadata={
            "help": "SkMM moment-matching target c_S in (0, 1] (smaller = stricter); default: the method's."
        },
    )
    stratify_by: str | None = field(
        default=None,
        metadata={
            "help": "Column to select within (e.g. the label): a column of the sketch dataset, else of "
            "--dataset_path (the source dataset, checked against the sketches' provenance)."
        },
    )
    dataset_path: str | None = field(
        default=None,
        metadata={
            "help": "Source dataset (save_to_disk dir or csv/json/parquet), read for --stratify_by only."
        },
    )
    split: str | None = field(default=None, metadata={"help": "Split of dataset_path when it holds several."})
    plot: bool = field(default=True, metadata={"help": "Write spectrum.png next to the result."})
    overwrite: bool = field(default=False, metadata={"help": "Replace output_dir if it exists."})

    def __post_init__(self) -> None:
        require_paths(self, "sketch_dir", "output_dir")
        if (self.n is None) == (self.fraction is None):
            raise ValueError(
                f"pass exactly one of --n or --fraction; got n={self.n!r}, fraction={self.fraction!r}."
            )
        if self.n is not None and self.n <= 0:
            raise ValueError(f"n must be a positive number of examples, got n={self.n}.")
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got fraction={self.fraction}.")
        if self.c_s is not None and not 0.0 < self.c_s <= 1.0:
            raise ValueError(f"c_s must be in (0, 1], got c_s={self.c_s}; try 0.9.")
        if self.c_s is not None and self.method != "skmm":
            raise ValueError(
                f"c_s is a target of method='skmm' only, got method={self.method!r}; drop --c_s."
            )


def _stratify_labels(sketched, args: SelectArguments):
    """Per-row labels in source row order, from the sketch dataset or the (checked) source dataset."""
    import numpy as np

    from hf_skmm.integrations.coreset import check_sketches_match, get_sketch_provenance
    from hf_skmm.integrations.io import load_dataset_from_path

    if args.stratify_by in sketched.column_names:
        columns = sketched.with_format("numpy", columns=["skmm_index", args.stratify_by])[:]
        return np.asarray(columns[args.stratify_by])[np.argsort(columns["skmm_index"])]
    if args.dataset_path is None:
        raise ValueError(
            f"stratify_by={args.stratify_by!r} is not a column of the sketch dataset {sketched.column_names}; "
            "pass --dataset_path SOURCE to read it from the source dataset."
        )
    dataset = load_dataset_from_path(args.dataset_path, split=args.split)
    check_sketches_match(
        dataset, len(sketched), (get_sketch_provenance(sketched).get("source") or {}).get("fingerprint")
    )
    if args.stratify_by not in dataset.column_names:
        raise ValueError(
            f"stratify_by={args.stratify_by!r} is not a column of dataset_path={args.dataset_path!r} "
            f"(columns: {dataset.column_names})."
        )
    return np.asarray(dataset.with_format("numpy", columns=[args.stratify_by])[:][args.stratify_by])


def run_select(args: SelectArguments, command: str | None = None) -> str:
    """Run the selection described by ``args``; returns the report text."""
    import time
    from pathlib import Path

    from datasets import load_from_disk

    from hf_skmm.integrations.coreset import select_from_sketches, sketch_matrix
    from hf_skmm.integrations.io import atomic_output_dir, check_output_dir
    from hf_skmm.integrations.report import format_report, plot_spectrum, spectrum_profile

    check_output_dir(args.output_dir, overwrite=args.overwrite)
    sketch_dir = Path(args.sketch_dir)
    if not (sketch_dir / "state.json").is_file():
        raise FileNotFoundError(
            f"sketch_dir={args.sketch_dir!r} is not a sketch dataset directory (no state.json); pass the "
            "output_dir of 'hf-skmm extract'."
        )
    sketched = load_from_disk(str(sketch_dir))
    stratify = None
    if args.stratify_by is not None:
        stratify = _stratify_labels(sketched, args)
    kwargs = {} if args.c_s is None else {"c_s": args.c_s}
    start = time.perf_counter()
    result = select_from_sketches(
        sketched,
        n=args.n,
        fraction=args.fraction,
        method=args.method,
        seed=args.seed,
        stratify=stratify,
        **kwargs,
    )
    seconds = time.perf_counter() - start
    info = result.info
    if args.c_s is not None:
        info.setdefault("c_s_target", args.c_s)
    info["stratify_by"] = args.stratify_by
    info["sketch_dir"] = str(sketch_dir.resolve())
    # the commands that made this selection, for the card's "how to reproduce"
    extract_command = sketch_dir / COMMAND_FILE
    prior = [extract_command.read_text().strip()] if extract_command.is_file() else []
    info["commands"] = [*prior, command] if command else prior
    # uniform weights, like c_s_achieved: the moments an unweighted finetuning run on the coreset sees
    profile = spectrum_profile(sketch_matrix(sketched), result.indices)
    info.setdefault("spectrum_coverage", profile["coverage"])
    report = format_report(result, profile, seconds=seconds)
    with atomic_output_dir(args.output_dir, overwrite=args.overwrite) as tmp:
        result.save(str(tmp))
        (tmp / REPORT_FILE).write_text(report, encoding="utf-8")
        if args.plot:
            plot_spectrum(profile, tmp / PLOT_FILE, info={**info, "n": len(result.indices)})
    return report


@handle_user_errors(PROG)
def main(argv: Sequence[str]) -> int:
    from hf_skmm.cli.parsing import parse_dataclasses

    (args,), _ = parse_dataclasses(
        [SelectArguments],
        argv,
        prog=PROG,
        description="Select a coreset from a sketch dataset: writes the selection (indices, weights, "
        "diagnostics), report.md and spectrum.png to --output_dir.",
    )
    report = run_select(args, command=shlex.join(["hf-skmm", "select", *argv]))
    sys.stdout.write(report)
    return 0
