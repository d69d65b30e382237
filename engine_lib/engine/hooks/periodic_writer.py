"""Run the metric writers periodically: inline, or on a background thread for slow ones."""

import logging
from typing import List, Optional, Sequence, Union

from engine_lib.utils.events import EventWriter, WriterThread

from ..train_loop import HookBase

__all__ = ["PeriodicWriter"]

logger = logging.getLogger(__name__)


class PeriodicWriter(HookBase):
    """Call each writer's ``write()`` every ``period`` iterations and at the last one.

    The writers see what the trainer has put into the storage: losses arrive there at the
    trainer's metric flushes, so give the trainer ``gather_metric_period`` equal to this
    period (``DefaultTrainer`` does) and each write comes right after a flush. The writers
    are written once more and closed after training.

    Where the writes run (``background``):

    - ``"auto"`` (the default): each writer where its ``background`` attribute says. The
      console, ``metrics.json`` and TensorBoard writers write in ``after_step`` itself, as in
      detectron2; the experiment trackers (whose log calls may wait on a server) write on a
      background thread. On CUDA, when the trainer reads its gathered losses one period
      late (``SimpleTrainer.defer_metric_read``, the default there), every writer writes on
      the thread: an inline write would wait for the copy of the losses just gathered,
      draining the GPU's queue. Measured on CPU (``benchmarks/trainer_overhead.py``), a Python
      thread does not overlap the local writes with training: it shares the GIL with the
      training thread, which releases it at every torch op and then waits to get it back,
      so the hand-off cost more than the writes it moved (TinyMLP 1.30x with every writer on
      the thread, against 1.23x inline; MLP 1.10x against 1.075x).
    - ``True``: every writer on the background thread.
    - ``False``: every writer in ``after_step``.

    Background writes go through a :class:`~engine_lib.utils.events.WriterThread`: at each
    period the hook takes a snapshot of the storage (after the inline writers wrote, so it
    has what they put, e.g. "eta_seconds") and queues the writes, which then overlap the next
    iterations. Writes stay in order and each sees the storage as it was at its iteration.
    They are waited for when the trainer flushes its metrics (``trainer.flush_metrics()``,
    which the checkpointing and evaluation hooks call before they save or evaluate), after
    training and after an exception; a writer's error is raised in the training thread at
    the next write or flush. This hook does not flush the trainer's metrics itself, so it may
    run on the main process only.

    With ``write_before_save=True`` the hooks that save a checkpoint first write what is
    pending (:meth:`write_pending`, called from their pre-save check), so a checkpoint of
    iteration i is only written once every metric up to i is on disk: an evaluation at an
    epoch end that is not a multiple of ``period``, followed by a checkpoint and a kill, would
    otherwise never reach ``metrics.json`` (the resumed run does not evaluate it again).

    Args:
        writers (list[EventWriter]): the writers.
        period (int): write every this many iterations. Default: 20.
        background (bool or str): ``"auto"``, True or False, as above. Default: ``"auto"``.
        write_before_save (bool): write pending metrics before every checkpoint save (the
            writers then also write at checkpoint iterations). Default: False.

    Raises:
        TypeError: if a writer is not an :class:`EventWriter`.
        ValueError: if ``background`` is not ``"auto"``, True or False.
    """

    def __init__(
        self,
        writers: Sequence[EventWriter],
        period: int = 20,
        *,
        background: Union[bool, str] = "auto",
        write_before_save: bool = False,
    ) -> None:
        for w in writers:
            if not isinstance(w, EventWriter):
                raise TypeError(f"PeriodicWriter takes EventWriter objects, got {w!r}")
        if background not in ("auto", True, False):
            raise ValueError(
                f"PeriodicWriter(background=...) takes 'auto', True or False, got {background!r}"
            )
        self._writers = list(writers)
        self._background = background
        self._inline: List[EventWriter] = []
        self._threaded: List[EventWriter] = []
        self._period = period
        self._thread: Optional[WriterThread] = None
        self.write_before_save = write_before_save
        # The iteration last written, so a save right after a periodic write adds no line.
        self._written_iter: Optional[int] = None

    def before_train(self) -> None:
        background = self._background
        if background == "auto" and getattr(self.trainer, "defer_metric_read", False):
            # The losses of the gather just before a write are still being copied from the
            # GPU: an inline write would wait for that copy, draining the GPU's queue every
            # period; the writer thread waits for it instead.
            background = True
        if background == "auto":
            on_thread = [bool(getattr(w, "background", False)) for w in self._writers]
        else:
            on_thread = [bool(background)] * len(self._writers)
        self._inline = [w for w, t in zip(self._writers, on_thread) if not t]
        self._threaded = [w for w, t in zip(self._writers, on_thread) if t]
        if self._threaded:
            self._thread = WriterThread(self._threaded)
            self.trainer.storage.add_flush_callback(self.flush)

    def _write(self) -> None:
        self._written_iter = self.trainer.iter
        storage = self.trainer.storage
        if self._inline:
            # Losses still on their way from the GPU (SimpleTrainer's defer_metric_read)
            # must be in the storage the writers read.
            storage.put_deferred_values()
            for writer in self._inline:
                writer.write()
        if self._thread is not None:
            self._thread.write(storage)

    def flush(self) -> None:
        """Wait until the queued writes are done; raise the first writer error among them."""
        if self._thread is not None:
            self._thread.flush()

    def write_pending(self) -> None:
        """Write what the storage holds up to this iteration now, and wait until it is written.

        Called before a checkpoint save (see ``write_before_save``); does nothing new when
        this iteration was written already.

        Raises:
            Exception: the first error a background write raised.
        """
        if self._written_iter != self.trainer.iter:
            self._write()
        self.flush()

    def after_step(self) -> None:
        if self.every_n_iters_or_last(self._period) and self._written_iter != self.trainer.iter:
            self._write()

    def after_train(self) -> None:
        try:
            # Evaluation after training puts its results after the last periodic write.
            self._write()
            self.flush()
        finally:
            if self._thread is not None:
                self._thread.close()
                self._thread = None
            for writer in self._writers:
                writer.close()
