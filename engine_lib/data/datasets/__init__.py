"""Built-in data sets and registration helpers for common on-disk formats."""

from .builtin import register_all_builtin
from .cifar10 import load_cifar10_dicts, register_cifar10
from .digits import load_digits_dicts
from .image_folder import load_image_folder_dicts, register_image_folder

__all__ = [
    "register_all_builtin",
    "register_image_folder",
    "load_image_folder_dicts",
    "register_cifar10",
    "load_cifar10_dicts",
    "load_digits_dicts",
]
