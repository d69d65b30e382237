"""Log CUDA memory statistics periodically."""

import logging
from typing import Any, Dict

import torch

from ..train_loop import HookBase

__all__ = ["TorchMemoryStats"]

logger = logging.getLogger(__name__)

_MB = 1024.0 * 1024.0


class TorchMemoryStats(HookBase):
    """Every ``period`` iterations, log and record CUDA memory use, at most ``max_runs`` times.

    Puts ``max_reserved_mem``, ``reserved_mem``, ``max_allocated_mem`` and ``allocated_mem``
    (MB, of the current device, peaks since the previous report) and logs them; the last run
    also logs ``torch.cuda.memory_summary()``. The allocator's counters are host data: no
    device sync. Without CUDA it logs that once and does nothing.

    Args:
        period (int): report every this many iterations. Default: 20.
        max_runs (int): stop after this many reports. Default: 10.
    """

    def __init__(self, period: int = 20, max_runs: int = 10) -> None:
        self._period = period
        self._max_runs = max_runs
        self._runs = 0
        self._enabled = False

    def before_train(self) -> None:
        self._enabled = torch.cuda.is_available()
        if not self._enabled:
            logger.info("TorchMemoryStats: CUDA is not available; no memory statistics.")

    def after_step(self) -> None:
        if not self._enabled or self._runs >= self._max_runs:
            return
        if not self.every_n_iters(self._period):
            return
        stats: Dict[str, Any] = {  # Any: float values, unlike put_scalars' cur_iter
            "max_reserved_mem": torch.cuda.max_memory_reserved() / _MB,
            "reserved_mem": torch.cuda.memory_reserved() / _MB,
            "max_allocated_mem": torch.cuda.max_memory_allocated() / _MB,
            "allocated_mem": torch.cuda.memory_allocated() / _MB,
        }
        self.trainer.storage.put_scalars(smoothing_hint=False, **stats)
        logger.info(
            "iter: %d  %s",
            self.trainer.iter,
            "  ".join(f"{name}: {value:.0f}MB" for name, value in stats.items()),
        )
        self._runs += 1
        if self._runs == self._max_runs:
            logger.info("\n%s", torch.cuda.memory_summary())
        torch.cuda.reset_peak_memory_stats()
