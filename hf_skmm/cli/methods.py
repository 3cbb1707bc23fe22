"""``hf-skmm methods``: list the registered selectors with a one-line description each."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from hf_skmm.cli.errors import handle_user_errors

PROG = "hf-skmm methods"


@handle_user_errors(PROG)
def main(argv: Sequence[str]) -> int:
    argparse.ArgumentParser(
        prog=PROG,
        description="List the registered selection methods (use one with 'hf-skmm select --method').",
    ).parse_args(list(argv))
    from hf_skmm.selection import list_selectors

    selectors = list_selectors()
    width = max((len(name) for name in selectors), default=0)
    for name, description in selectors.items():
        print(f"{name:<{width}}  {description}")
    return 0
