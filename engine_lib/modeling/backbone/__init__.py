"""Backbones: the ``Backbone`` interface, ``BACKBONE_REGISTRY`` and the built-in backbones."""

from .backbone import Backbone
from .build import BACKBONE_REGISTRY, build_backbone
from .pretrain import LoadResult, load_pretrained_backbone
from .resnet import ResNet
from .small_cnn import SmallCNN

__all__ = [
    "BACKBONE_REGISTRY",
    "Backbone",
    "LoadResult",
    "ResNet",
    "SmallCNN",
    "build_backbone",
    "load_pretrained_backbone",
]
