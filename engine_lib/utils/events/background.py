"""An ordered background thread for metric work that should not hold up the training loop.

``SimpleTrainer(async_write_metrics=True)`` hands it the host copy of its gathered losses and
the storage puts; the same runner can carry writers off the training thread (issue 17). Tasks
run one at a time in submission order, so metrics reach the storage in iteration order, and a
task's exception is kept until the training thread asks for it: the training thread is the
one that must stop, not the background one.
"""

import concurrent.futures
import logging
from typing import Any, Callable, List

__all__ = ["BackgroundRunner"]

logger = logging.getLogger(__name__)


class BackgroundRunner:
    """Run callables on one daemon-like worker thread, in order; re-raise their errors on demand.

    Args:
        name (str): the worker thread's name prefix, shown in stack dumps.
            Default: ``"engine_lib-metrics"``.

    Example:
        >>> runner = BackgroundRunner()
        >>> runner.submit(storage.put_scalar, "loss", 0.5, cur_iter=3)
        >>> runner.wait()  # everything submitted has run; raises the first task error
        >>> runner.close()
    """

    def __init__(self, name: str = "engine_lib-metrics") -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=name
        )
        self._futures: List[concurrent.futures.Future] = []

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Queue ``fn(*args, **kwargs)``; it runs after everything submitted before it.

        Args:
            fn (callable): the task.
            *args: its positional arguments.
            **kwargs: its keyword arguments.
        """
        # Finished tasks are forgotten unless they failed: their error waits for raise_errors().
        self._futures = [f for f in self._futures if not f.done() or f.exception() is not None]
        self._futures.append(self._executor.submit(fn, *args, **kwargs))

    def raise_errors(self) -> None:
        """Re-raise the error of the earliest finished task that failed; do not wait."""
        for future in self._futures:
            error = future.exception() if future.done() else None  # exception() would wait
            if error is not None:
                self._futures.remove(future)
                raise error

    def wait(self) -> None:
        """Wait for every submitted task; re-raise the first error among them.

        Raises:
            Exception: what the earliest failed task raised (the others still ran).
        """
        futures, self._futures = self._futures, []
        error = None
        for future in futures:
            exc = future.exception()  # blocks until the task ran
            if exc is not None and error is None:
                error = exc
        if error is not None:
            raise error

    def close(self) -> None:
        """Wait for the queued tasks (without raising their errors) and stop the thread."""
        self._executor.shutdown(wait=True)
        self._futures = []
