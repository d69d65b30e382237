"""Keep a checkpoint of the model with the best validation metric."""

import logging
import math
import operator
from typing import Any, Dict, Optional

from engine_lib.checkpoint import Checkpointer
from engine_lib.utils.errors import ConfigError

from ..train_loop import HookBase
from ._checks import check_before_save

__all__ = ["BestCheckpointer"]

logger = logging.getLogger(__name__)


class BestCheckpointer(HookBase):
    """Save ``<file_prefix>.pth`` whenever the validation metric beats its best value so far.

    Reads the latest ``val_metric`` from the storage every ``eval_period`` iterations and
    after training, so register it after the :class:`EvalHook` that puts it. A missing or NaN
    metric is skipped with a warning. The best value and its iteration are the hook's state,
    so after a resume a worse value does not overwrite the best checkpoint. Must run on every
    rank, like :class:`EvalHook` (which gives every rank the same results).

    Args:
        eval_period (int): check every this many iterations (the evaluation period).
        checkpointer (Checkpointer): saves the file.
        val_metric (str): the scalar's name, e.g. ``"accuracy/top1"``.
        mode (str): ``"max"`` or ``"min"``: whether larger or smaller is better.
            Default: ``"max"``.
        file_prefix (str): the file name without ``.pth``. Default: ``"model_best"``.

    Raises:
        ConfigError: if ``mode`` is neither ``"max"`` nor ``"min"``.
    """

    def __init__(
        self,
        eval_period: int,
        checkpointer: Checkpointer,
        val_metric: str,
        mode: str = "max",
        file_prefix: str = "model_best",
    ) -> None:
        if mode not in ("max", "min"):
            raise ConfigError(f"BestCheckpointer mode must be 'max' or 'min', got {mode!r}")
        self._period = eval_period
        self._checkpointer = checkpointer
        self._val_metric = val_metric
        self._better = operator.gt if mode == "max" else operator.lt
        self._file_prefix = file_prefix
        self.best_metric: Optional[float] = None
        self.best_iter: Optional[int] = None

    def after_step(self) -> None:
        if self.every_n_iters(self._period) and not self.is_last_iter():
            self._check()

    def after_train(self) -> None:
        if self.training_completed():
            self._check()

    def _check(self) -> None:
        latest = self.trainer.storage.latest().get(self._val_metric)
        if latest is None:
            logger.warning(
                "BestCheckpointer: no metric %r in the storage; was it put by an EvalHook "
                "registered before this hook? Not saving.",
                self._val_metric,
            )
            return
        value, metric_iter = latest
        if math.isnan(value):
            logger.warning(
                "BestCheckpointer: %s is NaN at iteration %d; ignored.",
                self._val_metric,
                metric_iter,
            )
            return
        if self.best_metric is not None and not self._better(value, self.best_metric):
            logger.info(
                "BestCheckpointer: %s=%.5g is not better than %.5g (iteration %d).",
                self._val_metric,
                value,
                self.best_metric,
                self.best_iter,
            )
            return
        logger.info(
            "BestCheckpointer: new best %s=%.5g at iteration %d (before: %s); saving %s.",
            self._val_metric,
            value,
            metric_iter,
            self.best_metric,
            self._file_prefix,
        )
        check_before_save(self.trainer, self._checkpointer.model)
        # Updated before saving, so that the saved trainer state already knows this best.
        self.best_metric, self.best_iter = float(value), int(metric_iter)
        self._checkpointer.save(self._file_prefix, iteration=self.trainer.iter)

    def state_dict(self) -> Dict[str, Any]:
        return {"best_metric": self.best_metric, "best_iter": self.best_iter}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best_metric = state["best_metric"]
        self.best_iter = state["best_iter"]
