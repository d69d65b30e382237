"""``META_ARCH_REGISTRY`` and ``build_model``."""

import logging
from typing import Tuple

import torch
from tabulate import tabulate
from torch import nn

from engine_lib.config import CfgNode
from engine_lib.utils.errors import ConfigError
from engine_lib.utils.registry import Registry

from .registry import get_from_registry

__all__ = ["META_ARCH_REGISTRY", "build_model", "parameter_count_table"]

logger = logging.getLogger(__name__)

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = """
Whole models, selected by ``MODEL.META_ARCHITECTURE``. An entry is called as ``entry(cfg)``
and returns an ``nn.Module`` whose ``forward(batched_inputs: list[dict])`` returns a dict of
losses in training mode and a list of per-sample output dicts in eval mode.
"""


def _device(cfg: CfgNode) -> torch.device:
    try:
        device = torch.device(cfg.MODEL.DEVICE)
    except RuntimeError as e:
        raise ConfigError(f"MODEL.DEVICE={cfg.MODEL.DEVICE!r} is not a device: {e}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"MODEL.DEVICE={cfg.MODEL.DEVICE!r} but CUDA is not available; use MODEL.DEVICE cpu"
        )
    return device


def parameter_count_table(model: nn.Module) -> str:
    """Return a table of parameter counts per top-level submodule, plus the total.

    fvcore's ``parameter_count_table`` rounds the counts and cannot tell frozen parameters
    from trained ones, which matters once layers are frozen; hence this small version.

    Args:
        model (nn.Module): the model.

    Returns:
        str: a table with columns module, #params, #trainable.
    """

    def counts(module: nn.Module) -> Tuple[int, int]:
        params = list(module.parameters())
        return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)

    rows = [(name, *counts(child)) for name, child in model.named_children()]
    rows.append(("total", *counts(model)))
    return tabulate(rows, headers=["module", "#params", "#trainable"], tablefmt="pipe", intfmt=",")


def build_model(cfg: CfgNode) -> nn.Module:
    """Build the model named by ``MODEL.META_ARCHITECTURE`` on ``MODEL.DEVICE``.

    Weights in ``MODEL.WEIGHTS`` are not loaded here; the checkpointer does that.

    Args:
        cfg (CfgNode): the config.

    Returns:
        nn.Module: the model, in training mode, on ``MODEL.DEVICE``.

    Raises:
        UnknownNameError: ``MODEL.META_ARCHITECTURE`` (or a name it reads) is not registered.
        ConfigError: ``MODEL.DEVICE`` is not usable, or another model key has a bad value.
    """
    device = _device(cfg)
    meta_arch = get_from_registry(
        META_ARCH_REGISTRY, cfg.MODEL.META_ARCHITECTURE, "MODEL.META_ARCHITECTURE"
    )
    model = meta_arch(cfg)
    model.to(device)
    logger.info("Model %s on %s:\n%s", type(model).__name__, device, parameter_count_table(model))
    return model
