"""Step the LR schedule every iteration and record the LR."""

import logging
from typing import Any, Dict, Optional

import torch

from ..train_loop import HookBase

__all__ = ["LRScheduler"]

logger = logging.getLogger(__name__)


class LRScheduler(HookBase):
    """Step a per-iteration LR scheduler after each optimizer step; put the LR as "lr".

    "lr" is the LR used in the iteration, of the param group with the most parameters (the
    "main" LR, rather than e.g. a bias group's), read from ``optimizer.param_groups`` as a
    python float: no device sync.

    The hook's state is the scheduler's, and it is the one place a checkpoint stores it (as
    in detectron2): ``DefaultTrainer`` does not also give the scheduler to its checkpointer.
    A checkpoint of an older version that holds it in both places still resumes; its
    top-level ``"scheduler"`` entry is left unused.

    Args:
        optimizer (torch.optim.Optimizer, optional): default: ``trainer.optimizer``.
        scheduler (torch.optim.lr_scheduler.LRScheduler, optional): default:
            ``trainer.scheduler``.
    """

    def __init__(
        self,
        optimizer: Optional[torch.optim.Optimizer] = None,
        scheduler: Optional[torch.optim.lr_scheduler.LRScheduler] = None,
    ) -> None:
        self._optimizer = optimizer
        self._scheduler = scheduler
        self._group_index = 0

    @property
    def scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        """The scheduler stepped: the one given, else the trainer's ``scheduler``."""
        if self._scheduler is not None:
            return self._scheduler
        return self.trainer.scheduler  # type: ignore[attr-defined]  # a trainer that has one

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer whose LR is recorded: the one given, else the trainer's."""
        if self._optimizer is not None:
            return self._optimizer
        return self.trainer.optimizer  # type: ignore[attr-defined]  # a trainer that has one

    def before_train(self) -> None:
        groups = self.optimizer.param_groups
        self._group_index = max(range(len(groups)), key=lambda i: len(groups[i]["params"]))
        # Looked up once per train(), not at every step (where they were a visible cost).
        self._group = groups[self._group_index]
        self._step = self.scheduler.step
        self._put_scalar = self.trainer.storage.put_scalar

    def after_step(self) -> None:
        self._put_scalar("lr", self._group["lr"], smoothing_hint=False)
        self._step()

    def state_dict(self) -> Dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)
