"""Register the project's data sets from the roots given in its config keys."""

import logging
import os
from typing import Callable, Dict, Tuple

from engine_lib.config import CfgNode
from engine_lib.data import DatasetCatalog, MetadataCatalog
from engine_lib.data.datasets import register_cifar10, register_image_folder
from engine_lib.utils.errors import ConfigError

__all__ = ["register_datasets"]

logger = logging.getLogger(__name__)


def _sources(cfg: CfgNode) -> Dict[str, Tuple[str, str, Callable[[str], None]]]:
    """Map each data set name to (root key, root, function registering it under that name)."""
    folder = cfg.DATASETS.IMAGE_FOLDER.ROOT
    cifar = cfg.DATASETS.CIFAR10.ROOT
    key_folder, key_cifar = "DATASETS.IMAGE_FOLDER.ROOT", "DATASETS.CIFAR10.ROOT"
    return {
        "image_folder_train": (
            key_folder,
            folder,
            lambda n: register_image_folder(n, os.path.join(folder, "train")),
        ),
        "image_folder_val": (
            key_folder,
            folder,
            lambda n: register_image_folder(n, os.path.join(folder, "val")),
        ),
        "cifar10_train": (key_cifar, cifar, lambda n: register_cifar10(n, cifar, train=True)),
        "cifar10_test": (key_cifar, cifar, lambda n: register_cifar10(n, cifar, train=False)),
    }


def register_datasets(cfg: CfgNode) -> None:
    """Register the project's data sets that ``DATASETS.TRAIN`` / ``DATASETS.TEST`` name.

    Registering again (e.g. a second call in the same process) replaces the old entry, so
    the roots of the current config always win.

    Args:
        cfg (CfgNode): the config, with the keys of ``add_image_classification_config``.

    Raises:
        ConfigError: a named data set's root key is empty, a root is malformed, or the
            number of classes differs from ``MODEL.HEADS.NUM_CLASSES``.
    """
    sources = _sources(cfg)
    for name in dict.fromkeys((*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST)):
        if name not in sources:
            continue  # a data set of the engine (e.g. digits) or registered elsewhere
        key, root, register = sources[name]
        if not root:
            raise ConfigError(f"Data set {name!r} is used but {key} is empty; set it to its folder")
        if name in DatasetCatalog:
            DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
        register(name)
        classes = MetadataCatalog.get(name).thing_classes
        if len(classes) != cfg.MODEL.HEADS.NUM_CLASSES:
            raise ConfigError(
                f"Data set {name!r} ({key}={root!r}) has {len(classes)} classes {classes} but "
                f"MODEL.HEADS.NUM_CLASSES={cfg.MODEL.HEADS.NUM_CLASSES}; make them equal"
            )
        logger.info("Registered %s from %s (%d classes)", name, root, len(classes))
