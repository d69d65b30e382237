"""Time each iteration and report the training speed."""

import datetime
import logging
import time
from typing import Callable, Optional

from ..train_loop import HookBase

__all__ = ["IterationTimer"]

logger = logging.getLogger(__name__)


class IterationTimer(HookBase):
    """Put each iteration's duration as the scalar "time"; log the overall speed at the end.

    The duration runs from this hook's ``before_step`` to its ``after_step``, so register it
    first: it then covers the other hooks' ``before_step`` and the step itself. It is host
    time without a device sync: on a GPU a single step's value may be off, their average is
    not. The first ``warmup_iter - 1`` iterations (slow: allocation, cuDNN autotuning) are
    left out of the scalar and of the reported speed, as in detectron2 (so a history of "time"
    has as many entries as detectron2's).

    The final "Overall training speed" line also gives the share of those iterations'
    time spent waiting for the next batch: the trainer's ``data_time`` scalar (the slowest
    rank's wait, in a distributed run) over this hook's ``time``, summed over the timed
    iterations that have both. A large share says the data loader holds training back
    (``DATALOADER.NUM_WORKERS``, ``docs/data.md``).

    Args:
        warmup_iter (int): timing starts at this iteration (1-based) of each ``train()``.
            Default: 3.
    """

    _put_scalar: Callable[..., None]  # the storage's, bound in before_train

    def __init__(self, warmup_iter: int = 3) -> None:
        self._warmup_iter = warmup_iter
        self._train_start = 0.0
        self._step_start = 0.0
        self._timed_iters = 0
        self._timed_seconds = 0.0
        self._first_timed_iter = 0

    def before_train(self) -> None:
        self._train_start = time.perf_counter()
        self._timed_iters = 0
        self._timed_seconds = 0.0
        # Looked up once per train(): after_step runs at every iteration, where each lookup
        # through the trainer's weak proxy shows in a sub-millisecond step.
        self._first_timed_iter = self.trainer.start_iter + self._warmup_iter - 1
        self._put_scalar = self.trainer.storage.put_scalar

    def before_step(self) -> None:
        self._step_start = time.perf_counter()

    def after_step(self) -> None:
        seconds = time.perf_counter() - self._step_start
        if self.trainer.iter >= self._first_timed_iter:
            self._timed_iters += 1
            self._timed_seconds += seconds
            self._put_scalar("time", seconds)

    def after_train(self) -> None:
        total = time.perf_counter() - self._train_start
        if self._timed_iters > 0:
            share = self._data_share()
            logger.info(
                "Overall training speed: %d iterations in %s (%.4f s / it%s)",
                self._timed_iters,
                datetime.timedelta(seconds=int(self._timed_seconds)),
                self._timed_seconds / self._timed_iters,
                "" if share is None else f", {100 * share:.0f}% of it waiting for data",
            )
        logger.info("Total training time: %s", datetime.timedelta(seconds=int(total)))

    def _data_share(self) -> Optional[float]:
        """Data time / iteration time over the timed iterations, or None without data times."""
        histories = self.trainer.storage.histories()
        if "time" not in histories or "data_time" not in histories:
            return None
        data_times = {it: seconds for seconds, it in histories["data_time"].values()}
        # Iterations cut short by an exception may lack a data time: leave them out.
        pairs = [(data_times[it], t) for t, it in histories["time"].values() if it in data_times]
        step_seconds = sum(t for _, t in pairs)
        if step_seconds <= 0:
            return None
        return min(1.0, sum(d for d, _ in pairs) / step_seconds)
