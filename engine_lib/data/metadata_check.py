"""Consistency checks of data sets that are used together: class metadata and label ranges.

Concatenating data sets only makes sense when a label means the same class in each of them.
:func:`check_metadata_consistency` compares the class-defining metadata
(:data:`CLASS_METADATA_KEYS`) of the data sets; :func:`check_label_range` checks that each
sample's ``"label"`` indexes the data set's ``thing_classes``. Other metadata (a ``root``
folder, an evaluator type) is legitimately different per data set and is not compared.
"""

import logging
import numbers
from typing import Any, Dict, List, Sequence

from engine_lib.utils.errors import ConfigError

from .catalog import MetadataCatalog

__all__ = ["CLASS_METADATA_KEYS", "check_metadata_consistency", "check_label_range"]

logger = logging.getLogger(__name__)

#: Metadata keys that give labels their meaning; concatenated data sets must agree on them.
CLASS_METADATA_KEYS = ("thing_classes", "stuff_classes", "keypoint_names")

# How many differing entries an error message lists before it says "...".
_SHOWN = 8


def _shorten(values: List[Any]) -> str:
    shown = ", ".join(repr(v) for v in values[:_SHOWN])
    return f"[{shown}{', ...' if len(values) > _SHOWN else ''}]"


def _describe_difference(name_a: str, a: Any, name_b: str, b: Any) -> str:
    """Say how two metadata values differ, in words a user can act on."""
    if not isinstance(a, (list, tuple)) or not isinstance(b, (list, tuple)):
        return f"{name_a!r} has {a!r}, {name_b!r} has {b!r}"
    a, b = list(a), list(b)
    only_a = [x for x in a if x not in b]
    only_b = [x for x in b if x not in a]
    parts = [f"{name_a!r} has {len(a)}, {name_b!r} has {len(b)}"]
    if only_a:
        parts.append(f"only in {name_a!r}: {_shorten(only_a)}")
    if only_b:
        parts.append(f"only in {name_b!r}: {_shorten(only_b)}")
    if not only_a and not only_b:
        index = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        parts.append(
            f"the same names in a different order: index {index} is {a[index]!r} in "
            f"{name_a!r} but {b[index]!r} in {name_b!r}"
        )
    return "; ".join(parts)


def check_metadata_consistency(names: Sequence[str]) -> None:
    """Check that data sets used together agree on their class metadata.

    For each key of :data:`CLASS_METADATA_KEYS`, every data set that has it in
    ``MetadataCatalog`` must have the same value (same names, same order) as the first data
    set that has it. A data set *without* the key while others have it only gets a warning:
    its labels are assumed to follow the others' (a user-registered set often has no
    metadata at all).

    Args:
        names (sequence of str): the data set names, in concatenation order.

    Raises:
        ConfigError: two data sets disagree; the message names both and shows the difference.
    """
    for key in CLASS_METADATA_KEYS:
        values: Dict[str, Any] = {}
        for name in names:
            value = MetadataCatalog.get(name).get(key)
            if value is not None:
                values[name] = value
        if not values:
            continue
        first, reference = next(iter(values.items()))
        for name, value in values.items():
            if not _same(value, reference):
                raise ConfigError(
                    f"Data sets {first!r} and {name!r} are used together but their metadata "
                    f"{key!r} differ, so the same label would mean different classes: "
                    f"{_describe_difference(first, reference, name, value)}. Map both to one "
                    "class list (same names, same order) before concatenating them"
                )
        missing = [name for name in names if name not in values]
        if missing:
            logger.warning(
                "Data set(s) %s have no %r in MetadataCatalog while %s do; assuming their labels "
                "follow %r's.",
                ", ".join(repr(n) for n in missing),
                key,
                ", ".join(repr(n) for n in values),
                first,
            )


def _same(a: Any, b: Any) -> bool:
    # A list and a tuple of the same names agree: YAML and Python code produce either.
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def check_label_range(name: str, dataset_dicts: Sequence[Dict[str, Any]]) -> None:
    """Check that every ``"label"`` of ``name`` indexes its ``thing_classes``.

    Does nothing when the data set has no ``thing_classes`` or its dicts carry no int
    ``"label"`` (e.g. detection dicts with ``"annotations"``). Only call it with a list of
    dicts: indexing a lazy ``Dataset`` would load every sample.

    Args:
        name (str): the data set name (for ``MetadataCatalog`` and the message).
        dataset_dicts (sequence of dict): its dataset dicts.

    Raises:
        ConfigError: a label is negative or not below the number of classes.
    """
    classes = MetadataCatalog.get(name).get("thing_classes")
    if classes is None:
        return
    num_classes = len(classes)
    for index, record in enumerate(dataset_dicts):
        label = record.get("label") if isinstance(record, dict) else None
        if isinstance(label, bool) or not isinstance(label, numbers.Integral):
            continue
        if not 0 <= int(label) < num_classes:
            raise ConfigError(
                f"Data set {name!r}: sample {index} has label {label}, but its metadata "
                f"'thing_classes' has {num_classes} classes (labels 0..{num_classes - 1}); fix "
                "the labels or the class list"
            )
