"""Object detection on generated shapes with torchvision's Faster R-CNN.

Importing the package registers the model (``TorchvisionFasterRCNN``) and the data sets
``shapes_train``, ``shapes_test`` and ``shapes_mini``.
"""

from .config import add_detection_config
from .evaluator import VOCDetectionEvaluator, average_precision
from .mapper import DetectionMapper, hflip_boxes
from .model import TorchvisionFasterRCNN
from .shapes import SHAPE_CLASSES, load_shapes_dicts, register_shapes, render_shapes

register_shapes()

__all__ = [
    "add_detection_config",
    "VOCDetectionEvaluator",
    "average_precision",
    "DetectionMapper",
    "hflip_boxes",
    "TorchvisionFasterRCNN",
    "SHAPE_CLASSES",
    "load_shapes_dicts",
    "register_shapes",
    "render_shapes",
]
