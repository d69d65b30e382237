"""``Backbone``: the interface every backbone in ``BACKBONE_REGISTRY`` implements."""

import logging
from abc import ABCMeta, abstractmethod

import torch
from torch import nn

__all__ = ["Backbone"]

logger = logging.getLogger(__name__)


class Backbone(nn.Module, metaclass=ABCMeta):
    """A network that maps normalized images to one feature map.

    Meta-architectures only rely on :attr:`output_channels` to size what comes after, so any
    module that honours this contract can be registered and selected by
    ``MODEL.BACKBONE.NAME``.
    """

    @property
    @abstractmethod
    def output_channels(self) -> int:
        """int: number of channels of the feature map returned by :meth:`forward`."""

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute the feature map.

        Args:
            x (Tensor): normalized images, shape ``(N, C_in, H, W)``.

        Returns:
            Tensor: features, shape ``(N, output_channels, h, w)``.
        """
