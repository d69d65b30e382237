"""Recompute BatchNorm statistics with fixed weights before evaluation."""

import logging
import warnings
from types import ModuleType
from typing import Iterable, Iterator, Optional

import torch
from torch import nn

from engine_lib.utils.events import EventStorage

from ..train_loop import HookBase

__all__ = ["PreciseBN"]

logger = logging.getLogger(__name__)


def _precise_bn() -> ModuleType:
    """fvcore's ``precise_bn`` module, imported on first use: importing ``fvcore.nn`` runs
    ``torch.jit.script`` on an unrelated loss function, a share of every start-up otherwise."""
    with warnings.catch_warnings():
        # ... which torch now deprecates with a FutureWarning.
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import precise_bn
    return precise_bn


class PreciseBN(HookBase):
    """Every ``period`` iterations and at the last one, recompute precise BN statistics.

    Uses :func:`fvcore.nn.precise_bn.update_bn_stats`: the running mean and variance of each
    BatchNorm in training mode become the true averages over ``num_iter`` batches with the
    current weights (see "Rethinking Batch in BatchNorm"). Register it before the
    :class:`EvalHook` with the same period, so that evaluation sees them. Does nothing for a
    model without BatchNorm in training mode.

    Args:
        period (int): recompute every this many iterations; <= 0: only at the last one.
        model (nn.Module): the model (unwrapped from DDP), in training mode.
        data_loader (Iterable): training batches; use a loader of its own so the training
            loader's position does not move. Iterated on, across calls.
        num_iter (int): batches per recomputation.
    """

    def __init__(self, period: int, model: nn.Module, data_loader: Iterable, num_iter: int) -> None:
        self._period = period
        self._model = model
        self._data_loader = data_loader
        self._num_iter = num_iter
        self._data_iter: Optional[Iterator] = None
        self._disabled = len(_precise_bn().get_bn_modules(model)) == 0
        if self._disabled:
            logger.info("PreciseBN is disabled: the model has no BatchNorm in training mode.")

    def after_step(self) -> None:
        if self.every_n_iters_or_last(self._period):
            self.update_stats()

    def update_stats(self) -> None:
        """Recompute the statistics now."""
        if self._disabled:
            return
        if self._data_iter is None:
            self._data_iter = iter(self._data_loader)
        logger.info("Running precise BN over %d batches ...", self._num_iter)
        # A storage of its own takes what the model puts during these forwards, which are
        # not training iterations; no_grad because only the BN buffers change.
        with EventStorage(), torch.no_grad():
            _precise_bn().update_bn_stats(self._model, self._data_iter, self._num_iter)
