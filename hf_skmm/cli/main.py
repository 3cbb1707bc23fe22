"""Entry point of the ``hf-skmm`` command.

Each sub-command is a module under ``hf_skmm.cli`` registered in ``COMMANDS`` as
``name -> (module, one-line help)``. A command module exposes ``main(argv: list[str]) -> int`` and
builds its own parser (usually with :func:`hf_skmm.cli.parsing.parse_dataclasses`, so config
dataclasses come from ``HfArgumentParser`` and ``--config file.yaml``). Modules are imported only
when their command runs, which keeps ``hf-skmm --help`` fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hf_skmm import __version__

# name -> (module path, one-line help). Order is the order shown by --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "extract": ("hf_skmm.cli.extract", "sketch the per-example gradients of a model over a dataset"),
    "select": ("hf_skmm.cli.select", "select a coreset from a sketch dataset (+ report and spectrum plot)"),
    "export": ("hf_skmm.cli.export", "write the coreset dataset + card (optionally push it to the Hub)"),
    "methods": ("hf_skmm.cli.methods", "list the registered selection methods"),
    "run": (
        "hf_skmm.cli.run",
        "the end-to-end recipe on real offline data: SkMM coreset vs uniform (README's main job)",
    ),
    "train": ("hf_skmm.cli.train", "finetune on an exported coreset (optionally weighted) and evaluate"),
}


def build_parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS), default=0)
    listing = "\n".join(f"  {name:<{width}}  {help_text}" for name, (_, help_text) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="hf-skmm",
        description="Sketchy Moment Matching (SkMM): select a small, representative finetuning subset\n"
        "of a Hugging Face dataset from sketched per-example gradients.",
        epilog=f"commands:\n{listing}\n\nRun 'hf-skmm COMMAND --help' for the options of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hf-skmm {__version__}")
    parser.add_argument(
        "command", nargs="?", choices=list(COMMANDS), metavar="COMMAND", help="the command to run (below)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # everything after the command name belongs to the command's own parser
    head = argv[:1] if argv and not argv[0].startswith("-") else argv
    args = build_parser().parse_args(head)
    if args.command is None:
        build_parser().print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
