"""``ResNet``: torchvision's ResNet-18/34/50 without its pooling and classifier."""

import functools
import logging
from typing import Any, Dict

import torch
from torch import nn

from engine_lib.config import CfgNode, configurable
from engine_lib.utils.errors import ConfigError

from ..norm import get_norm
from .backbone import Backbone
from .build import BACKBONE_REGISTRY

__all__ = ["ResNet"]

logger = logging.getLogger(__name__)

# depth -> (torchvision builder's name, channels of the last stage); torchvision is imported
# when a ResNet is built: importing it adds ~1 s to the start-up of every run.
_VARIANTS = {18: ("resnet18", 512), 34: ("resnet34", 512), 50: ("resnet50", 2048)}


@BACKBONE_REGISTRY.register()
class ResNet(Backbone):
    """torchvision's ResNet as a feature extractor (stride 32), never with downloaded weights.

    Submodules keep torchvision's names (``conv1``, ``bn1``, ``layer1`` ... ``layer4``) so a
    torchvision state dict loads through ``MODEL.BACKBONE.PRETRAIN_PATH`` as it is (its
    ``fc.*`` keys are reported as unused).

    Example:
        >>> net = ResNet(depth=18)
        >>> net(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 512, 2, 2])
    """

    @configurable
    def __init__(self, *, depth: int = 18, in_channels: int = 3, norm: str = "BN"):
        """
        Args:
            depth (int): 18, 34 or 50. Default: 18.
            in_channels (int): channels of the input images; any other value than 3 gives a
                freshly initialized first conv taking that many channels. Default: 3.
            norm (str): normalization, see :func:`get_norm`. Default: "BN".
        """
        super().__init__()
        if depth not in _VARIANTS:
            raise ConfigError(
                f"MODEL.BACKBONE.DEPTH={depth} is not supported by ResNet; "
                f"expected one of {sorted(_VARIANTS)}"
            )
        import torchvision

        builder_name, self._output_channels = _VARIANTS[depth]
        builder = getattr(torchvision.models, builder_name)
        net = builder(weights=None, norm_layer=functools.partial(get_norm, norm))
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4

    @classmethod
    def from_config(cls, cfg: CfgNode) -> Dict[str, Any]:
        """Read ``MODEL.BACKBONE.{DEPTH, IN_CHANNELS, NORM}``."""
        return {
            "depth": cfg.MODEL.BACKBONE.DEPTH,
            "in_channels": cfg.MODEL.BACKBONE.IN_CHANNELS,
            "norm": cfg.MODEL.BACKBONE.NORM,
        }

    @property
    def output_channels(self) -> int:
        """int: 512 for ResNet-18/34, 2048 for ResNet-50."""
        return self._output_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, H, W)`` images to ``(N, output_channels, H/32, W/32)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
