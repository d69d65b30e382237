"""Models: registries, ``build_model`` and the built-in image classifier.

Importing this package registers the built-in entries (``ImageClassifier``, ``SmallCNN``,
``ResNet``, ``LinearHead``); a project registers its own by decorating them with
``META_ARCH_REGISTRY.register()`` (or the backbone / heads registry) before ``build_model``.

Knowledge distillation lives in :mod:`engine_lib.distillation`. Its model names
(``Distiller``, ``build_distiller``, ``build_teacher``, ``kd_loss``) can still be imported
from here, as before: they are looked up on first use, so that importing the models (and the
engine, which imports them) never loads distillation.
"""

from typing import Any

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
from .heads import HEADS_REGISTRY, LinearHead, build_head
from .meta_arch import ImageClassifier
from .norm import get_norm

__all__ = [
    "BACKBONE_REGISTRY",
    "HEADS_REGISTRY",
    "META_ARCH_REGISTRY",
    "Backbone",
    "ImageClassifier",
    "LinearHead",
    "LoadResult",
    "ResNet",
    "SmallCNN",
    "build_backbone",
    "build_head",
    "build_model",
    "get_norm",
    "load_pretrained_backbone",
    "parameter_count_table",
]

# Names that moved to engine_lib.distillation, still importable from here (see the docstring).
_MOVED_TO_DISTILLATION = ("Distiller", "build_distiller", "build_teacher", "kd_loss")


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_DISTILLATION:
        import engine_lib.distillation

        return getattr(engine_lib.distillation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
