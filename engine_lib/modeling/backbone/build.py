"""``BACKBONE_REGISTRY`` and ``build_backbone``."""

import logging

from engine_lib.config import CfgNode
from engine_lib.utils.registry import Registry

from ..registry import get_from_registry
from .backbone import Backbone
from .pretrain import load_pretrained_backbone

__all__ = ["BACKBONE_REGISTRY", "build_backbone"]

logger = logging.getLogger(__name__)

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = """
Backbones, selected by ``MODEL.BACKBONE.NAME``. An entry is called as ``entry(cfg)`` and must
return a :class:`Backbone` (a class with ``@configurable __init__`` and ``from_config(cls, cfg)``
is the usual form).
"""


def build_backbone(cfg: CfgNode) -> Backbone:
    """Build the backbone named by ``MODEL.BACKBONE.NAME`` and load ``PRETRAIN_PATH`` if set.

    Args:
        cfg (CfgNode): the config.

    Returns:
        Backbone: the backbone, on the CPU.

    Raises:
        UnknownNameError: ``MODEL.BACKBONE.NAME`` is not registered.
        ConfigError: ``MODEL.BACKBONE.PRETRAIN_PATH`` is missing or unreadable.
    """
    name = cfg.MODEL.BACKBONE.NAME
    backbone = get_from_registry(BACKBONE_REGISTRY, name, "MODEL.BACKBONE.NAME")(cfg)
    if not isinstance(backbone, Backbone):
        raise TypeError(f"BACKBONE_REGISTRY entry {name!r} returned {type(backbone)}, not Backbone")
    # Loading here, not in each backbone, so every registered backbone honours the key.
    if cfg.MODEL.BACKBONE.PRETRAIN_PATH:
        load_pretrained_backbone(backbone, cfg.MODEL.BACKBONE.PRETRAIN_PATH)
    return backbone
