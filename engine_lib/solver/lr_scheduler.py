"""Learning-rate schedules: fvcore's ``param_scheduler`` shapes driven per iteration.

A schedule is a :class:`fvcore.common.param_scheduler.ParamScheduler`, a function of the
fraction of training done (``where`` in [0, 1)) returning an LR multiplier.
:class:`WarmupParamScheduler` prepends a warmup to any shape and :class:`LRMultiplier`
applies the multiplier to the optimizer's LRs once per iteration.
"""

import logging
from typing import Any, Dict, List

import torch
from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    CosineParamScheduler,
    LinearParamScheduler,
    MultiStepParamScheduler,
    ParamScheduler,
)

from engine_lib.utils.errors import ConfigError

__all__ = ["LRMultiplier", "WarmupParamScheduler", "build_lr_scheduler"]

logger = logging.getLogger(__name__)

_SCHEDULERS = ("WarmupMultiStepLR", "WarmupCosineLR", "WarmupConstantLR")
_WARMUP_METHODS = ("linear", "constant")


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

    def get_lr(self) -> List[float]:
        """Return the LRs of the current iteration (called by ``step()``)."""
        return self._compute_lrs()

    def _compute_lrs(self) -> List[float]:
        # The step after the last iteration asks for where == 1.0, which some fvcore
        # schedules reject; hold the final value instead.
        iteration = min(max(self.last_epoch, 0), self._max_iter - 1)
        factor = self._multiplier(iteration / self._max_iter)
        return [base_lr * factor for base_lr in self.base_lrs]


def build_lr_scheduler(cfg: Any, optimizer: torch.optim.Optimizer) -> LRMultiplier:
    """Build the LR schedule named by ``SOLVER.LR_SCHEDULER_NAME``.

    ``WarmupMultiStepLR`` multiplies the LR by ``GAMMA`` at each of ``STEPS`` (steps at or
    beyond ``MAX_ITER`` are dropped with a warning), ``WarmupCosineLR`` decays it along a
    half cosine to ``BASE_LR * BASE_LR_END``, ``WarmupConstantLR`` keeps it. Each starts
    with ``WARMUP_ITERS`` iterations of ``WARMUP_METHOD`` warmup from
    ``BASE_LR * WARMUP_FACTOR``. With ``DELAY_EPOCHS`` D > 0 (fastreid), the cosine holds
    its start value until iteration ``D * ITERS_PER_EPOCH`` and decays over the rest; as in
    fastreid the delay counts from iteration 0, so a shorter warmup is part of it.

    Args:
        cfg (CfgNode): the config, with periods in iterations
            (:func:`engine_lib.config.epochs.resolve_epochs`); reads
            ``SOLVER.LR_SCHEDULER_NAME, MAX_ITER, STEPS, GAMMA, BASE_LR_END, WARMUP_FACTOR,
            WARMUP_ITERS, WARMUP_METHOD, DELAY_EPOCHS, ITERS_PER_EPOCH``.
        optimizer (torch.optim.Optimizer): the optimizer whose LRs are scheduled.

    Returns:
        LRMultiplier: the scheduler, to be stepped once per iteration.

    Raises:
        ConfigError: for an unknown schedule or warmup method, or inconsistent values.
    """
    solver = cfg.SOLVER
    name = solver.LR_SCHEDULER_NAME
    max_iter = solver.MAX_ITER
    if max_iter <= 0:
        raise ConfigError(
            f"SOLVER.MAX_ITER must be positive; got {max_iter}. With SOLVER.MAX_EPOCH, resolve "
            f"the config first (engine_lib.config.epochs.resolve_epochs; DefaultTrainer does)."
        )
    for key, values in (
        ("SOLVER.WARMUP_ITERS", [solver.WARMUP_ITERS]),
        ("SOLVER.STEPS", solver.STEPS),
    ):
        if any(isinstance(v, str) for v in values):
            raise ConfigError(
                f"{key}={tuple(values)!r} is in epochs; resolve the config to iterations first "
                f"(engine_lib.config.epochs.resolve_epochs; DefaultTrainer does)."
            )
    delay = _delay_iters(solver)
    if name == "WarmupMultiStepLR":
        steps = _valid_steps(solver.STEPS, max_iter)
        sched: ParamScheduler = MultiStepParamScheduler(
            values=[solver.GAMMA**k for k in range(len(steps) + 1)],
            milestones=steps,
            num_updates=max_iter,
        )
    elif name == "WarmupCosineLR":
        sched = CosineParamScheduler(1.0, solver.BASE_LR_END)
        if delay > 0:
            sched = CompositeParamScheduler(
                [ConstantParamScheduler(1.0), sched],
                lengths=[delay / max_iter, 1.0 - delay / max_iter],
                interval_scaling=["rescaled", "rescaled"],
            )
    elif name == "WarmupConstantLR":
        sched = ConstantParamScheduler(1.0)
    else:
        raise ConfigError(
            f"SOLVER.LR_SCHEDULER_NAME: unknown schedule {name!r}; "
            f"expected one of {list(_SCHEDULERS)}."
        )
    if solver.WARMUP_METHOD not in _WARMUP_METHODS:
        raise ConfigError(
            f"SOLVER.WARMUP_METHOD: unknown warmup method {solver.WARMUP_METHOD!r}; "
            f"expected one of {list(_WARMUP_METHODS)}."
        )
    if solver.WARMUP_ITERS < 0:
        raise ConfigError(f"SOLVER.WARMUP_ITERS must be >= 0; got {solver.WARMUP_ITERS}.")
    if solver.WARMUP_ITERS > 0:
        sched = WarmupParamScheduler(
            sched,
            solver.WARMUP_FACTOR,
            min(solver.WARMUP_ITERS / max_iter, 1.0),
            solver.WARMUP_METHOD,
        )
    return LRMultiplier(optimizer, multiplier=sched, max_iter=max_iter)


def _delay_iters(solver: Any) -> int:
    """``SOLVER.DELAY_EPOCHS`` in iterations, checked against the schedule and MAX_ITER."""
    if solver.DELAY_EPOCHS <= 0:
        return 0
    if solver.LR_SCHEDULER_NAME != "WarmupCosineLR":
        raise ConfigError(
            f"SOLVER.DELAY_EPOCHS={solver.DELAY_EPOCHS} delays a cosine decay, but "
            f"SOLVER.LR_SCHEDULER_NAME is {solver.LR_SCHEDULER_NAME!r}; use 'WarmupCosineLR' "
            f"or set SOLVER.DELAY_EPOCHS 0."
        )
    if solver.ITERS_PER_EPOCH <= 0:
        raise ConfigError(
            f"SOLVER.DELAY_EPOCHS={solver.DELAY_EPOCHS} needs SOLVER.ITERS_PER_EPOCH, which is "
            f"not known; resolve the config first (engine_lib.config.epochs.resolve_epochs)."
        )
    delay = solver.DELAY_EPOCHS * solver.ITERS_PER_EPOCH
    if delay >= solver.MAX_ITER:
        raise ConfigError(
            f"SOLVER.DELAY_EPOCHS={solver.DELAY_EPOCHS} ({delay} iterations) leaves no room for "
            f"the cosine decay in SOLVER.MAX_ITER={solver.MAX_ITER} iterations."
        )
    return delay


def _valid_steps(steps: Any, max_iter: int) -> List[int]:
    steps = [int(s) for s in steps]
    if any(b <= a for a, b in zip(steps, steps[1:])) or any(s <= 0 for s in steps):
        raise ConfigError(
            f"SOLVER.STEPS: got {steps}; expected positive, strictly increasing iterations."
        )
    kept = [s for s in steps if s < max_iter]
    if len(kept) < len(steps):
        logger.warning(
            "SOLVER.STEPS %s at or beyond SOLVER.MAX_ITER=%d are ignored.",
            steps[len(kept) :],
            max_iter,
        )
    return kept
