"""Run the metric writers periodically."""

import logging
from typing import Sequence

from engine_lib.utils.events import EventWriter

from ..train_loop import HookBase

__all__ = ["PeriodicWriter"]

logger = logging.getLogger(__name__)


class PeriodicWriter(HookBase):
    """Call each writer's ``write()`` every ``period`` iterations and at the last one.

    The writers see what the trainer has put into the storage: losses arrive there at the
    trainer's metric flushes, so give the trainer ``gather_metric_period`` equal to this
    period (``DefaultTrainer`` does) and each write comes right after a flush. This hook does
    not flush itself, so it may run on the main process only. The writers are written once
    more and closed after training.

    Args:
        writers (list[EventWriter]): the writers.
        period (int): write every this many iterations. Default: 20.

    Raises:
        TypeError: if a writer is not an :class:`EventWriter`.
    """

    def __init__(self, writers: Sequence[EventWriter], period: int = 20) -> None:
        for w in writers:
            if not isinstance(w, EventWriter):
                raise TypeError(f"PeriodicWriter takes EventWriter objects, got {w!r}")
        self._writers = list(writers)
        self._period = period

    def after_step(self) -> None:
        if self.every_n_iters_or_last(self._period):
            for writer in self._writers:
                writer.write()

    def after_train(self) -> None:
        try:
            # Evaluation after training puts its results after the last periodic write.
            for writer in self._writers:
                writer.write()
        finally:
            for writer in self._writers:
                writer.close()
