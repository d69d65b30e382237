"""``DetectionMapper``: a shapes dataset dict -> image tensor + boxes + labels."""

import logging
from typing import Any, Dict

import torch

from engine_lib.config import CfgNode, configurable
from engine_lib.data import read_image

from .shapes import render_shapes

__all__ = ["DetectionMapper", "hflip_boxes"]

logger = logging.getLogger(__name__)


def hflip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """Mirror xyxy boxes (exclusive end) in an image of ``width`` pixels."""
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


class DetectionMapper:
    """Map a dataset dict to ``{"image", "boxes", "labels", "image_id", "height", "width"}``.

    "image" is an RGB CHW uint8 tensor, "boxes" a float ``(N, 4)`` xyxy tensor in pixels,
    "labels" a long ``(N,)`` tensor. The image is drawn with ``render_shapes`` unless the
    dict has "image" or "file_name". In training, the image and its boxes are flipped
    horizontally with probability ``flip_prob``; the coin comes from torch's global
    generator, which the data loader seeds per sample (``engine_lib.data.seeding``), so the
    flips are the same after a resume and with any number of workers.

    Args:
        is_train (bool): whether to augment.
        flip_prob (float): probability of a horizontal flip in training. Default: 0.5.
    """

    @configurable
    def __init__(self, is_train: bool, *, flip_prob: float = 0.5):
        self.is_train = is_train
        self.flip_prob = flip_prob

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool = True) -> Dict[str, Any]:
        """Read ``INPUT.FLIP.PROB``."""
        return {"is_train": is_train, "flip_prob": cfg.INPUT.FLIP.PROB}

    def __call__(self, record: Dict[str, Any]) -> Dict[str, Any]:
        """Return the model input of one dataset dict (the dict is not modified)."""
        if "image" in record or "file_name" in record:
            image = read_image(record)
        else:
            image = torch.from_numpy(render_shapes(record)).permute(2, 0, 1)
        boxes = torch.as_tensor(record.get("boxes", []), dtype=torch.float32).reshape(-1, 4)
        labels = torch.as_tensor(record.get("labels", []), dtype=torch.long)
        # The coin is drawn even when flip_prob is 0 or 1: the stream never depends on it.
        if self.is_train and torch.rand(()).item() < self.flip_prob:
            image = image.flip(-1)
            boxes = hflip_boxes(boxes, image.shape[-1])
        return {
            "image": image.contiguous(),
            "boxes": boxes,
            "labels": labels,
            "image_id": record.get("image_id"),
            "height": image.shape[-2],
            "width": image.shape[-1],
        }
