"""``SmallCNN``: a few conv-norm-ReLU-pool stages, fast on a CPU (the digits backbone)."""

import logging
from typing import Any, Dict

import torch
from torch import nn

from engine_lib.config import CfgNode, configurable
from engine_lib.utils.errors import ConfigError

from ..norm import get_norm
from .backbone import Backbone
from .build import BACKBONE_REGISTRY

__all__ = ["SmallCNN"]

logger = logging.getLogger(__name__)


@BACKBONE_REGISTRY.register()
class SmallCNN(Backbone):
    """Stages of 3x3 conv, norm, ReLU and 2x2 max-pool; stage ``i`` has ``width * 2**i`` channels.

    Each stage halves the resolution: three stages turn a 32x32 input into a 4x4 map. With
    a normalization layer, plain SGD trains it in a few hundred iterations.

    Example:
        >>> net = SmallCNN(in_channels=1, width=16)
        >>> net(torch.zeros(2, 1, 32, 32)).shape
        torch.Size([2, 64, 4, 4])
    """

    @configurable
    def __init__(
        self, *, in_channels: int = 3, width: int = 32, norm: str = "BN", num_stages: int = 3
    ):
        """
        Args:
            in_channels (int): channels of the input images. Default: 3.
            width (int): channels of the first stage. Default: 32.
            norm (str): normalization, see :func:`get_norm`. Default: "BN".
            num_stages (int): number of stages (each halves the resolution). Default: 3.
        """
        super().__init__()
        if width < 1 or in_channels < 1 or num_stages < 1:
            raise ConfigError(
                f"SmallCNN needs positive in_channels, width and num_stages; got {in_channels}, "
                f"{width}, {num_stages} (MODEL.BACKBONE.IN_CHANNELS / WIDTH)"
            )
        stages = []
        channels = in_channels
        for i in range(num_stages):
            out = width * 2**i
            stages.append(
                nn.Sequential(
                    # A bias is redundant before a norm layer, which has its own shift.
                    nn.Conv2d(channels, out, 3, padding=1, bias=norm == ""),
                    get_norm(norm, out),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                )
            )
            channels = out
        self.stages = nn.Sequential(*stages)
        self._output_channels = channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @classmethod
    def from_config(cls, cfg: CfgNode) -> Dict[str, Any]:
        """Read ``MODEL.BACKBONE.{IN_CHANNELS, WIDTH, NORM}``."""
        return {
            "in_channels": cfg.MODEL.BACKBONE.IN_CHANNELS,
            "width": cfg.MODEL.BACKBONE.WIDTH,
            "norm": cfg.MODEL.BACKBONE.NORM,
        }

    @property
    def output_channels(self) -> int:
        """int: ``width * 2**(num_stages - 1)``."""
        return self._output_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, H, W)`` images to ``(N, output_channels, H/2**s, W/2**s)``."""
        return self.stages(x)
