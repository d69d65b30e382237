"""Meta-architectures: whole models registered in ``META_ARCH_REGISTRY``."""

from .classifier import ImageClassifier

__all__ = ["ImageClassifier"]
