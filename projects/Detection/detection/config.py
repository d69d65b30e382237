"""The project's config keys."""

import logging

from engine_lib.config import CfgNode

__all__ = ["add_detection_config"]

logger = logging.getLogger(__name__)


def add_detection_config(cfg: CfgNode) -> None:
    """Add ``MODEL.DETECTOR.*`` to ``cfg`` (in place)."""
    cfg.MODEL.DETECTOR = CfgNode()
    # Shorter side torchvision resizes images to inside the detector (small for CPU speed).
    cfg.MODEL.DETECTOR.MIN_SIZE = 64
    # Longest side after torchvision's resize.
    cfg.MODEL.DETECTOR.MAX_SIZE = 64
