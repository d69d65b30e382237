"""Exceptions for mistakes a user can fix (bad config, missing file, unknown name).

Entry points (``tools/*.py``) catch :class:`UserError` and print its message on one line
with a non-zero exit instead of a traceback: the message must therefore say everything
a user needs (the culprit and what was expected). Bugs keep raising ordinary exceptions.
"""

import logging
import re

__all__ = ["UserError", "ConfigError", "ConfigKeyError", "UnknownNameError"]

logger = logging.getLogger(__name__)


# torch's DataLoader re-raises an error of a worker process in the main process as
# ``type(error)("Caught <type> in DataLoader worker process N.\nOriginal Traceback ...")``
# (torch.utils._utils.ExceptionWrapper.reraise): the worker's whole traceback as the message.
_WORKER_PREFIX = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\nOriginal ")


def _from_worker(message: str, cls: type) -> str:
    """The message a worker's error was raised with, out of torch's re-raised text."""
    for name in (f"{cls.__module__}.{cls.__qualname__}: ", f"{cls.__qualname__}: "):
        at = message.rfind(name)
        if at >= 0:
            return message[at + len(name) :].strip()
    return message.splitlines()[-1].strip()


class UserError(Exception):
    """Base class of errors caused by user input rather than by a bug.

    Raised in a data-loader worker, it reaches the main process with the message it was
    raised with (not the worker's traceback), so the entry point prints the same one line
    as when the data is loaded in the main process.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str) and _WORKER_PREFIX.match(args[0]):
            args = (_from_worker(args[0], type(self)),)
        super().__init__(*args)


class ConfigError(UserError, ValueError):
    """A config file or a command-line option is malformed or has a wrong value."""


class ConfigKeyError(UserError, KeyError):
    """A config key does not exist.

    Subclasses ``KeyError`` so code that catches yacs' errors keeps working, but prints
    its message without the quotes ``KeyError.__str__`` would add.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownNameError(UserError, KeyError):
    """A name (data set, registry entry, optimizer, ...) is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
