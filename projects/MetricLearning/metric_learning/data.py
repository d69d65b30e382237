"""Query / gallery splits of the digits test set, each digit class an identity."""

import functools
import logging
from collections import Counter
from typing import Any, Dict, List

from engine_lib.data import DatasetCatalog, MetadataCatalog
from engine_lib.data.datasets import load_digits_dicts
from engine_lib.utils.errors import ConfigError

__all__ = ["DIGITS_REID_NAMES", "load_digits_query_gallery", "register_digits_query_gallery"]

logger = logging.getLogger(__name__)

# The query split, the gallery split, and both together (what the evaluator needs at once).
DIGITS_REID_NAMES = ("digits_query", "digits_gallery", "digits_query_gallery")


def load_digits_query_gallery(num_query_per_id: int, split: str = "all") -> List[Dict[str, Any]]:
    """Split the digits test set: the first ``num_query_per_id`` images of each digit are queries.

    Args:
        num_query_per_id (int): queries per identity; each identity keeps the rest (at least
            one image) in the gallery.
        split (str): "query", "gallery" or "all" (queries first, then the gallery).

    Returns:
        list[dict]: the digits test dicts (see ``load_digits_dicts``) with a bool "query".

    Raises:
        ConfigError: ``num_query_per_id`` leaves an identity with no query or no gallery image.
    """
    dicts = load_digits_dicts("test")
    sizes = Counter(d["label"] for d in dicts)
    if not 0 < num_query_per_id < min(sizes.values()):
        raise ConfigError(
            f"METRIC_LEARNING.NUM_QUERY_PER_ID={num_query_per_id}; expected 1 to "
            f"{min(sizes.values()) - 1} so every digit has query and gallery images"
        )
    seen: Counter = Counter()
    query, gallery = [], []
    for d in dicts:
        seen[d["label"]] += 1
        is_query = seen[d["label"]] <= num_query_per_id
        (query if is_query else gallery).append({**d, "query": is_query})
    return {"query": query, "gallery": gallery, "all": query + gallery}[split]


def register_digits_query_gallery(num_query_per_id: int) -> None:
    """(Re-)register :data:`DIGITS_REID_NAMES` with ``num_query_per_id`` queries per identity.

    Registering again replaces the earlier split, so a config can change it in one process.
    """
    for name, split in zip(DIGITS_REID_NAMES, ("query", "gallery", "all")):
        if name in DatasetCatalog:
            DatasetCatalog.remove(name)
        DatasetCatalog.register(
            name, functools.partial(load_digits_query_gallery, num_query_per_id, split)
        )
        MetadataCatalog.get(name).set(thing_classes=[str(d) for d in range(10)])
