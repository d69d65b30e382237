"""Pass the preemption signals the launching process receives on to its workers.

A scheduler may signal only the process it started, and the workers must see the signal
to save a checkpoint (``SOLVER.PREEMPT_SIGNALS``). ``torch.multiprocessing`` forwards
nothing; torch's elastic agent treats SIGTERM as the end of the group (it stops the
workers, then reports a failure) and does not handle SIGUSR1, SLURM's usual warning.
"""

import contextlib
import logging
import os
import signal
from typing import Any, Iterator, Sequence

__all__ = ["FORWARDED_SIGNALS", "forwarding_signals"]

logger = logging.getLogger(__name__)

#: Signals the launching process passes on to its workers instead of dying of them (a worker
#: without a handler for one dies of it).
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


@contextlib.contextmanager
def forwarding_signals(processes: Sequence[Any]) -> Iterator[None]:
    """While in the block, send :data:`FORWARDED_SIGNALS` on to the living ``processes``.

    The previous handlers are restored on exit. Outside the main thread, where signals
    cannot be handled, nothing is forwarded.

    Args:
        processes (list[multiprocessing.Process]): the workers.
    """

    def forward(signum: int, frame: Any) -> None:
        for process in processes:
            if process.is_alive():
                try:
                    os.kill(process.pid, signum)
                except ProcessLookupError:
                    pass

    previous = {}
    for sig in FORWARDED_SIGNALS:
        try:
            previous[sig] = signal.signal(sig, forward)
        except ValueError:  # not the main thread: signals cannot be handled here
            break
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
