"""Config-dataclass parsing shared by the CLI commands (trl's ``TrlParser`` idiom).

``parse_dataclasses`` builds an ``HfArgumentParser`` over the given dataclasses, adds ``--config
FILE.yaml``, uses the YAML values as defaults and lets explicit command-line flags override them.
Unknown YAML keys are an error that names the key and the fields that exist.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _load_yaml(path: str) -> dict[str, Any]:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise SystemExit(f"--config: file {path!r} does not exist; pass the path of a YAML config file.")
    data = yaml.safe_load(file.read_text()) or {}
    if not isinstance(data, dict):
        raise SystemExit(
            f"--config: {path!r} must hold a YAML mapping of field: value, got {type(data).__name__}."
        )
    return data


def parse_dataclasses(
    dataclass_types: Sequence[type],
    argv: Sequence[str],
    prog: str,
    description: str,
    add_arguments=None,
) -> tuple[tuple[Any, ...], argparse.Namespace]:
    """Parse ``argv`` into one instance per dataclass, plus a namespace of the extra arguments.

    Args:
        dataclass_types: config dataclasses (fields with ``metadata={"help": ...}``).
        argv: the command's arguments (without the command name).
        prog: program name shown in ``--help`` (e.g. ``"hf-skmm extract"``).
        description: one paragraph shown in ``--help``.
        add_arguments: optional ``callable(parser)`` adding plain (non-dataclass) arguments.

    Returns:
        ``(instances, extras)``: the dataclass instances in the order given, and an ``argparse.Namespace``
        holding the arguments added by ``add_arguments`` (and ``config``).
    """
    from transformers import HfArgumentParser

    parser = HfArgumentParser(list(dataclass_types), prog=prog, description=description)
    parser.add_argument(
        "--config", default=None, help="YAML file with field: value defaults; flags override it."
    )
    if add_arguments is not None:
        add_arguments(parser)
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        values = _load_yaml(pre.config)
        known = {f.name for t in dataclass_types for f in dataclasses.fields(t)} | {
            a.dest for a in parser._actions
        }
        unknown = sorted(set(values) - known)
        if unknown:
            raise SystemExit(
                f"--config: unknown key(s) {unknown} in {pre.config!r}; valid keys are {sorted(known - {'help'})}."
            )
        parser.set_defaults(**values)
    *instances, extras = parser.parse_args_into_dataclasses(args=list(argv), return_remaining_strings=False)
    return tuple(instances), extras
