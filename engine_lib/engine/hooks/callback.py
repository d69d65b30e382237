"""A hook made of plain functions."""

import logging
from typing import Any, Callable, Optional

from ..train_loop import HookBase

__all__ = ["CallbackHook"]

logger = logging.getLogger(__name__)

Callback = Optional[Callable[[Any], None]]


class CallbackHook(HookBase):
    """Call the given functions (each taking the trainer) at the matching hook points.

    Args:
        before_train (callable, optional): called as ``before_train(trainer)``.
        after_train (callable, optional): called as ``after_train(trainer)``.
        before_step (callable, optional): called as ``before_step(trainer)``.
        after_backward (callable, optional): called as ``after_backward(trainer)``.
        after_step (callable, optional): called as ``after_step(trainer)``.

    Example:
        >>> CallbackHook(after_step=lambda trainer: print(trainer.iter))
    """

    def __init__(
        self,
        *,
        before_train: Callback = None,
        after_train: Callback = None,
        before_step: Callback = None,
        after_backward: Callback = None,
        after_step: Callback = None,
    ) -> None:
        self._before_train = before_train
        self._after_train = after_train
        self._before_step = before_step
        self._after_backward = after_backward
        self._after_step = after_step

    def before_train(self) -> None:
        if self._before_train is not None:
            self._before_train(self.trainer)

    def after_train(self) -> None:
        if self._after_train is not None:
            self._after_train(self.trainer)

    def before_step(self) -> None:
        if self._before_step is not None:
            self._before_step(self.trainer)

    def after_backward(self) -> None:
        if self._after_backward is not None:
            self._after_backward(self.trainer)

    def after_step(self) -> None:
        if self._after_step is not None:
            self._after_step(self.trainer)
