"""Optimizers and learning-rate schedules built from the ``SOLVER`` config.

Both are chosen by name from a registry (``OPTIMIZER_REGISTRY`` by ``SOLVER.OPTIMIZER``,
``LR_SCHEDULER_REGISTRY`` by ``SOLVER.LR_SCHEDULER_NAME``), so a project adds its own with a
decorator and no engine edit.
"""

# config_ranges registers the value ranges of the SOLVER keys.
from . import config_ranges  # noqa: F401
from .build import (
    NORM_MODULE_TYPES,
    build_optimizer,
    get_default_optimizer_params,
    reduce_param_groups,
)
from .gradient_clipping import maybe_add_gradient_clipping
from .lr_scheduler import LRMultiplier, WarmupCosineLR, WarmupMultiStepLR, WarmupParamScheduler
from .optimizers import OPTIMIZER_REGISTRY
from .schedules import LR_SCHEDULER_REGISTRY, build_lr_scheduler

__all__ = [
    "LR_SCHEDULER_REGISTRY",
    "NORM_MODULE_TYPES",
    "OPTIMIZER_REGISTRY",
    "LRMultiplier",
    "WarmupCosineLR",
    "WarmupMultiStepLR",
    "WarmupParamScheduler",
    "build_lr_scheduler",
    "build_optimizer",
    "get_default_optimizer_params",
    "maybe_add_gradient_clipping",
    "reduce_param_groups",
]
