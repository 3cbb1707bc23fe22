"""Entry point of the ``hf-skmm`` command.

Each sub-command lives in its own module under ``hf_skmm.cli`` and registers itself in
``COMMANDS`` below as ``name -> (module, help)``. A command module exposes
``add_arguments(parser)`` and ``run(args) -> int``; it imports transformers / datasets inside
``run`` so that ``hf-skmm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hf_skmm import __version__

# name -> (module path, one-line help). Order is the order shown by --help.
COMMANDS: dict[str, tuple[str, str]] = {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-skmm",
        description="Sketchy Moment Matching (SkMM): select a small, representative finetuning subset "
        "of a Hugging Face dataset from sketched per-example gradients.",
    )
    parser.add_argument("--version", action="version", version=f"hf-skmm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
