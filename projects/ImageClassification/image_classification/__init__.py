"""ImageClassification project: a torchvision ResNet on an ImageFolder tree or CIFAR-10."""

from .config import add_image_classification_config
from .datasets import register_datasets
from .synthetic import PATTERNS, make_synthetic_image_folder

__all__ = [
    "PATTERNS",
    "add_image_classification_config",
    "make_synthetic_image_folder",
    "register_datasets",
]
