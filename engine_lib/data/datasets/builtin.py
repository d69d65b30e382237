"""Register the built-in data sets (``digits_train``, ``digits_test``) on import."""

import functools
import logging

from engine_lib.data.catalog import DatasetCatalog, MetadataCatalog

from .digits import DIGITS_CLASSES, load_digits_dicts

__all__ = ["register_all_builtin"]

logger = logging.getLogger(__name__)


def register_all_builtin() -> None:
    """Register the built-in data sets that are not registered yet (safe to call again)."""
    for split in ("train", "test"):
        name = f"digits_{split}"
        if name not in DatasetCatalog:
            DatasetCatalog.register(name, functools.partial(load_digits_dicts, split))
        MetadataCatalog.get(name).set(thing_classes=DIGITS_CLASSES)


register_all_builtin()
