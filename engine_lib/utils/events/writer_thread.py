"""Writers run on a background thread, each write fed with a snapshot of the storage."""

import logging
import sys
from typing import List, Sequence

from .background import BackgroundRunner
from .storage import EventStorage
from .writers import EventWriter

__all__ = ["WriterThread"]

logger = logging.getLogger(__name__)


def _write_all(writers: List[EventWriter], snapshot: EventStorage) -> None:
    # Losses still being copied from the GPU when the snapshot was taken: waited for here,
    # not on the training thread (which checks them for non-finite values itself, later).
    snapshot.put_deferred_values(check=False)
    with snapshot.bound_to_this_thread():
        for writer in writers:
            try:
                writer.write()
            except Exception as e:
                where = (
                    f"(raised by {type(writer).__name__}.write() at iteration {snapshot.iter}, "
                    "on the writer thread)"
                )
                # add_note is Python 3.11+; before it, calling it would replace the writer's
                # error with an AttributeError.
                if sys.version_info >= (3, 11):
                    e.add_note(where)
                else:
                    logger.error("%s failed %s", type(e).__name__, where)
                raise


class WriterThread:
    """Do the writers' ``write()`` calls on one background thread, in order.

    Each :meth:`write` takes a snapshot of the storage on the calling (training) thread, at
    a cost of microseconds, and queues the writes of that snapshot: the file, console and
    TensorBoard work (milliseconds for TensorBoard's protobufs) then overlaps the next
    iterations. Writes run one at a time in the order queued, and each writer sees the
    storage as it was at its write's iteration. One write at most is in flight: a write
    first waits for the previous one (normally long done, a period later), which bounds
    the memory of queued snapshots when writers are slower than training, and raises a
    writer's error on the calling thread at the next :meth:`write` or :meth:`flush`.

    Args:
        writers (list[EventWriter]): the writers, written in this order.
        history_length (int): how many of each scalar's latest values a snapshot holds
            (:meth:`EventStorage.snapshot`). Default: 1000.
    """

    def __init__(self, writers: Sequence[EventWriter], history_length: int = 1000) -> None:
        self._writers = list(writers)
        self._history_length = history_length
        self._runner = BackgroundRunner(name="engine_lib-writers")

    def write(self, storage: EventStorage) -> None:
        """Queue one write of every writer, from a snapshot of ``storage`` taken now.

        Args:
            storage (EventStorage): the live storage.

        Raises:
            Exception: the error of the previous write, if it failed.
        """
        self._runner.wait()
        self._runner.submit(_write_all, self._writers, storage.snapshot(self._history_length))

    def flush(self) -> None:
        """Wait until every queued write is done; raise the first error among them."""
        self._runner.wait()

    def close(self) -> None:
        """Wait for the queued writes (their errors are dropped: call :meth:`flush` first)
        and stop the thread."""
        self._runner.close()
