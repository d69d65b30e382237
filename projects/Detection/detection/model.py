"""``TorchvisionFasterRCNN``: torchvision's Faster R-CNN behind the engine's model convention."""

import logging
from typing import Any, Dict, List, Union

import torch
from torch import nn
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

from engine_lib.config import CfgNode, configurable
from engine_lib.modeling import META_ARCH_REGISTRY

__all__ = ["TorchvisionFasterRCNN"]

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class TorchvisionFasterRCNN(nn.Module):
    """Faster R-CNN with a MobileNetV3-Large FPN backbone, trained from scratch.

    Input: ``list[dict]`` with "image" (RGB CHW uint8) and, in training, "boxes" (float
    ``(N, 4)`` xyxy pixels) and "labels" (long ``(N,)``, 0-based classes). Optional "height"
    and "width" give the size the predicted boxes are scaled to (the original image size
    when the image was resized before).

    Output: in training, torchvision's dict of losses (``loss_classifier``, ``loss_box_reg``,
    ``loss_objectness``, ``loss_rpn_box_reg``); in eval, one ``{"boxes", "scores",
    "labels"}`` dict per image, labels 0-based.

    Args:
        num_classes (int): object classes, without the background.
        min_size (int): torchvision's resize target of the shorter side.
        max_size (int): the longest side after resizing.
    """

    @configurable
    def __init__(self, *, num_classes: int, min_size: int = 64, max_size: int = 64):
        super().__init__()
        # torchvision normalizes internally (ImageNet statistics) from images in [0, 1], so
        # MODEL.PIXEL_MEAN/STD are not used. Without pretrained weights torchvision builds
        # ordinary (trainable) BatchNorm, not FrozenBatchNorm, and trains every layer.
        self.detector = fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None,
            weights_backbone=None,
            num_classes=num_classes + 1,  # + background, which torchvision calls 0
            min_size=min_size,
            max_size=max_size,
            # A few shapes per image need far fewer sampled proposals than COCO's defaults
            # (2000 proposals, 512 RoIs per image); the RoI head dominates the CPU time.
            rpn_pre_nms_top_n_train=300,
            rpn_post_nms_top_n_train=300,
            rpn_batch_size_per_image=64,
            box_batch_size_per_image=64,
        )

    @classmethod
    def from_config(cls, cfg: CfgNode) -> Dict[str, Any]:
        """Read ``MODEL.HEADS.NUM_CLASSES`` and ``MODEL.DETECTOR.MIN_SIZE/MAX_SIZE``."""
        return {
            "num_classes": cfg.MODEL.HEADS.NUM_CLASSES,
            "min_size": cfg.MODEL.DETECTOR.MIN_SIZE,
            "max_size": cfg.MODEL.DETECTOR.MAX_SIZE,
        }

    @property
    def device(self) -> torch.device:
        """torch.device: where the parameters are."""
        return next(self.parameters()).device

    def forward(
        self, batched_inputs: List[Dict[str, Any]]
    ) -> Union[Dict[str, torch.Tensor], List[Dict[str, torch.Tensor]]]:
        """Losses in training mode, per-image detections in eval mode (see the class doc)."""
        images = [
            x["image"].to(self.device, non_blocking=True).float() / 255.0 for x in batched_inputs
        ]
        if self.training:
            targets = [
                {
                    "boxes": x["boxes"].to(self.device, non_blocking=True),
                    "labels": x["labels"].to(self.device, non_blocking=True) + 1,
                }
                for x in batched_inputs
            ]
            return self.detector(images, targets)
        results = []
        for x, image, det in zip(batched_inputs, images, self.detector(images)):
            height, width = image.shape[-2:]
            scale = torch.tensor(
                [x.get("width", width) / width, x.get("height", height) / height] * 2,
                device=det["boxes"].device,
            )
            results.append(
                {
                    "boxes": det["boxes"] * scale,
                    "scores": det["scores"],
                    "labels": det["labels"] - 1,
                }
            )
        return results
