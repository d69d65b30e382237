"""Run an evaluation function periodically and record its results."""

import logging
import numbers
from typing import Any, Callable, Dict, Mapping, Optional

import torch

from engine_lib.evaluation import flatten_results_dict
from engine_lib.utils import comm

from ..train_loop import HookBase

__all__ = ["EvalHook"]

logger = logging.getLogger(__name__)


def _scalar_results(results: Mapping[str, Any]) -> Dict[str, float]:
    """Flatten nested results to ``{"task/metric": float}``.

    Raises:
        ValueError: if a leaf is not a real number (or a one-element tensor).
    """
    flat: Dict[str, float] = {}
    for name, value in flatten_results_dict(results).items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if not isinstance(value, numbers.Real):
            raise ValueError(
                f"EvalHook: the evaluation function must return a nested dict of numbers; "
                f"got {name!r}: {value!r}"
            )
        flat[name] = float(value)
    return flat


class EvalHook(HookBase):
    """Call ``eval_function()`` every ``eval_period`` iterations and after training.

    Its results (a dict of numbers, possibly nested) are put into the storage as
    ``"task/metric"`` scalars at the current iteration. Every rank must run the hook: the
    function typically evaluates in parallel, and the main process's results (the others may
    return ``{}``) are then shared with every rank, so that later hooks, like
    :class:`BestCheckpointer`, decide the same on all of them. The trainer's buffered losses
    are flushed first, so a diverged model is reported instead of evaluated.

    Args:
        eval_period (int): evaluate every this many iterations; <= 0: only after training.
        eval_function (callable): takes no argument and returns a dict of results (or None).
        eval_after_train (bool): also evaluate once training completed. Default: True.
    """

    def __init__(
        self,
        eval_period: int,
        eval_function: Callable[[], Optional[Mapping[str, Any]]],
        eval_after_train: bool = True,
    ) -> None:
        self._period = eval_period
        self._func = eval_function
        self._eval_after_train = eval_after_train

    def _do_eval(self) -> None:
        self.trainer.flush_metrics()
        results = self._func()
        if results and not isinstance(results, Mapping):
            raise ValueError(
                f"EvalHook: the evaluation function must return a dict (or None), got {results!r}"
            )
        flat = _scalar_results(results) if results else {}
        merged: Dict[str, float] = {}
        # Reversed: for a metric several ranks report, the lowest rank's value wins.
        for rank_results in reversed(comm.all_gather(flat)):
            merged.update(rank_results)
        for name, value in merged.items():
            self.trainer.storage.put_scalar(name, value, smoothing_hint=False)

    def after_step(self) -> None:
        # With eval_after_train the last iteration is evaluated there, once: not twice.
        last_in_after_train = self._eval_after_train and self.is_last_iter()
        if self.every_n_iters(self._period) and not last_in_after_train:
            self._do_eval()

    def after_train(self) -> None:
        if self._eval_after_train and self.training_completed():
            self._do_eval()
