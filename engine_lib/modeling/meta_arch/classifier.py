"""``ImageClassifier``: backbone + head, trained with cross-entropy."""

import logging
from typing import Any, Dict, List, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from engine_lib.config import CfgNode, configurable
from engine_lib.utils.errors import ConfigError

from ..backbone import Backbone, build_backbone
from ..build import META_ARCH_REGISTRY
from ..heads import build_head

__all__ = ["ImageClassifier"]

logger = logging.getLogger(__name__)

# Channels of the images the data loader produces for each INPUT.FORMAT.
_FORMAT_CHANNELS = {"RGB": 3, "BGR": 3, "L": 1}


def _check_channels(cfg: CfgNode) -> None:
    mean, std = cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD
    if len(mean) != len(std):
        raise ConfigError(
            f"MODEL.PIXEL_MEAN has {len(mean)} values but MODEL.PIXEL_STD has {len(std)}; "
            "give one per image channel"
        )
    if len(mean) != cfg.MODEL.BACKBONE.IN_CHANNELS:
        raise ConfigError(
            f"MODEL.PIXEL_MEAN/PIXEL_STD have {len(mean)} values but "
            f"MODEL.BACKBONE.IN_CHANNELS={cfg.MODEL.BACKBONE.IN_CHANNELS}; they must match"
        )
    expected = _FORMAT_CHANNELS.get(cfg.INPUT.FORMAT)
    if expected is not None and expected != len(mean):
        raise ConfigError(
            f"INPUT.FORMAT={cfg.INPUT.FORMAT!r} gives {expected}-channel images but "
            f"MODEL.PIXEL_MEAN/PIXEL_STD have {len(mean)} values"
        )
    if any(s <= 0 for s in std):
        raise ConfigError(f"MODEL.PIXEL_STD={list(std)} must be positive")


@META_ARCH_REGISTRY.register()
class ImageClassifier(nn.Module):
    """Classify images: normalize, backbone, head (pool + linear), cross-entropy.

    Input: ``list[dict]``, one dict per image with "image" (a ``(C, H, W)`` tensor, any dtype,
    values in 0-255, all of one size) and, in training, "label" (an int or a 0-d tensor).

    Output: in training mode ``{"loss_cls": scalar}``; in eval mode one dict per image with
    "scores" (softmax probabilities, shape ``(num_classes,)``) and "pred_class" (0-d long
    tensor). Nothing in the forward pass waits for the device, so training stays sync-free.
    """

    pixel_mean: torch.Tensor  # buffers, registered in __init__
    pixel_std: torch.Tensor

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        head: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        label_smoothing: float = 0.0,
    ):
        """
        Args:
            backbone (Backbone): maps normalized images to a feature map.
            head (nn.Module): maps the feature map to ``(N, num_classes)`` logits.
            pixel_mean (Sequence[float]): per-channel mean subtracted from the images.
            pixel_std (Sequence[float]): per-channel std the images are divided by.
            label_smoothing (float): label smoothing of the cross-entropy, in [0, 1].
                Default: 0.0.
        """
        super().__init__()
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(f"pixel_mean {pixel_mean} and pixel_std {pixel_std} differ in length")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ConfigError(
                f"MODEL.HEADS.LABEL_SMOOTHING={label_smoothing}; expected a value in [0, 1]"
            )
        self.backbone = backbone
        self.head = head
        self.label_smoothing = label_smoothing
        # Not persistent: they come from the config, so checkpoints need not carry them.
        shape = (1, len(pixel_mean), 1, 1)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(shape), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(shape), False)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> Dict[str, Any]:
        """Build the backbone and head, and read ``MODEL.PIXEL_*`` and the label smoothing.

        Raises:
            ConfigError: the number of pixel statistics does not match
                ``MODEL.BACKBONE.IN_CHANNELS`` (or ``INPUT.FORMAT``), or a value is invalid.
        """
        _check_channels(cfg)
        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "head": build_head(cfg, backbone.output_channels),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "label_smoothing": cfg.MODEL.HEADS.LABEL_SMOOTHING,
        }

    @property
    def device(self) -> torch.device:
        """torch.device: where the model's parameters and buffers are."""
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[Dict[str, Any]]) -> torch.Tensor:
        """Stack the "image" tensors, move them to the model's device and normalize them.

        Args:
            batched_inputs (list[dict]): the model's input.

        Returns:
            Tensor: float images, shape ``(N, C, H, W)``.

        Raises:
            ValueError: images differ in size, or their channels do not match
                ``MODEL.PIXEL_MEAN``.
        """
        images = [x["image"] for x in batched_inputs]
        shapes = {tuple(img.shape) for img in images}
        if len(shapes) != 1:
            raise ValueError(
                f"Images of one batch must have one size (see INPUT.SIZE_TRAIN/SIZE_TEST); "
                f"got {sorted(shapes)}"
            )
        channels = images[0].shape[0]
        if images[0].dim() != 3 or channels != self.pixel_mean.shape[1]:
            raise ValueError(
                f"Expected (C, H, W) images with C={self.pixel_mean.shape[1]} channels as "
                f"MODEL.PIXEL_MEAN (check INPUT.FORMAT); got shape {tuple(images[0].shape)}"
            )
        # Copy the (small, often uint8) batch first and convert on the device.
        x = torch.stack(images).to(self.device, non_blocking=True).float()
        return (x - self.pixel_mean) / self.pixel_std

    def _labels(self, batched_inputs: List[Dict[str, Any]]) -> torch.Tensor:
        labels = [x["label"] for x in batched_inputs]
        if isinstance(labels[0], torch.Tensor):
            stacked = torch.stack(labels)
        else:
            stacked = torch.as_tensor(labels)
        return stacked.to(self.device, dtype=torch.long, non_blocking=True)

    def logits(self, batched_inputs: List[Dict[str, Any]]) -> torch.Tensor:
        """Compute the class logits of a batch, in training and in eval mode alike.

        Used by :class:`~engine_lib.modeling.Distiller`, which needs the logits of both the
        student and the teacher.

        Args:
            batched_inputs (list[dict]): see the class docstring ("label" is not needed).

        Returns:
            Tensor: logits, shape ``(N, num_classes)``.
        """
        return self.head(self.backbone(self.preprocess_image(batched_inputs)))

    def losses(
        self, logits: torch.Tensor, batched_inputs: List[Dict[str, Any]]
    ) -> Dict[str, torch.Tensor]:
        """Compute the training losses from :meth:`logits` of the same batch.

        Args:
            logits (Tensor): ``(N, num_classes)`` logits of ``batched_inputs``.
            batched_inputs (list[dict]): the batch, with "label".

        Returns:
            dict[str, Tensor]: ``{"loss_cls": cross-entropy}``.
        """
        loss = F.cross_entropy(
            logits, self._labels(batched_inputs), label_smoothing=self.label_smoothing
        )
        return {"loss_cls": loss}

    def forward(
        self, batched_inputs: List[Dict[str, Any]]
    ) -> Union[Dict[str, torch.Tensor], List[Dict[str, torch.Tensor]]]:
        """Compute the loss (training) or per-image predictions (eval).

        Args:
            batched_inputs (list[dict]): see the class docstring.

        Returns:
            dict[str, Tensor] | list[dict[str, Tensor]]: ``{"loss_cls": loss}`` in training
            mode; one ``{"scores", "pred_class"}`` dict per image in eval mode.
        """
        logits = self.logits(batched_inputs)
        if self.training:
            return self.losses(logits, batched_inputs)
        # Softmax in float32 so the scores sum to 1 under autocast too.
        scores = logits.float().softmax(dim=1)
        pred = scores.argmax(dim=1)
        return [{"scores": s, "pred_class": c} for s, c in zip(scores, pred)]
