"""Data sets in torchvision's ``ImageFolder`` layout: ``root/<class name>/<image file>``."""

import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from engine_lib.data.catalog import DatasetCatalog, MetadataCatalog
from engine_lib.utils.errors import ConfigError

__all__ = ["register_image_folder", "load_image_folder_dicts"]

logger = logging.getLogger(__name__)


def _image_extensions() -> Tuple[str, ...]:
    # torchvision is imported where it is used: importing it adds ~1 s to start-up.
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return IMG_EXTENSIONS


def _classes(root: str) -> Tuple[List[str], Dict[str, int]]:
    from torchvision.datasets.folder import find_classes

    if not os.path.isdir(root):
        raise ConfigError(
            f"Image folder {root!r} does not exist or is not a directory; expected one "
            "sub-directory per class holding that class's images"
        )
    try:
        return find_classes(root)
    except FileNotFoundError as e:
        raise ConfigError(
            f"Image folder {root!r} has no class sub-directories; expected root/<class>/<image>"
        ) from e


def load_image_folder_dicts(
    root: str, extensions: Optional[Sequence[str]] = None
) -> List[Dict[str, Any]]:
    """Return one dict per image under ``root``: ``file_name``, ``label``, ``image_id``, ``index``.

    Classes are the sub-directory names in sorted order (label = position), as in
    ``torchvision.datasets.ImageFolder``; ``image_id`` is the path relative to ``root``.

    Args:
        root (str): the folder holding one sub-directory per class.
        extensions (sequence of str, optional): file name endings counted as images
            (case-insensitive); None: torchvision's ``IMG_EXTENSIONS``.

    Raises:
        ConfigError: ``root`` is missing, has no class directories or no image at all.
    """
    from torchvision.datasets.folder import make_dataset

    extensions = _image_extensions() if extensions is None else extensions
    _, class_to_idx = _classes(root)
    samples = make_dataset(root, class_to_idx, extensions=tuple(extensions), allow_empty=True)
    if not samples:
        raise ConfigError(
            f"Image folder {root!r} contains no images; expected files ending in "
            f"{', '.join(extensions)} inside its class sub-directories"
        )
    empty = sorted(set(class_to_idx) - {os.path.basename(os.path.dirname(p)) for p, _ in samples})
    if empty:
        logger.warning("Image folder %r: classes without images: %s", root, ", ".join(empty))
    return [
        {
            "file_name": path,
            "label": int(label),
            "image_id": os.path.relpath(path, root),
            "index": index,
        }
        for index, (path, label) in enumerate(samples)
    ]


def register_image_folder(
    name: str, root: str, extensions: Optional[Sequence[str]] = None
) -> None:
    """Register an ``ImageFolder``-layout directory as data set ``name``.

    The class names are read now (and set as ``MetadataCatalog.get(name).thing_classes``);
    the image list is read on first use of the data set.

    Args:
        name (str): the data set name for ``DATASETS.TRAIN`` / ``DATASETS.TEST``.
        root (str): the folder holding one sub-directory per class.
        extensions (sequence of str, optional): file name endings counted as images;
            None: torchvision's ``IMG_EXTENSIONS``.

    Raises:
        ConfigError: ``root`` is missing or has no class directories.
        ValueError: ``name`` is already registered.

    Example:
        >>> register_image_folder("flowers_train", "/data/flowers/train")
        >>> cfg.DATASETS.TRAIN = ("flowers_train",)
    """
    classes, _ = _classes(root)
    DatasetCatalog.register(name, lambda: load_image_folder_dicts(root, extensions))
    MetadataCatalog.get(name).set(thing_classes=classes, root=root)
