"""The console writer: one line of training progress per write."""

import logging
import statistics
import time
from collections import deque
from datetime import timedelta
from typing import Dict, Optional, Tuple

import torch
from fvcore.common.history_buffer import HistoryBuffer

from .storage import EventStorage, get_event_storage
from .writers import EventWriter

__all__ = ["CommonMetricPrinter"]

logger = logging.getLogger(__name__)


class CommonMetricPrinter(EventWriter):
    """Log one line of training progress: ETA, iteration, losses, time, data time, lr, memory.

    Losses are the scalars whose name contains "loss", and other scalars to show are those
    whose name contains "[metric]" (e.g. ``"[metric]bn_stat"``), each as its median over the
    values put in the last ``window_size`` iterations (as in detectron2). The ETA
    comes from the "time" scalar (what ``IterationTimer`` puts): the median of the last 50
    writes' window medians, a robust estimate over the recent ~1000 iterations that costs
    microseconds per write (a median over 1000 raw values cost ~60 us). Without "time", it is
    estimated from the wall-clock time between two writes. The ETA is also put in the storage as
    "eta_seconds". "time" and "data_time" are shown as their mean over the window and their
    latest value ("last_time", "last_data_time"). Absent metrics are left out of the line.
    """

    def __init__(
        self, max_iter: Optional[int] = None, window_size: int = 20, iters_per_epoch: int = 0
    ) -> None:
        """
        Args:
            max_iter (int, optional): the number of training iterations, for the ETA; None:
                no ETA.
            window_size (int): the window of the losses' median and the times' mean.
                Default: 20.
            iters_per_epoch (int): with ``max_iter``, the line shows "epoch: e/E" too; 0
                (unknown) leaves it out. Default: 0.
        """
        self.logger = logger  # as in detectron2: tests capture the lines with assertLogs
        self._max_iter = max_iter
        self._window_size = window_size
        self._iters_per_epoch = iters_per_epoch
        self._last_write: Optional[Tuple[int, float]] = None  # (iteration, perf_counter())
        # Median iteration time of each recent write's window, for the ETA.
        self._window_times: deque = deque(maxlen=50)

    def _eta(self, storage: EventStorage, histories: Dict[str, HistoryBuffer]) -> Optional[str]:
        if self._max_iter is None:
            return None
        iteration = storage.iter
        remaining = self._max_iter - iteration - 1
        eta_seconds = None
        if "time" in histories:
            self._window_times.append(histories["time"].median(self._window_size))
            eta_seconds = statistics.median(self._window_times) * remaining
            storage.put_scalar("eta_seconds", float(eta_seconds), smoothing_hint=False)
        elif self._last_write is not None and iteration > self._last_write[0]:
            last_iter, last_time = self._last_write
            seconds_per_iter = (time.perf_counter() - last_time) / (iteration - last_iter)
            eta_seconds = seconds_per_iter * remaining
        self._last_write = (iteration, time.perf_counter())
        if eta_seconds is None:
            return None
        return str(timedelta(seconds=int(eta_seconds)))

    def write(self) -> None:
        storage = get_event_storage()
        iteration = storage.iter
        if iteration == self._max_iter:
            # The trainer sets iter to max_iter once training has finished: there is no
            # progress left to report.
            return
        histories = storage.histories()
        parts = []
        eta = self._eta(storage, histories)
        if eta is not None:
            parts.append(f"eta: {eta}")
        per_epoch = self._iters_per_epoch
        if per_epoch > 0 and self._max_iter is not None:
            epochs = -(-self._max_iter // per_epoch)  # the last epoch may be partial
            parts.append(f"epoch: {iteration // per_epoch + 1}/{epochs}")
        parts.append(f"iter: {iteration}")
        for marker in ("loss", "[metric]"):
            parts.extend(
                f"{name}: {buffer.median(storage.count_samples(name, self._window_size)):.4g}"
                for name, buffer in histories.items()
                if marker in name and (marker == "loss" or "loss" not in name)
            )
        for name in ("time", "data_time"):
            if name in histories:
                # The window's mean, then the latest value, as detectron2 prints them.
                buffer = histories[name]
                window = storage.count_samples(name, self._window_size)
                parts.append(f"{name}: {buffer.avg(window):.4f}")
                parts.append(f"last_{name}: {buffer.latest():.4f}")
        if "lr" in histories:
            parts.append(f"lr: {histories['lr'].latest():.5g}")
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            # is_initialized: a CPU run on a GPU machine must not create a CUDA context here.
            max_mem_mb = torch.cuda.max_memory_allocated() / 1024.0 / 1024.0
            parts.append(f"max_mem: {max_mem_mb:.0f}M")
        self.logger.info(" " + "  ".join(parts))
