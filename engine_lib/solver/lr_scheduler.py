"""Learning-rate schedules: fvcore's ``param_scheduler`` shapes driven per iteration.

A schedule is a :class:`fvcore.common.param_scheduler.ParamScheduler`, a function of the
fraction of training done (``where`` in [0, 1)) returning an LR multiplier.
:class:`WarmupParamScheduler` prepends a warmup to any shape and :class:`LRMultiplier`
applies the multiplier to the optimizer's LRs once per iteration. ``build_lr_scheduler``
(in :mod:`engine_lib.solver.schedules`) builds one from the config.

:class:`WarmupMultiStepLR` and :class:`WarmupCosineLR` are detectron2's older closed-form
schedulers, kept for code that constructs them directly.
"""

import bisect
import logging
import math
from typing import Any, Dict, List, Sequence, Union

import torch
from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    LinearParamScheduler,
    ParamScheduler,
)

__all__ = ["LRMultiplier", "WarmupCosineLR", "WarmupMultiStepLR", "WarmupParamScheduler"]

logger = logging.getLogger(__name__)

_WARMUP_METHODS = ("linear", "constant")

# LRScheduler's type for LRs: an LR may be a Tensor (a capturable or compiled optimizer's).
_LRs = List[Union[float, torch.Tensor]]


class WarmupParamScheduler(CompositeParamScheduler):
    """A schedule preceded by a warmup over the first ``warmup_length`` of training.

    The warmup starts at ``warmup_factor * scheduler(0)`` and, for the linear method,
    rises to the value ``scheduler`` has where the warmup ends, so the curve is continuous.

    Args:
        scheduler (ParamScheduler): the schedule after the warmup.
        warmup_factor (float): the warmup's starting value, relative to ``scheduler(0)``.
        warmup_length (float): the warmup's length as a fraction of training, in [0, 1].
        warmup_method (str): ``"linear"`` (ramp up) or ``"constant"`` (hold the starting
            value, then jump). Default: ``"linear"``.
        rescale_interval (bool): if True, ``scheduler`` runs its whole course in the time
            left after the warmup; if False (default), it is evaluated at the global
            fraction of training, as if the warmup replaced its beginning.

    Raises:
        ValueError: for an unknown ``warmup_method`` or a length outside [0, 1].
    """

    def __init__(
        self,
        scheduler: ParamScheduler,
        warmup_factor: float,
        warmup_length: float,
        warmup_method: str = "linear",
        rescale_interval: bool = False,
    ) -> None:
        if not 0.0 <= warmup_length <= 1.0:
            raise ValueError(f"warmup_length must be in [0, 1]; got {warmup_length}.")
        # With a rescaled interval the schedule's own start (not its value at
        # warmup_length) is what follows the warmup.
        end_value = scheduler(0.0 if rescale_interval else warmup_length)
        start_value = warmup_factor * scheduler(0.0)
        if warmup_method == "linear":
            warmup: ParamScheduler = LinearParamScheduler(start_value, end_value)
        elif warmup_method == "constant":
            warmup = ConstantParamScheduler(start_value)
        else:
            raise ValueError(
                f"Unknown warmup method {warmup_method!r}; expected one of {list(_WARMUP_METHODS)}."
            )
        super().__init__(
            [warmup, scheduler],
            lengths=[warmup_length, 1.0 - warmup_length],
            interval_scaling=["rescaled", "rescaled" if rescale_interval else "fixed"],
        )


class LRMultiplier(torch.optim.lr_scheduler.LRScheduler):
    """Set each param group's LR to its initial LR times ``multiplier(iter / max_iter)``.

    Stepped once per iteration, after ``optimizer.step()``. Iterations past ``max_iter``
    keep the last value of the schedule (fvcore's schedules are defined on [0, 1) only).

    The state dict holds only the iteration and the base LRs (plain data, loadable with
    ``torch.load(weights_only=True)``); the schedule itself comes from the constructor,
    so a resumed run follows the schedule of its current config.

    Args:
        optimizer (torch.optim.Optimizer): the optimizer whose LRs are set.
        multiplier (ParamScheduler): LR multiplier as a function of training progress.
        max_iter (int): the number of iterations the schedule spans.
        last_iter (int): the iteration of the last step, -1 for a fresh start. Default: -1.

    Example:
        >>> sched = LRMultiplier(optimizer, CosineParamScheduler(1.0, 0.0), max_iter=1000)
        >>> for _ in range(1000):
        ...     train_step(); optimizer.step(); sched.step()
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        multiplier: ParamScheduler,
        max_iter: int,
        last_iter: int = -1,
    ) -> None:
        if not isinstance(multiplier, ParamScheduler):
            raise TypeError(
                f"multiplier must be an fvcore ParamScheduler; got {type(multiplier).__name__}."
            )
        if max_iter <= 0:
            raise ValueError(f"max_iter must be positive; got {max_iter}.")
        self._multiplier = multiplier
        self._max_iter = int(max_iter)
        super().__init__(optimizer, last_epoch=last_iter)

    def state_dict(self) -> Dict[str, Any]:
        """Return the iteration and base LRs (the schedule object is left out on purpose)."""
        return {"base_lrs": list(self.base_lrs), "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore the iteration and base LRs, and set the optimizer's LRs to match.

        Args:
            state_dict (dict): as returned by :meth:`state_dict`.
        """
        self.base_lrs = list(state_dict["base_lrs"])
        self.last_epoch = int(state_dict["last_epoch"])
        # Re-applying the LRs makes the result independent of whether the optimizer's state
        # is loaded before or after this one.
        lrs = self._compute_lrs()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs

    def get_lr(self) -> _LRs:
        """Return the LRs of the current iteration (called by ``step()``)."""
        return self._compute_lrs()

    def _compute_lrs(self) -> _LRs:
        # The step after the last iteration asks for where == 1.0, which some fvcore
        # schedules reject; hold the final value instead.
        iteration = min(max(self.last_epoch, 0), self._max_iter - 1)
        factor = self._multiplier(iteration / self._max_iter)
        return [base_lr * factor for base_lr in self.base_lrs]


def _warmup_factor(method: str, iteration: int, warmup_iters: int, warmup_factor: float) -> float:
    """The LR factor of the warmup at ``iteration`` (1 once the warmup is over)."""
    if iteration >= warmup_iters:
        return 1.0
    if method == "constant":
        return warmup_factor
    if method == "linear":
        alpha = iteration / warmup_iters
        return warmup_factor * (1.0 - alpha) + alpha
    raise ValueError(f"Unknown warmup method {method!r}; expected one of {list(_WARMUP_METHODS)}.")


class WarmupMultiStepLR(torch.optim.lr_scheduler.LRScheduler):
    """Warmup, then the LR times ``gamma`` at each milestone (detectron2's older scheduler).

    Prefer ``build_lr_scheduler`` or :class:`LRMultiplier` with a
    ``MultiStepParamScheduler``; this class is kept for code ported from detectron2.

    Args:
        optimizer (torch.optim.Optimizer): the optimizer whose LRs are set.
        milestones (list[int]): increasing iterations at which the LR drops.
        gamma (float): the factor of each drop. Default: 0.1.
        warmup_factor (float): the LR factor at iteration 0. Default: 0.001.
        warmup_iters (int): the warmup's length in iterations. Default: 1000.
        warmup_method (str): ``"linear"`` or ``"constant"``. Default: ``"linear"``.
        last_epoch (int): the iteration of the last step, -1 for a fresh start. Default: -1.

    Raises:
        ValueError: if ``milestones`` are not increasing.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        milestones: Sequence[int],
        gamma: float = 0.1,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        last_epoch: int = -1,
    ) -> None:
        if list(milestones) != sorted(milestones):
            raise ValueError(f"milestones must be increasing; got {list(milestones)}.")
        self.milestones = list(milestones)
        self.gamma = gamma
        self.warmup_factor = warmup_factor
        self.warmup_iters = warmup_iters
        self.warmup_method = warmup_method
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> _LRs:
        """Return the LRs of the current iteration (called by ``step()``)."""
        factor = _warmup_factor(
            self.warmup_method, self.last_epoch, self.warmup_iters, self.warmup_factor
        )
        decay = self.gamma ** bisect.bisect_right(self.milestones, self.last_epoch)
        return [base_lr * factor * decay for base_lr in self.base_lrs]

    def _get_closed_form_lr(self) -> _LRs:
        return self.get_lr()


class WarmupCosineLR(torch.optim.lr_scheduler.LRScheduler):
    """Warmup, then a half cosine from the base LR to 0 over ``max_iters`` (detectron2's older
    scheduler; prefer ``build_lr_scheduler``).

    Args:
        optimizer (torch.optim.Optimizer): the optimizer whose LRs are set.
        max_iters (int): the iterations of the whole schedule.
        warmup_factor (float): the LR factor at iteration 0. Default: 0.001.
        warmup_iters (int): the warmup's length in iterations. Default: 1000.
        warmup_method (str): ``"linear"`` or ``"constant"``. Default: ``"linear"``.
        last_epoch (int): the iteration of the last step, -1 for a fresh start. Default: -1.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iters: int,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        last_epoch: int = -1,
    ) -> None:
        self.max_iters = max_iters
        self.warmup_factor = warmup_factor
        self.warmup_iters = warmup_iters
        self.warmup_method = warmup_method
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> _LRs:
        """Return the LRs of the current iteration (called by ``step()``)."""
        factor = _warmup_factor(
            self.warmup_method, self.last_epoch, self.warmup_iters, self.warmup_factor
        )
        cosine = 0.5 * (1.0 + math.cos(math.pi * self.last_epoch / self.max_iters))
        return [base_lr * factor * cosine for base_lr in self.base_lrs]

    def _get_closed_form_lr(self) -> _LRs:
        return self.get_lr()
