"""Exceptions for mistakes a user can fix (bad config, missing file, unknown name).

Entry points (``tools/*.py``) catch :class:`UserError` and print its message on one line
with a non-zero exit instead of a traceback: the message must therefore say everything
a user needs (the culprit and what was expected). Bugs keep raising ordinary exceptions.
"""

__all__ = ["UserError", "ConfigError", "ConfigKeyError", "UnknownNameError"]


class UserError(Exception):
    """Base class of errors caused by user input rather than by a bug."""


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
