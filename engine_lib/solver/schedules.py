"""The LR schedules ``SOLVER.LR_SCHEDULER_NAME`` can name, and ``build_lr_scheduler``.

A registered schedule is a function ``(cfg) -> ParamScheduler``: the shape of the LR
multiplier over training (``where`` in [0, 1), starting at 1.0). :func:`build_lr_scheduler`
adds the ``SOLVER.WARMUP_*`` warmup in front and wraps it in an :class:`LRMultiplier`. A
project adds one with no engine edit:

Example:
    >>> from fvcore.common.param_scheduler import PolynomialDecayParamScheduler
    >>> from engine_lib.solver import LR_SCHEDULER_REGISTRY
    >>> @LR_SCHEDULER_REGISTRY.register("WarmupPolyLR")
    ... def build_poly(cfg):
    ...     return PolynomialDecayParamScheduler(1.0, power=0.9)

A schedule that honours ``SOLVER.DELAY_EPOCHS`` sets ``supports_delay_epochs = True`` on
its function; for the others a positive ``DELAY_EPOCHS`` is an error rather than ignored.
"""

import logging
from typing import Any, List

import torch
from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    CosineParamScheduler,
    MultiStepParamScheduler,
    ParamScheduler,
    StepWithFixedGammaParamScheduler,
)

from engine_lib.utils.errors import ConfigError
from engine_lib.utils.registry import Registry

from .checks import check_solver_settings
from .lr_scheduler import _WARMUP_METHODS, LRMultiplier, WarmupParamScheduler

__all__ = ["LR_SCHEDULER_REGISTRY", "build_lr_scheduler"]

logger = logging.getLogger(__name__)

# name -> (cfg) -> ParamScheduler, the LR multiplier's shape before the warmup
LR_SCHEDULER_REGISTRY = Registry("LR_SCHEDULER")


@LR_SCHEDULER_REGISTRY.register("WarmupMultiStepLR")
def _multi_step(cfg: Any) -> ParamScheduler:
    """The LR times ``GAMMA`` at each of ``STEPS`` (steps at or past ``MAX_ITER`` dropped)."""
    solver = cfg.SOLVER
    steps = _valid_steps(solver.STEPS, solver.MAX_ITER)
    return MultiStepParamScheduler(
        values=[solver.GAMMA**k for k in range(len(steps) + 1)],
        milestones=steps,
        num_updates=solver.MAX_ITER,
    )


@LR_SCHEDULER_REGISTRY.register("WarmupCosineLR")
def _cosine(cfg: Any) -> ParamScheduler:
    """A half cosine to ``BASE_LR_END``, held at its start for ``DELAY_EPOCHS`` epochs."""
    solver = cfg.SOLVER
    sched: ParamScheduler = CosineParamScheduler(1.0, solver.BASE_LR_END)
    delay = _delay_iters(solver)
    if delay > 0:
        fraction = delay / solver.MAX_ITER
        sched = CompositeParamScheduler(
            [ConstantParamScheduler(1.0), sched],
            lengths=[fraction, 1.0 - fraction],
            interval_scaling=["rescaled", "rescaled"],
        )
    return sched


_cosine.supports_delay_epochs = True


@LR_SCHEDULER_REGISTRY.register("WarmupStepWithFixedGammaLR")
def _step_with_fixed_gamma(cfg: Any) -> ParamScheduler:
    """The LR times ``GAMMA`` ``NUM_DECAYS`` times, at equal intervals (detectron2's)."""
    solver = cfg.SOLVER
    return StepWithFixedGammaParamScheduler(
        base_value=1.0,
        gamma=solver.GAMMA,
        num_decays=solver.NUM_DECAYS,
        num_updates=solver.MAX_ITER,
    )


@LR_SCHEDULER_REGISTRY.register("WarmupConstantLR")
def _constant(cfg: Any) -> ParamScheduler:
    """The base LR throughout (after the warmup)."""
    return ConstantParamScheduler(1.0)


def build_lr_scheduler(cfg: Any, optimizer: torch.optim.Optimizer) -> LRMultiplier:
    """Build the LR schedule ``SOLVER.LR_SCHEDULER_NAME`` names in ``LR_SCHEDULER_REGISTRY``.

    Built in: ``WarmupMultiStepLR`` multiplies the LR by ``GAMMA`` at each of ``STEPS``
    (steps at or beyond ``MAX_ITER`` are dropped with a warning), ``WarmupCosineLR`` decays
    it along a half cosine to ``BASE_LR * BASE_LR_END``, ``WarmupStepWithFixedGammaLR``
    multiplies it by ``GAMMA`` ``NUM_DECAYS`` times at equal intervals, ``WarmupConstantLR``
    keeps it. Each starts with ``WARMUP_ITERS`` iterations of ``WARMUP_METHOD`` warmup from
    ``BASE_LR * WARMUP_FACTOR`` (with ``RESCALE_INTERVAL``, the schedule runs its whole course
    after the warmup). With ``DELAY_EPOCHS`` D > 0 (fastreid), the cosine holds
    its start value until iteration ``D * ITERS_PER_EPOCH`` and decays over the rest; as in
    fastreid the delay counts from iteration 0, so a shorter warmup is part of it.

    Args:
        cfg (CfgNode): the config, with periods in iterations
            (:func:`engine_lib.config.epochs.resolve_epochs`); reads
            ``SOLVER.LR_SCHEDULER_NAME, MAX_ITER, STEPS, GAMMA, BASE_LR_END, NUM_DECAYS,
            WARMUP_FACTOR, WARMUP_ITERS, WARMUP_METHOD, RESCALE_INTERVAL, DELAY_EPOCHS,
            ITERS_PER_EPOCH``.
        optimizer (torch.optim.Optimizer): the optimizer whose LRs are scheduled.

    Returns:
        LRMultiplier: the scheduler, to be stepped once per iteration.

    Raises:
        ConfigError: for an unknown schedule (naming the closest registered ones) or
            warmup method, or inconsistent values.
    """
    solver = cfg.SOLVER
    _check_in_iterations(solver)
    # Keys that would do nothing under this schedule, a run that is all warmup, fp16 on CPU.
    check_solver_settings(cfg)
    build = LR_SCHEDULER_REGISTRY.get_for_key("SOLVER.LR_SCHEDULER_NAME", solver.LR_SCHEDULER_NAME)
    if solver.DELAY_EPOCHS > 0 and not getattr(build, "supports_delay_epochs", False):
        raise ConfigError(
            f"SOLVER.DELAY_EPOCHS={solver.DELAY_EPOCHS} delays a cosine decay, but "
            f"SOLVER.LR_SCHEDULER_NAME is {solver.LR_SCHEDULER_NAME!r}; use 'WarmupCosineLR' "
            f"or set SOLVER.DELAY_EPOCHS 0."
        )
    sched = build(cfg)
    if solver.WARMUP_METHOD not in _WARMUP_METHODS:
        raise ConfigError(
            f"SOLVER.WARMUP_METHOD: unknown warmup method {solver.WARMUP_METHOD!r}; "
            f"expected one of {list(_WARMUP_METHODS)}."
        )
    if solver.WARMUP_ITERS < 0:
        raise ConfigError(f"SOLVER.WARMUP_ITERS must be >= 0; got {solver.WARMUP_ITERS}.")
    max_iter = solver.MAX_ITER
    if solver.WARMUP_ITERS > 0:
        sched = WarmupParamScheduler(
            sched,
            solver.WARMUP_FACTOR,
            min(solver.WARMUP_ITERS / max_iter, 1.0),
            solver.WARMUP_METHOD,
            rescale_interval=solver.RESCALE_INTERVAL,
        )
    return LRMultiplier(optimizer, multiplier=sched, max_iter=max_iter)


def _check_in_iterations(solver: Any) -> None:
    """MAX_ITER, WARMUP_ITERS and STEPS must be resolved iteration counts."""
    if solver.MAX_ITER <= 0:
        raise ConfigError(
            f"SOLVER.MAX_ITER must be positive; got {solver.MAX_ITER}. With SOLVER.MAX_EPOCH, "
            f"resolve the config first (engine_lib.config.epochs.resolve_epochs; DefaultTrainer "
            f"does)."
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


def _delay_iters(solver: Any) -> int:
    """``SOLVER.DELAY_EPOCHS`` in iterations, checked against the schedule and MAX_ITER."""
    if solver.DELAY_EPOCHS <= 0:
        return 0
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
