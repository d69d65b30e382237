"""Run a command-line entry point so that mistakes in user input end in one clear line."""

import logging
import sys
from typing import Any, Callable, NoReturn

from engine_lib.utils.errors import UserError

__all__ = ["run_cli", "USER_ERROR_EXIT_CODE"]

logger = logging.getLogger(__name__)

#: Exit code of an entry point stopped by a user error (as argparse uses for bad arguments).
USER_ERROR_EXIT_CODE = 2


def run_cli(func: Callable[..., Any], *args: Any) -> NoReturn:
    """Call ``func(*args)`` and exit; a :class:`UserError` prints one line, not a traceback.

    Bugs still raise with their full traceback: only errors the user can fix (bad config,
    missing file, unknown name) are shortened, and their messages name the culprit.

    Args:
        func (callable): the entry point's body.
        *args: its arguments.
    """
    try:
        func(*args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(USER_ERROR_EXIT_CODE)
    sys.exit(0)
