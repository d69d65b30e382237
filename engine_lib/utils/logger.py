"""Rank-aware logging setup and rate-limited logging helpers.

``setup_logger`` gives rank 0 a coloured console and every rank a plain-text file
(``log.txt`` on rank 0, ``log.txt.rankN`` elsewhere) so the ranks never interleave in one file.
"""

import atexit
import logging
import os
import sys
import time
from collections import Counter
from types import FrameType
from typing import Any, Dict, Optional, Tuple, Union

from tabulate import tabulate
from termcolor import colored

from engine_lib.utils.file_io import PathManager

__all__ = [
    "setup_logger",
    "log_first_n",
    "log_every_n",
    "log_every_n_seconds",
    "create_small_table",
]

logger = logging.getLogger(__name__)

_PLAIN_FORMAT = "[%(asctime)s] %(name)s %(levelname)s: %(message)s"
_DATE_FORMAT = "%m/%d %H:%M:%S"
# Marks the handlers setup_logger installed, so a second call replaces them instead of adding.
_OWNED = "_engine_lib_owned"
# One stream per log file, shared by every logger that writes to it (engine_lib, fvcore,
# __main__, ...), so their lines are written through one buffer in order.
_FILE_HANDLERS: Dict[str, logging.Handler] = {}


class _ColorfulFormatter(logging.Formatter):
    """Green time and abbreviated logger name; WARNING and ERROR stand out in red."""

    def __init__(self, *, root_name: str, abbrev_name: str) -> None:
        super().__init__(
            colored("[%(asctime)s %(name)s]: ", "green", force_color=True) + "%(message)s",
            datefmt=_DATE_FORMAT,
        )
        self._root_name = root_name + "."
        self._abbrev_name = abbrev_name + "." if abbrev_name else ""

    def formatMessage(self, record: logging.LogRecord) -> str:
        # Shorten "engine_lib.engine.hooks" to "el.engine.hooks" on the console only.
        original_name = record.name
        record.name = original_name.replace(self._root_name, self._abbrev_name, 1)
        try:
            message = super().formatMessage(record)
        finally:
            record.name = original_name
        if record.levelno >= logging.ERROR:
            prefix = colored("ERROR", "red", attrs=["blink", "underline"], force_color=True)
        elif record.levelno >= logging.WARNING:
            prefix = colored("WARNING", "red", attrs=["blink"], force_color=True)
        else:
            return message
        return prefix + " " + message


class _StdoutHandler(logging.StreamHandler):
    """A console handler that writes to whatever ``sys.stdout`` is at the time of the call.

    Binding the stream at setup time breaks when stdout is swapped later (pytest's capture,
    notebooks): records would go to a closed stream.
    """

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _console_supports_color() -> bool:
    # Decided per call (termcolor caches its own answer for the whole process).
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


def _log_file_path(output: str, distributed_rank: int) -> str:
    if output.endswith((".txt", ".log")):
        path = output
    else:
        path = os.path.join(output, "log.txt")
    if distributed_rank > 0:
        path = f"{path}.rank{distributed_rank}"
    return path


def _file_handler(path: str) -> logging.Handler:
    key = os.path.abspath(path)
    handler = _FILE_HANDLERS.get(key)
    if handler is None:
        PathManager.mkdirs(os.path.dirname(key))
        # Opened through PathManager so OUTPUT_DIR may live on a registered remote store.
        stream = PathManager.open(key, "a")
        atexit.register(stream.close)
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(_PLAIN_FORMAT, datefmt=_DATE_FORMAT))
        setattr(handler, _OWNED, True)
        _FILE_HANDLERS[key] = handler
    return handler


def setup_logger(
    output: Optional[str] = None,
    distributed_rank: int = 0,
    *,
    color: bool = True,
    name: str = "engine_lib",
    abbrev_name: Optional[str] = None,
    enable_propagation: bool = False,
    configure_stdout: bool = True,
) -> logging.Logger:
    """Configure a logger: console on rank 0, a plain-text file per rank.

    Calling it again for the same ``name`` replaces the handlers the previous call installed,
    so nothing is logged twice. By default the logger stops propagating to the root logger.

    Args:
        output (str, optional): a directory (the file is ``output/log.txt``) or a file name
            ending in ``.txt`` or ``.log``. Ranks N > 0 append ``.rankN``. None: no file.
        distributed_rank (int): the global rank; only rank 0 logs to the console. Default: 0.
        color (bool): colour the console when it is a terminal (or ``FORCE_COLOR`` is set).
            Default: True.
        name (str): the logger to configure; its children inherit it. Default: "engine_lib".
        abbrev_name (str, optional): short name shown on the console in place of ``name``;
            default: "el" for "engine_lib", else ``name``.
        enable_propagation (bool): let records also propagate to the parent loggers (as
            detectron2's argument). Default: False.
        configure_stdout (bool): add the rank-0 console handler; False: only the file.
            Default: True.

    Returns:
        logging.Logger: the configured logger.

    Example:
        >>> logger = setup_logger(cfg.OUTPUT_DIR, comm.get_rank())
    """
    log = logging.getLogger(name)
    log.setLevel(logging.DEBUG)
    log.propagate = enable_propagation
    for handler in [h for h in log.handlers if getattr(h, _OWNED, False)]:
        log.removeHandler(handler)  # file handlers stay open: other loggers may share them
    if abbrev_name is None:
        abbrev_name = "el" if name == "engine_lib" else name

    if distributed_rank == 0 and configure_stdout:
        console = _StdoutHandler()
        console.setLevel(logging.DEBUG)
        if color and _console_supports_color():
            console.setFormatter(_ColorfulFormatter(root_name=name, abbrev_name=abbrev_name))
        else:
            console.setFormatter(logging.Formatter(_PLAIN_FORMAT, datefmt=_DATE_FORMAT))
        setattr(console, _OWNED, True)
        log.addHandler(console)

    if output is not None:
        log.addHandler(_file_handler(_log_file_path(output, distributed_rank)))
    return log


def _find_caller() -> Tuple[str, Tuple[str, int, str]]:
    """Return the module name and (file, line, function) of the first frame outside this file."""
    frame: Optional[FrameType] = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    assert frame is not None, "the log helpers are always called from another module"
    module = frame.f_globals.get("__name__", "__main__")
    if module == "__main__":
        module = "engine_lib"
    code = frame.f_code
    return module, (code.co_filename, frame.f_lineno, code.co_name)


_LOG_COUNTER: Counter = Counter()
_LOG_TIMER: Dict[Any, float] = {}


def log_first_n(
    lvl: int,
    msg: str,
    n: int = 1,
    *,
    name: Optional[str] = None,
    key: Union[str, Tuple[str, ...]] = "caller",
) -> None:
    """Log only the first ``n`` times for a given key.

    Args:
        lvl (int): the logging level.
        msg (str): the message.
        n (int): how many times to log. Default: 1.
        name (str, optional): the logger name; default: the caller's module.
        key (str or tuple[str]): what identifies "the same" log: "caller" (the calling line),
            "message", or both as a tuple. Default: "caller".
    """
    keys = (key,) if isinstance(key, str) else tuple(key)
    unknown = set(keys) - {"caller", "message"}
    if not keys or unknown:
        raise ValueError(f"key must be 'caller', 'message' or both, got {key!r}.")
    module, caller = _find_caller()
    counter_key: Tuple[Any, ...] = ()
    if "caller" in keys:
        counter_key += caller
    if "message" in keys:
        counter_key += (msg,)
    _LOG_COUNTER[counter_key] += 1
    if _LOG_COUNTER[counter_key] <= n:
        logging.getLogger(name or module).log(lvl, msg)


def log_every_n(lvl: int, msg: str, n: int = 1, *, name: Optional[str] = None) -> None:
    """Log once every ``n`` calls from the same line (the 1st, the n+1-th, ...).

    Args:
        lvl (int): the logging level.
        msg (str): the message.
        n (int): the period in calls. Default: 1.
        name (str, optional): the logger name; default: the caller's module.
    """
    module, caller = _find_caller()
    _LOG_COUNTER[caller] += 1
    if n == 1 or _LOG_COUNTER[caller] % n == 1:
        logging.getLogger(name or module).log(lvl, msg)


def log_every_n_seconds(lvl: int, msg: str, n: float = 1, *, name: Optional[str] = None) -> None:
    """Log at most once every ``n`` seconds from the same line.

    Args:
        lvl (int): the logging level.
        msg (str): the message.
        n (float): the minimum interval in seconds. Default: 1.
        name (str, optional): the logger name; default: the caller's module.
    """
    module, caller = _find_caller()
    last = _LOG_TIMER.get(caller)
    now = time.monotonic()
    if last is None or now - last >= n:
        logging.getLogger(name or module).log(lvl, msg)
        _LOG_TIMER[caller] = now


def create_small_table(small_dict: Dict[str, Any]) -> str:
    """Format a small dict as a one-row table: the keys as headers, floats with 3 decimals.

    Args:
        small_dict (dict): the values to show, e.g. evaluation metrics.

    Returns:
        str: the table in pipe (markdown) format.
    """
    return tabulate(
        [list(small_dict.values())],
        headers=list(small_dict.keys()),
        tablefmt="pipe",
        floatfmt=".3f",
        stralign="center",
        numalign="center",
    )
