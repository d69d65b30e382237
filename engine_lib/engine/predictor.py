"""``DefaultPredictor``: run a trained model on single images, from a config + weights."""

import logging
import os
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

from engine_lib.checkpoint import Checkpointer
from engine_lib.config import CfgNode
from engine_lib.data.mapper import IMAGE_FORMATS, DatasetMapper, read_image
from engine_lib.modeling import build_model
from engine_lib.utils.errors import ConfigError
from engine_lib.utils.remote_weights import allow_remote_weights

__all__ = ["DefaultPredictor"]

logger = logging.getLogger(__name__)


class DefaultPredictor:
    """Build the model of ``cfg``, load ``cfg.MODEL.WEIGHTS`` and predict one image per call.

    The image goes through the test-time part of the data pipeline (conversion to
    ``INPUT.FORMAT``, resize to ``INPUT.SIZE_TEST``), so predictions match evaluation. The
    model's input dict also holds the image's original "height" and "width", so that a model
    can return coordinates on the image it was given (a detector scales its boxes by them).

    Example:
        >>> predictor = DefaultPredictor(cfg)
        >>> out = predictor(cv2.imread("digit.png"), format="BGR")
        >>> out["pred_class"]
    """

    def __init__(self, cfg: CfgNode) -> None:
        """
        Args:
            cfg (CfgNode): the config the model was trained with, ``MODEL.WEIGHTS`` set.
        """
        self.cfg = cfg.clone()
        allow_remote_weights(cfg.MODEL.ALLOW_REMOTE_WEIGHTS)
        self.model = build_model(self.cfg)
        self.model.eval()
        if not cfg.MODEL.WEIGHTS:
            logger.warning("MODEL.WEIGHTS is empty: the predictor uses random weights")
        else:
            Checkpointer(self.model, allow_pickle=cfg.MODEL.WEIGHTS_ALLOW_PICKLE).load(
                cfg.MODEL.WEIGHTS
            )
        self.mapper = DatasetMapper(self.cfg, is_train=False)
        self.input_format = cfg.INPUT.FORMAT

    @torch.no_grad()
    def __call__(
        self, image: Union[np.ndarray, str, os.PathLike], format: Optional[str] = None
    ) -> Dict[str, Any]:
        """Predict one image.

        Args:
            image (ndarray or str): an HxWxC (or HxW) uint8 array, or the path of an image file.
            format (str, optional): channel order of an array: "RGB", "BGR" or "L"; default
                ``cfg.INPUT.FORMAT``. Ignored for paths.

        Returns:
            dict: the model's output for this image (e.g. ``scores`` and ``pred_class``).
        """
        if isinstance(image, (str, os.PathLike)):
            path = os.fspath(image)
            if not os.path.isfile(path):
                raise ConfigError(f"Input image not found: '{path}'")
            record: Dict[str, Any] = {"file_name": path}
            rgb = read_image(record).permute(1, 2, 0).numpy()
        else:
            record = {}
            rgb = _to_rgb(image, format or self.input_format)
        # The original size lets a model map its outputs (boxes, masks) back onto the given
        # image, whatever size the test-time resize gave it (detectron2's convention).
        record.update(image=rgb, height=rgb.shape[0], width=rgb.shape[1])
        inputs = self.mapper(record)
        return self.model([inputs])[0]


def _to_rgb(image: np.ndarray, format: str) -> np.ndarray:
    """Convert an HxWxC / HxW uint8 array in ``format`` to HxWx3 RGB."""
    if format not in IMAGE_FORMATS:
        raise ConfigError(f"Image format must be one of {IMAGE_FORMATS}, got {format!r}")
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        raise ConfigError(
            f"Expected an HxWxC or HxW image array, got {type(image).__name__} "
            f"with shape {getattr(image, 'shape', None)}"
        )
    if image.ndim == 2 or image.shape[2] == 1:
        gray = image.reshape(image.shape[0], image.shape[1])
        return np.repeat(gray[:, :, None], 3, axis=2)
    if format == "BGR":
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image[:, :, :3])
