"""How long the process ran before training started, for the start-up line in the log."""

import logging
import os
import time
from typing import Optional

__all__ = ["log_start_up_time", "seconds_since_process_start"]

logger = logging.getLogger(__name__)

# Where /proc is missing (macOS, Windows), the start is approximated by this module's import,
# which the engine's import reaches early.
_IMPORTED_AT = time.time()
_logged = False


def seconds_since_process_start() -> Optional[float]:
    """Return the wall-clock seconds since this process started.

    On Linux, the process start comes from ``/proc/self/stat`` (clock ticks after boot, to
    0.01 s) and is compared with the clock since boot; elsewhere, the seconds since
    ``engine_lib`` was imported are returned.

    Returns:
        float or None: the seconds; None if ``/proc`` is there but unreadable.
    """
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    try:
        with open("/proc/self/stat") as f:
            # The command name (field 2) may hold spaces: count the fields after its ")".
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    except FileNotFoundError:
        return time.time() - _IMPORTED_AT
    except (OSError, ValueError, IndexError):
        return None
    if boottime is None:
        return time.time() - _IMPORTED_AT
    return time.clock_gettime(boottime) - start_ticks / os.sysconf("SC_CLK_TCK")


def log_start_up_time(iteration: int) -> None:
    """Log, once per process, the seconds from process start to the first training iteration.

    Args:
        iteration (int): the iteration training starts at (0, or after a checkpoint's).
    """
    global _logged  # once per process: a second train() call is not start-up
    if _logged:
        return
    _logged = True
    seconds = seconds_since_process_start()
    if seconds is not None:
        logger.info(
            "Start-up: %.2f s from process start to the first training iteration (%d).",
            seconds,
            iteration,
        )
