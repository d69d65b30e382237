"""Per-sample repeat factors of the training set: per data set (``DATASETS.TRAIN_REPEAT``)
times class-balanced (``DATALOADER.REPEAT_THRESHOLD``).

A sample's factor is the expected number of times it is drawn per epoch by
:class:`~engine_lib.data.samplers.RepeatFactorTrainingSampler`: 3 means three times, 0.5 means
in about half of the epochs (fractions are rounded stochastically, epoch by epoch).
"""

import logging
import math
import numbers
from typing import Any, Dict, List, Sequence

import torch

from engine_lib.utils.errors import ConfigError

from .samplers import RepeatFactorTrainingSampler

__all__ = ["dataset_repeat_factors", "per_sample_factors", "class_balanced_factors"]

logger = logging.getLogger(__name__)


def dataset_repeat_factors(names: Sequence[str], repeats: Sequence[float]) -> List[float]:
    """Validate ``DATASETS.TRAIN_REPEAT`` against ``DATASETS.TRAIN``; one factor per data set.

    Args:
        names (sequence of str): ``DATASETS.TRAIN``.
        repeats (sequence of float): ``DATASETS.TRAIN_REPEAT``; empty means 1.0 for each.

    Returns:
        list[float]: the factor of each data set, in the order of ``names``.

    Raises:
        ConfigError: the lengths differ, or a factor is not a finite positive number.
    """
    names = list(names)
    if len(repeats) == 0:
        return [1.0] * len(names)
    if len(repeats) != len(names):
        raise ConfigError(
            f"DATASETS.TRAIN_REPEAT has {len(repeats)} factor(s) {tuple(repeats)} but "
            f"DATASETS.TRAIN has {len(names)} data set(s) {tuple(names)}: give one factor per "
            "data set, in the same order, or () for 1.0 each"
        )
    factors = []
    for name, repeat in zip(names, repeats):
        if isinstance(repeat, bool) or not isinstance(repeat, (int, float)):
            raise ConfigError(
                f"DATASETS.TRAIN_REPEAT: the factor of data set {name!r} is {repeat!r}; "
                "expected a number"
            )
        if not math.isfinite(repeat) or repeat <= 0:
            raise ConfigError(
                f"DATASETS.TRAIN_REPEAT: the factor of data set {name!r} is {repeat}; expected "
                "a positive number (3 = three times per epoch, 0.5 = half of its samples per "
                "epoch). To leave a data set out, remove it from DATASETS.TRAIN"
            )
        factors.append(float(repeat))
    return factors


def per_sample_factors(sizes: Sequence[int], factors: Sequence[float]) -> torch.Tensor:
    """Expand one factor per data set to one per sample of their concatenation.

    Args:
        sizes (sequence of int): the number of samples of each data set.
        factors (sequence of float): the factor of each data set.

    Returns:
        Tensor: float64, ``sum(sizes)`` factors.
    """
    assert len(sizes) == len(factors), (sizes, factors)
    return torch.repeat_interleave(
        torch.tensor(list(factors), dtype=torch.float64), torch.tensor(list(sizes))
    )


def class_balanced_factors(
    dataset_dicts: Sequence[Dict[str, Any]], repeat_thresh: float
) -> torch.Tensor:
    """Return class-balanced factors ``max(1, sqrt(repeat_thresh / frequency(label)))``.

    Frequencies are taken over ``dataset_dicts`` as given (the concatenated training set
    before any per-data-set repeat).

    Args:
        dataset_dicts (sequence of dict): every dict with an int ``"label"``.
        repeat_thresh (float): ``DATALOADER.REPEAT_THRESHOLD``; classes whose frequency is
            below it are repeated. 0 gives every sample the factor 1 (a warning is logged).

    Returns:
        Tensor: float64, one factor per dict.

    Raises:
        ConfigError: the threshold is negative, or a dict has no int ``"label"``.
    """
    if not math.isfinite(repeat_thresh) or repeat_thresh < 0:
        raise ConfigError(
            f"DATALOADER.REPEAT_THRESHOLD is {repeat_thresh}; expected a frequency >= 0 "
            "(e.g. 0.1: classes with fewer than 10% of the samples are repeated)"
        )
    if repeat_thresh == 0:
        logger.warning(
            "Class-balanced sampling with DATALOADER.REPEAT_THRESHOLD 0: no class is repeated. "
            "Set it to the class frequency below which to over-sample (e.g. 0.1)."
        )
    for index, record in enumerate(dataset_dicts):
        label = record.get("label") if isinstance(record, dict) else None
        if isinstance(label, bool) or not isinstance(label, numbers.Integral):
            raise ConfigError(
                f"Class-balanced sampling (DATALOADER.SAMPLER_TRAIN) needs an int 'label' in "
                f"every dataset dict; training sample {index} has {label!r}"
            )
    return RepeatFactorTrainingSampler.repeat_factors_from_labels(dataset_dicts, repeat_thresh)
