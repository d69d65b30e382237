"""The value ranges of the data keys (``DATALOADER``, ``INPUT``, ``TEST.IMS_PER_BATCH``).

``DATALOADER.NUM_WORKERS -1`` or ``TEST.IMS_PER_BATCH 0`` would otherwise fail only once a
loader is built (the latter after all of training); here they stop at merge time with one
line, before anything is written. ``DATASETS.TRAIN`` / ``TEST`` must be lists of names.
"""

import logging
from typing import Any

from engine_lib.config.validators import coerce_like_default, register_range, register_value_check
from engine_lib.utils.errors import ConfigError

__all__ = ["DATA_RANGES", "check_dataset_list"]

logger = logging.getLogger(__name__)

#: ``key: (low, high, meaning)``; None: no bound.
DATA_RANGES = {
    "DATALOADER.NUM_WORKERS": (0, None, "0 loads in the main process"),
    "DATALOADER.REPEAT_THRESHOLD": (0.0, None, "the repeat-factor threshold"),
    "DATALOADER.NUM_INSTANCE": (1, None, "instances per identity in a batch"),
    "TEST.IMS_PER_BATCH": (1, None, "images per evaluation batch, over all processes"),
    "INPUT.FLIP.PROB": (0.0, 1.0, "a probability"),
    "INPUT.RANDOM_ERASING.PROB": (0.0, 1.0, "a probability"),
    "INPUT.COLOR_JITTER.BRIGHTNESS": (0.0, None, "a jitter strength"),
    "INPUT.COLOR_JITTER.CONTRAST": (0.0, None, "a jitter strength"),
    "INPUT.COLOR_JITTER.SATURATION": (0.0, None, "a jitter strength"),
    "INPUT.COLOR_JITTER.HUE": (0.0, 0.5, "a hue shift"),
}


def check_dataset_list(value: Any, default: Any, key: str, source: str) -> Any:
    """The value check of ``DATASETS.TRAIN`` / ``TEST``: a list of data set names (strings).

    Raises:
        ConfigError: a value that is not a list of strings (e.g. ``[['digits_train']]``).
    """
    value = coerce_like_default(value, default, key, source)
    bad = [v for v in value if not isinstance(v, str)]
    if bad:
        raise ConfigError(
            f"Config key '{key}' ({source}) got {value!r}; expected a list of data set names "
            f"(strings), e.g. ('digits_train',), not {bad[0]!r}"
        )
    return value


for _key, (_low, _high, _meaning) in DATA_RANGES.items():
    register_range(_key, _low, _high, meaning=_meaning)
for _key in ("DATASETS.TRAIN", "DATASETS.TEST"):
    register_value_check(_key, check_dataset_list)
