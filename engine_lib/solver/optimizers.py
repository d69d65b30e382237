"""The optimizers ``SOLVER.OPTIMIZER`` can name: ``OPTIMIZER_REGISTRY`` and the built-in ones.

A registered optimizer is a function ``(cfg, params) -> torch.optim.Optimizer``: ``params``
are the parameter groups :func:`engine_lib.solver.build_optimizer` made from the ``SOLVER``
keys (with ``"lr"`` and ``"weight_decay"`` set per group), so the function only reads the
keys its optimizer has. A project adds one with no engine edit:

Example:
    >>> from engine_lib.solver import OPTIMIZER_REGISTRY
    >>> @OPTIMIZER_REGISTRY.register("RMSprop")
    ... def build_rmsprop(cfg, params):
    ...     return torch.optim.RMSprop(params, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM)
"""

import inspect
import logging
from typing import Any, Dict, List, Tuple

import torch

from engine_lib.utils.errors import ConfigError
from engine_lib.utils.registry import Registry

__all__ = ["OPTIMIZER_REGISTRY"]

logger = logging.getLogger(__name__)

# name -> (cfg, params) -> torch.optim.Optimizer
OPTIMIZER_REGISTRY = Registry("OPTIMIZER")


@OPTIMIZER_REGISTRY.register("SGD")
def _build_sgd(cfg: Any, params: List[Dict[str, Any]]) -> torch.optim.Optimizer:
    solver = cfg.SOLVER
    if solver.NESTEROV and solver.MOMENTUM <= 0:
        raise ConfigError(
            f"SOLVER.NESTEROV is True but SOLVER.MOMENTUM is {solver.MOMENTUM}; "
            "Nesterov momentum needs SOLVER.MOMENTUM > 0."
        )
    return torch.optim.SGD(
        params,
        lr=solver.BASE_LR,
        momentum=solver.MOMENTUM,
        nesterov=solver.NESTEROV,
        **fast_path_kwargs(torch.optim.SGD, params),
    )


@OPTIMIZER_REGISTRY.register("Adam")
def _build_adam(cfg: Any, params: List[Dict[str, Any]]) -> torch.optim.Optimizer:
    return _build_adam_like(torch.optim.Adam, cfg, params)


@OPTIMIZER_REGISTRY.register("AdamW")
def _build_adamw(cfg: Any, params: List[Dict[str, Any]]) -> torch.optim.Optimizer:
    return _build_adam_like(torch.optim.AdamW, cfg, params)


def _build_adam_like(
    optimizer_cls: type, cfg: Any, params: List[Dict[str, Any]]
) -> torch.optim.Optimizer:
    betas = _betas_from_cfg(cfg.SOLVER.BETAS)
    fast_path = fast_path_kwargs(optimizer_cls, params)
    return optimizer_cls(params, lr=cfg.SOLVER.BASE_LR, betas=betas, **fast_path)


def _betas_from_cfg(value: Any) -> Tuple[float, float]:
    if len(value) != 2:
        raise ConfigError(f"SOLVER.BETAS: got {value!r}; expected two numbers [beta1, beta2].")
    return float(value[0]), float(value[1])


def fast_path_kwargs(optimizer_cls: type, groups: List[Dict[str, Any]]) -> Dict[str, bool]:
    """Choose torch's fused or foreach update for the parameters' device.

    Fused kernels are taken only on CUDA, where they are well proven (SGD has them from
    torch 2.3 on, hence the signature check). Elsewhere torch's own default applies: foreach
    where the device has those kernels, a per-parameter loop on CPU. A registered optimizer
    may pass these keyword arguments to its constructor too.

    Args:
        optimizer_cls (type): the optimizer class.
        groups (list[dict]): the parameter groups.

    Returns:
        dict: ``{"fused": True}``, ``{"foreach": True}`` or ``{}``.
    """
    params = [p for group in groups for p in group["params"]]
    if not params or any(p.device.type != "cuda" or not p.is_floating_point() for p in params):
        return {}
    if "fused" in inspect.signature(optimizer_cls).parameters:
        return {"fused": True}
    return {"foreach": True}
