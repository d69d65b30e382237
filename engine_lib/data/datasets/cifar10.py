"""CIFAR-10 in its "python version" format, read from a local folder (never downloaded).

The folder (or its ``cifar-10-batches-py`` sub-folder, as torchvision extracts it) holds the
pickles ``data_batch_1`` .. ``data_batch_5`` (training), ``test_batch`` and ``batches.meta``.
Each batch is a dict with ``b"data"`` (N x 3072 uint8: 1024 red, 1024 green, 1024 blue values
per image, row-major 32x32) and ``b"labels"``; ``batches.meta`` has ``b"label_names"`` (bytes
or str keys are both accepted).

The pickles are read with an unpickler that only accepts numpy arrays, dtypes and plain
containers: a file swapped for a malicious pickle fails to load instead of running code.
"""

import codecs
import logging
import os
import pickle
from typing import Any, Dict, List

import numpy as np

from engine_lib.data.catalog import DatasetCatalog, MetadataCatalog
from engine_lib.utils.errors import ConfigError

__all__ = ["register_cifar10", "load_cifar10_dicts", "CIFAR10_TRAIN_FILES", "CIFAR10_TEST_FILES"]

logger = logging.getLogger(__name__)

CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch",)
_META_FILE = "batches.meta"
_SUBDIR = "cifar-10-batches-py"

# The only globals a CIFAR pickle needs: how numpy pickles arrays under protocols 2-5, and
# how protocol 2 stores bytes. Resolved from live objects so numpy 1 and 2 names both work.
_RECONSTRUCT = np.ndarray.__reduce__(np.empty(1))[0]
_FROMBUFFER = np.empty(1).__reduce_ex__(5)[0]
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _batches_dir(root: str) -> str:
    nested = os.path.join(root, _SUBDIR)
    if os.path.isfile(os.path.join(nested, _META_FILE)):
        return nested
    if not os.path.isdir(root):
        raise ConfigError(
            f"CIFAR-10 folder {root!r} does not exist; expected the extracted "
            f"'cifar-10-python.tar.gz' ({', '.join(CIFAR10_TRAIN_FILES)}, test_batch, "
            f"{_META_FILE}) in it or in its {_SUBDIR!r} sub-folder"
        )
    return root


def _load_pickle(folder: str, file: str) -> Dict[str, Any]:
    path = os.path.join(folder, file)
    if not os.path.isfile(path):
        raise ConfigError(
            f"CIFAR-10 file {file!r} is missing in {folder!r}; expected the files of the "
            f"CIFAR-10 python version ({', '.join(CIFAR10_TRAIN_FILES)}, test_batch, {_META_FILE})"
        )
    try:
        with open(path, "rb") as f:
            # The files were written by Python 2: "latin1" maps its str to text losslessly
            # (numpy needs that for array state); keys are normalized to str below.
            content = _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise ConfigError(f"CIFAR-10 file {path!r} is not a valid CIFAR-10 batch: {e}") from e
    if not isinstance(content, dict):
        raise ConfigError(f"CIFAR-10 file {path!r} holds a {type(content).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in content.items()}


def _class_names(folder: str) -> List[str]:
    meta = _load_pickle(folder, _META_FILE)
    if "label_names" not in meta:
        raise ConfigError(f"CIFAR-10 file {os.path.join(folder, _META_FILE)!r} has no label_names")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in meta["label_names"]]


def load_cifar10_dicts(root: str, train: bool) -> List[Dict[str, Any]]:
    """Return the CIFAR-10 training (50,000) or test (10,000) images as dataset dicts.

    Args:
        root (str): folder with the batch files, or its parent holding ``cifar-10-batches-py``.
        train (bool): the five training batches if ``True``, else ``test_batch``.

    Returns:
        list[dict]: ``{"image": 32x32x3 uint8 RGB, "label": int, "image_id": "<file>/<row>",
        "index": int}`` in file order.

    Raises:
        ConfigError: the folder or a file is missing or malformed (names it).
    """
    folder = _batches_dir(root)
    dicts: List[Dict[str, Any]] = []
    for file in CIFAR10_TRAIN_FILES if train else CIFAR10_TEST_FILES:
        batch = _load_pickle(folder, file)
        try:
            data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            labels = [int(label) for label in batch["labels"]]
        except (KeyError, ValueError) as e:
            raise ConfigError(
                f"CIFAR-10 file {os.path.join(folder, file)!r} lacks b'data' (N x 3072 uint8) "
                f"or b'labels': {e!r}"
            ) from e
        if len(labels) != len(data):
            raise ConfigError(
                f"CIFAR-10 file {os.path.join(folder, file)!r} has {len(data)} images but "
                f"{len(labels)} labels"
            )
        # One HWC copy per batch; the dicts hold views into it.
        images = np.ascontiguousarray(data.transpose(0, 2, 3, 1))
        for row, (image, label) in enumerate(zip(images, labels)):
            dicts.append(
                {"image": image, "label": label, "image_id": f"{file}/{row}", "index": len(dicts)}
            )
    return dicts


def register_cifar10(name: str, root: str, train: bool) -> None:
    """Register the CIFAR-10 training or test split in ``root`` as data set ``name``.

    The class names are read from ``batches.meta`` now (``thing_classes`` metadata); the
    images on first use of the data set.

    Args:
        name (str): the data set name, e.g. ``"cifar10_train"``.
        root (str): folder with the batch files, or its parent holding ``cifar-10-batches-py``.
        train (bool): register the training (``True``) or the test split.

    Raises:
        ConfigError: the folder or ``batches.meta`` is missing or malformed.
        ValueError: ``name`` is already registered.
    """
    classes = _class_names(_batches_dir(root))
    DatasetCatalog.register(name, lambda: load_cifar10_dicts(root, train))
    MetadataCatalog.get(name).set(thing_classes=classes, root=root)
