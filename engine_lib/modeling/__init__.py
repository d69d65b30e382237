"""Models: registries, ``build_model``, the built-in image classifier and distillation.

Importing this package registers the built-in entries (``ImageClassifier``, ``SmallCNN``,
``ResNet``, ``LinearHead``); a project registers its own by decorating them with
``META_ARCH_REGISTRY.register()`` (or the backbone / heads registry) before ``build_model``.
``Distiller`` / ``build_distiller`` wrap a student for knowledge distillation (``KD.*``).
"""

from .backbone import (
    BACKBONE_REGISTRY,
    Backbone,
    LoadResult,
    ResNet,
    SmallCNN,
    build_backbone,
    load_pretrained_backbone,
)
from .build import META_ARCH_REGISTRY, build_model, parameter_count_table
from .distillation import Distiller, build_distiller, build_teacher, kd_loss
from .heads import HEADS_REGISTRY, LinearHead, build_head
from .meta_arch import ImageClassifier
from .norm import get_norm

__all__ = [
    "BACKBONE_REGISTRY",
    "HEADS_REGISTRY",
    "META_ARCH_REGISTRY",
    "Backbone",
    "Distiller",
    "ImageClassifier",
    "LinearHead",
    "LoadResult",
    "ResNet",
    "SmallCNN",
    "build_backbone",
    "build_distiller",
    "build_head",
    "build_model",
    "build_teacher",
    "get_norm",
    "kd_loss",
    "load_pretrained_backbone",
    "parameter_count_table",
]
