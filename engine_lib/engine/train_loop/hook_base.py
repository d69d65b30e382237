"""The hook interface of the training loop and its "every N iterations" / epoch helpers."""

import logging
from typing import TYPE_CHECKING, Any, Dict

from engine_lib.utils.periodic import every_n_iters, every_n_iters_or_last

if TYPE_CHECKING:
    from .trainer_base import TrainerBase

__all__ = ["HookBase"]

logger = logging.getLogger(__name__)


class HookBase:
    """Base class of the hooks a :class:`TrainerBase` calls around each step.

    Each method runs on every process. ``self.trainer`` is a weak proxy of the trainer, set by
    :meth:`TrainerBase.register_hooks`; through it a hook reads ``iter``, ``max_iter``,
    ``storage`` and, for a :class:`SimpleTrainer`, ``model``, ``optimizer`` and
    ``data_loader``. A hook with state worth checkpointing overrides :meth:`state_dict` and
    :meth:`load_state_dict`; the trainer's own state then carries it.

    The trainer calls, in this order::

        hook.before_train()
        for iter in range(start_iter, max_iter):
            hook.before_step()
            trainer.run_step()      # calls hook.after_backward() before the optimizer step
            hook.after_step()
        hook.after_train()          # also after an exception
    """

    trainer: "TrainerBase" = None  # type: ignore[assignment]

    def before_train(self) -> None:
        """Called once before the first iteration."""

    def after_train(self) -> None:
        """Called once after the last iteration, or after training stopped on an exception."""

    def before_step(self) -> None:
        """Called before each iteration."""

    def after_backward(self) -> None:
        """Called after the gradients of an iteration are computed, before they are clipped
        (with fp16, they are still multiplied by the grad scaler's scale)."""

    def after_step(self) -> None:
        """Called after each iteration's optimizer step."""

    def state_dict(self) -> Dict[str, Any]:
        """Return the hook's state for a checkpoint; the default hook is stateless.

        A stateful hook returns plain data (numbers, strings, tensors, lists and dicts of
        them) so that checkpoints load with ``torch.load(weights_only=True)``.
        """
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Args:
            state (dict): the hook's saved state.
        """

    def every_n_iters(self, n: int) -> bool:
        """Return True after every ``n``-th iteration (``(iter + 1) % n == 0``); never if n <= 0.

        Args:
            n (int): the period in iterations.
        """
        return every_n_iters(self.trainer.iter, n)

    def is_last_iter(self) -> bool:
        """Return True during the last iteration of training."""
        return self.trainer.iter == self.trainer.max_iter - 1

    def every_n_iters_or_last(self, n: int) -> bool:
        """Return True after every ``n``-th iteration and during the last one.

        Args:
            n (int): the period in iterations (<= 0: only the last iteration).
        """
        # One call, not three: the periodic hooks (writer, checkpointer) ask at every step.
        trainer = self.trainer
        return every_n_iters_or_last(trainer.iter, n, trainer.max_iter)

    def training_completed(self) -> bool:
        """Return True in :meth:`after_train` when every iteration ran (no exception, no
        early stop: see ``trainer.stop_reason``)."""
        return self.trainer.iter >= self.trainer.max_iter

    # Epoch helpers: "before_epoch" / "after_epoch" behaviour without new hook points. They
    # derive the epoch from the iteration, so they stay right after a resume mid-epoch. They
    # read ``trainer.iters_per_epoch`` (TrainerBase: 0, unknown; DefaultTrainer sets it from
    # the data set). While it is unknown, training counts as one epoch: epoch 0 starts at
    # iteration 0 and ends at the last iteration.
    def current_epoch(self) -> int:
        """Return the 0-based epoch of the current iteration (0 while epochs are unknown)."""
        per_epoch = self.trainer.iters_per_epoch
        return self.trainer.iter // per_epoch if per_epoch > 0 else 0

    def is_epoch_start(self) -> bool:
        """Return True during the first iteration of an epoch (use in ``before_step``).

        While ``trainer.iters_per_epoch`` is unknown (0), only iteration 0 starts an epoch.
        """
        per_epoch = self.trainer.iters_per_epoch
        if per_epoch <= 0:
            return self.trainer.iter == 0
        return self.trainer.iter % per_epoch == 0

    def is_epoch_end(self) -> bool:
        """Return True during the last iteration of an epoch, or of training (a last partial
        epoch also ends); use in ``after_step``. While ``trainer.iters_per_epoch`` is unknown
        (0), only the last iteration of training ends an epoch."""
        return self.every_n_iters(self.trainer.iters_per_epoch) or self.is_last_iter()
