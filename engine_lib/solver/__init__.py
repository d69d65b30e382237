"""Optimizers and learning-rate schedules built from the ``SOLVER`` config."""

from .build import (
    NORM_MODULE_TYPES,
    build_optimizer,
    get_default_optimizer_params,
    reduce_param_groups,
)
from .lr_scheduler import LRMultiplier, WarmupParamScheduler, build_lr_scheduler

__all__ = [
    "NORM_MODULE_TYPES",
    "LRMultiplier",
    "WarmupParamScheduler",
    "build_lr_scheduler",
    "build_optimizer",
    "get_default_optimizer_params",
    "reduce_param_groups",
]
