"""Turn bad-input exceptions into one clear line on stderr and a non-zero exit code."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

# what a user can fix: bad values, missing paths, an output that exists already
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError)
EXIT_USER_ERROR = 2


def require_paths(args: Any, *names: str) -> None:
    """Raise ``ValueError`` naming the first of ``names`` that ``args`` leaves empty (a required path option)."""
    for name in names:
        if not getattr(args, name):
            raise ValueError(f"{name} is required; pass --{name} PATH (or set it in --config).")


def handle_user_errors(
    prog: str,
) -> Callable[[Callable[[Sequence[str]], int]], Callable[[Sequence[str]], int]]:
    """Decorate a command's ``main(argv)``: a user error prints ``prog: error: ...`` and returns 2.

    ``HF_SKMM_DEBUG=1`` re-raises instead, with the traceback.
    """

    def wrap(main: Callable[[Sequence[str]], int]) -> Callable[[Sequence[str]], int]:
        @functools.wraps(main)
        def run(argv: Sequence[str]) -> int:
            import os

            if not logging.getLogger().handlers:
                logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
            try:
                return main(argv)
            except USER_ERRORS as err:
                if os.environ.get("HF_SKMM_DEBUG"):
                    raise
                print(f"{prog}: error: {err}", file=sys.stderr)
                return EXIT_USER_ERROR

        return run

    return wrap
