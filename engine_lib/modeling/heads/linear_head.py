"""``LinearHead``: global pooling, dropout and one linear layer producing class logits."""

import logging
from typing import Any, Dict

import torch
from torch import nn

from engine_lib.config import CfgNode, configurable
from engine_lib.utils.errors import ConfigError

from .build import HEADS_REGISTRY

__all__ = ["LinearHead"]

logger = logging.getLogger(__name__)

_POOLS = {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}


@HEADS_REGISTRY.register()
class LinearHead(nn.Module):
    """Pool a ``(N, C, H, W)`` feature map to ``(N, C)``, apply dropout, then a linear layer.

    Example:
        >>> head = LinearHead(in_channels=64, num_classes=10, pool="max")
        >>> head(torch.zeros(2, 64, 4, 4)).shape
        torch.Size([2, 10])
    """

    @configurable
    def __init__(
        self, *, in_channels: int, num_classes: int, pool: str = "avg", dropout: float = 0.0
    ):
        """
        Args:
            in_channels (int): channels of the feature map.
            num_classes (int): number of logits.
            pool (str): global pooling, "avg" or "max". Default: "avg".
            dropout (float): dropout probability before the linear layer. Default: 0.0.
        """
        super().__init__()
        if pool not in _POOLS:
            raise ConfigError(f"MODEL.HEADS.POOL={pool!r}; expected one of {sorted(_POOLS)}")
        if num_classes < 1:
            raise ConfigError(f"MODEL.HEADS.NUM_CLASSES={num_classes}; expected at least 1")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"MODEL.HEADS.DROPOUT={dropout}; expected a value in [0, 1)")
        self.pool = _POOLS[pool](1)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_channels, num_classes)

    @classmethod
    def from_config(cls, cfg: CfgNode, in_channels: int) -> Dict[str, Any]:
        """Read ``MODEL.HEADS.{NUM_CLASSES, POOL, DROPOUT}``."""
        return {
            "in_channels": in_channels,
            "num_classes": cfg.MODEL.HEADS.NUM_CLASSES,
            "pool": cfg.MODEL.HEADS.POOL,
            "dropout": cfg.MODEL.HEADS.DROPOUT,
        }

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(N, num_classes)``."""
        return self.linear(self.dropout(self.pool(features).flatten(1)))
