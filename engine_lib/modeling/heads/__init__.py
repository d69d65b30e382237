"""Heads: ``HEADS_REGISTRY`` and the built-in ``LinearHead``."""

from .build import HEADS_REGISTRY, build_head
from .linear_head import LinearHead

__all__ = ["HEADS_REGISTRY", "LinearHead", "build_head"]
