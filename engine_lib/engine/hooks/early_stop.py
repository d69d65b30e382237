"""End training when an evaluation metric stops improving."""

import logging
import math
from typing import Any, Dict, Optional

from engine_lib.checkpoint import Checkpointer

from ..train_loop import HookBase
from ._checks import check_before_save

__all__ = ["EarlyStopping"]

logger = logging.getLogger(__name__)


class EarlyStopping(HookBase):
    """Stop training after ``patience`` evaluations without improvement of a metric.

    After each evaluation of the period (an :class:`EvalHook` registered before this hook
    puts the results into the storage), the metric is compared with the best so far; an
    improvement by more than ``min_delta`` resets the count, else the count grows, and at
    ``patience`` the hook asks the trainer to stop (:meth:`TrainerBase.request_stop`), with the
    reason logged. Training then ends after this iteration: the hook saves
    ``model_final.pth`` (the weights of the last iteration) in ``after_train``, and, with
    ``save_best``, ``model_best.pth`` on each improvement. Its count and best value are in
    the trainer's checkpoints, so a resumed run decides as the uninterrupted one would; the
    evaluation results are the same on every rank, so every rank stops at the same iteration.

    Args:
        eval_period (int): the ``EvalHook``'s period in iterations (> 0).
        checkpointer (Checkpointer): saves ``model_final`` and ``model_best``.
        metric (str): ``"task/metric"`` in the flattened evaluation results.
        mode (str): "max" if a larger value is better, "min" otherwise. Default: "max".
        patience (int): evaluations without improvement before stopping (>= 1). Default: 3.
        min_delta (float): the least change that counts as an improvement. Default: 0.
        save_best (bool): save ``model_best`` on each improvement (False when a
            ``BestCheckpointer`` of the same metric does). Default: True.
    """

    def __init__(
        self,
        eval_period: int,
        checkpointer: Checkpointer,
        metric: str,
        mode: str = "max",
        patience: int = 3,
        min_delta: float = 0.0,
        save_best: bool = True,
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"EarlyStopping: mode must be 'max' or 'min', got {mode!r}")
        if patience < 1 or eval_period <= 0:
            raise ValueError(
                f"EarlyStopping: needs patience >= 1 and eval_period > 0, got {patience} "
                f"and {eval_period}"
            )
        self._period, self._checkpointer, self._metric = eval_period, checkpointer, metric
        self._mode, self._patience, self._min_delta = mode, patience, float(min_delta)
        self._save_best = save_best
        self.best_metric: Optional[float] = None
        self.best_iter: Optional[int] = None
        self.bad_evals = 0

    def after_step(self) -> None:
        # The last iteration is evaluated in after_train, where there is nothing to stop.
        if self.every_n_iters(self._period) and not self.is_last_iter():
            self._check()

    def _improved(self, value: float) -> bool:
        if self.best_metric is None:
            return True
        if self._mode == "max":
            return value > self.best_metric + self._min_delta
        return value < self.best_metric - self._min_delta

    def _check(self) -> None:
        latest = self.trainer.storage.latest().get(self._metric)
        if latest is None or latest[1] != self.trainer.iter:
            logger.warning(
                "EarlyStopping: no %r from an evaluation at iteration %d; is an EvalHook "
                "registered before this hook, and is the metric name right?",
                self._metric,
                self.trainer.iter,
            )
            return
        value = float(latest[0])
        if not math.isnan(value) and self._improved(value):
            self.best_metric, self.best_iter, self.bad_evals = value, self.trainer.iter, 0
            if self._save_best:
                check_before_save(self.trainer, self._checkpointer.model)
                self._checkpointer.save("model_best", iteration=self.trainer.iter)
            return
        self.bad_evals += 1
        logger.info(
            "EarlyStopping: %s=%.5g, no improvement on %.5g (iteration %s) for %d of %d "
            "evaluations.",
            self._metric,
            value,
            self.best_metric if self.best_metric is not None else math.nan,
            self.best_iter,
            self.bad_evals,
            self._patience,
        )
        if self.bad_evals >= self._patience:
            self.trainer.request_stop(
                f"{self._metric} did not improve by more than {self._min_delta:g} in "
                f"{self._patience} evaluations (best {self.best_metric} at iteration "
                f"{self.best_iter}; mode {self._mode})"
            )

    def after_train(self) -> None:
        trainer = self.trainer
        if trainer.stop_reason is None or self.training_completed():
            return
        check_before_save(trainer, self._checkpointer.model)
        self._checkpointer.save("model_final", iteration=trainer.iter - 1)

    def state_dict(self) -> Dict[str, Any]:
        return {
            "best_metric": self.best_metric,
            "best_iter": self.best_iter,
            "bad_evals": self.bad_evals,
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best_metric = state["best_metric"]
        self.best_iter = state["best_iter"]
        self.bad_evals = int(state["bad_evals"])
