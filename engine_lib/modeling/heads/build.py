"""``HEADS_REGISTRY`` and ``build_head``."""

import logging

from torch import nn

from engine_lib.config import CfgNode
from engine_lib.utils.registry import Registry

from ..registry import get_from_registry

__all__ = ["HEADS_REGISTRY", "build_head"]

logger = logging.getLogger(__name__)

HEADS_REGISTRY = Registry("HEADS")
HEADS_REGISTRY.__doc__ = """
Heads that turn a backbone's feature map into task outputs, selected by ``MODEL.HEADS.NAME``.
An entry is called as ``entry(cfg, in_channels)`` and returns an ``nn.Module``.
"""


def build_head(cfg: CfgNode, in_channels: int) -> nn.Module:
    """Build the head named by ``MODEL.HEADS.NAME``.

    Args:
        cfg (CfgNode): the config.
        in_channels (int): channels of the feature map the head receives.

    Returns:
        nn.Module: the head, on the CPU.

    Raises:
        UnknownNameError: ``MODEL.HEADS.NAME`` is not registered.
    """
    head_cls = get_from_registry(HEADS_REGISTRY, cfg.MODEL.HEADS.NAME, "MODEL.HEADS.NAME")
    return head_cls(cfg, in_channels)
