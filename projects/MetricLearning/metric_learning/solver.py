"""The project's own optimizer and LR schedule, added by registration (no engine edit).

``SOLVER.OPTIMIZER: RMSprop`` and ``SOLVER.LR_SCHEDULER_NAME: WarmupLinearLR`` select them
(see ``configs/digits_triplet_rmsprop.yaml``); importing this module registers them.
"""

import logging
from typing import Any, Dict, List

import torch
from fvcore.common.param_scheduler import LinearParamScheduler, ParamScheduler

from engine_lib.solver import LR_SCHEDULER_REGISTRY, OPTIMIZER_REGISTRY

__all__ = ["build_rmsprop", "build_warmup_linear"]

logger = logging.getLogger(__name__)


@OPTIMIZER_REGISTRY.register("RMSprop")
def build_rmsprop(cfg: Any, params: List[Dict[str, Any]]) -> torch.optim.Optimizer:
    """RMSprop over the engine's parameter groups, with ``SOLVER.BASE_LR`` and ``MOMENTUM``.

    Args:
        cfg (CfgNode): the config.
        params (list[dict]): the parameter groups (per-group LR and weight decay set).

    Returns:
        torch.optim.RMSprop: the optimizer.
    """
    return torch.optim.RMSprop(params, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM)


@LR_SCHEDULER_REGISTRY.register("WarmupLinearLR")
def build_warmup_linear(cfg: Any) -> ParamScheduler:
    """A linear decay from the base LR to ``BASE_LR * SOLVER.BASE_LR_END`` (the engine adds
    the ``SOLVER.WARMUP_*`` warmup in front).

    Args:
        cfg (CfgNode): the config.

    Returns:
        ParamScheduler: the LR multiplier over training.
    """
    return LinearParamScheduler(1.0, cfg.SOLVER.BASE_LR_END)
