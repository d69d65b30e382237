"""Build the training sampler named by ``DATALOADER.SAMPLER_TRAIN`` (with repeat factors).

Public through :mod:`engine_lib.data.build` and :mod:`engine_lib.data`, as
``build_training_sampler``.
"""

import difflib
import logging
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from engine_lib.config import CfgNode
from engine_lib.utils import comm
from engine_lib.utils.errors import ConfigError, UnknownNameError

from .catalog import DatasetCatalog, SizedDataset
from .repeat_factors import class_balanced_factors, dataset_repeat_factors, per_sample_factors
from .samplers import (
    IdentitySampler,
    RepeatFactorTrainingSampler,
    ResumableSampler,
    TrainingSampler,
)

__all__ = ["build_training_sampler", "TRAIN_SAMPLERS", "CLASS_BALANCED_SAMPLERS"]

logger = logging.getLogger(__name__)

DatasetLike = Union[List[Dict[str, Any]], SizedDataset]

# Class-balanced sampling: detectron2's name, and a name that says what it does.
CLASS_BALANCED_SAMPLERS = ("RepeatFactorTrainingSampler", "ClassBalancedSampler")
TRAIN_SAMPLERS = ("TrainingSampler", *CLASS_BALANCED_SAMPLERS, "IdentitySampler")


def _records(dataset: DatasetLike) -> Sequence[Dict[str, Any]]:
    # Index explicitly: a map-style Dataset need not support iteration.
    return dataset if isinstance(dataset, list) else [dataset[i] for i in range(len(dataset))]


def _dataset_factors(cfg: CfgNode, dataset: DatasetLike) -> Optional[torch.Tensor]:
    """Per-sample factors from ``DATASETS.TRAIN_REPEAT``, or ``None`` when all are 1."""
    names = list(cfg.DATASETS.TRAIN)
    factors = dataset_repeat_factors(names, cfg.DATASETS.TRAIN_REPEAT)
    if all(f == 1.0 for f in factors):
        return None
    # The catalog caches each data set, so asking for the sizes again loads nothing.
    sizes = [len(DatasetCatalog.get(name)) for name in names]
    if sum(sizes) != len(dataset):
        raise ConfigError(
            f"DATASETS.TRAIN_REPEAT needs the training set to be the concatenation of "
            f"DATASETS.TRAIN {tuple(names)} ({sum(sizes)} samples), but the data set given has "
            f"{len(dataset)}; pass your own sampler instead"
        )
    return per_sample_factors(sizes, factors)


def build_training_sampler(
    cfg: CfgNode, dataset: DatasetLike, batch_size_per_rank: int
) -> ResumableSampler:
    """Build the sampler named by ``DATALOADER.SAMPLER_TRAIN`` for ``dataset``.

    ``DATASETS.TRAIN_REPEAT`` (one factor per data set of ``DATASETS.TRAIN``) multiplies each
    sample's repeat factor; with ``TrainingSampler`` and a factor other than 1 the sampler
    becomes a :class:`RepeatFactorTrainingSampler`, so a data set with factor 3 really
    appears three times per epoch. ``"ClassBalancedSampler"`` is another name of
    ``"RepeatFactorTrainingSampler"``: factor = data set factor x
    ``max(1, sqrt(REPEAT_THRESHOLD / frequency of the sample's label))``.

    The seed is ``cfg.SEED`` (a seed shared by all ranks when negative).

    Raises:
        UnknownNameError: the sampler name is not one of :data:`TRAIN_SAMPLERS`.
        ConfigError: the identity sampler's batch is not a multiple of
            ``DATALOADER.NUM_INSTANCE``; ``DATASETS.TRAIN_REPEAT`` or
            ``DATALOADER.REPEAT_THRESHOLD`` is invalid.
    """
    name = cfg.DATALOADER.SAMPLER_TRAIN
    seed = cfg.SEED if cfg.SEED >= 0 else None
    if name not in TRAIN_SAMPLERS:
        close = difflib.get_close_matches(name, TRAIN_SAMPLERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"DATALOADER.SAMPLER_TRAIN {name!r} is unknown.{hint} Expected one of "
            f"{', '.join(TRAIN_SAMPLERS)}"
        )
    dataset_factors = _dataset_factors(cfg, dataset)
    if name == "TrainingSampler":
        if dataset_factors is None:
            return TrainingSampler(len(dataset), seed=seed)
        logger.info(
            "DATASETS.TRAIN_REPEAT %s: sampling with RepeatFactorTrainingSampler instead of "
            "TrainingSampler; one epoch is about %.0f samples instead of %d.",
            tuple(cfg.DATASETS.TRAIN_REPEAT),
            float(dataset_factors.sum()),
            len(dataset),
        )
        return RepeatFactorTrainingSampler(dataset_factors, seed=seed)
    if name in CLASS_BALANCED_SAMPLERS:
        factors = class_balanced_factors(_records(dataset), cfg.DATALOADER.REPEAT_THRESHOLD)
        logger.info(
            "Class-balanced sampling (REPEAT_THRESHOLD %g): %d of %d samples repeated, largest "
            "class factor %.2f.",
            cfg.DATALOADER.REPEAT_THRESHOLD,
            int((factors > 1).sum()),
            len(factors),
            float(factors.max()),
        )
        if dataset_factors is not None:
            factors = factors * dataset_factors
        sampler = RepeatFactorTrainingSampler(factors, seed=seed)
        logger.info(
            "One epoch is about %d samples (%d without repeats).", sampler.epoch_size, len(dataset)
        )
        return sampler
    assert name == "IdentitySampler", name
    if dataset_factors is not None:
        raise ConfigError(
            f"DATASETS.TRAIN_REPEAT {tuple(cfg.DATASETS.TRAIN_REPEAT)} cannot be combined with "
            "DATALOADER.SAMPLER_TRAIN 'IdentitySampler' (it draws whole identities); use "
            "DATASETS.TRAIN_REPEAT () or another sampler"
        )
    k = cfg.DATALOADER.NUM_INSTANCE
    if k <= 0 or batch_size_per_rank % k:
        raise ConfigError(
            f"DATALOADER.SAMPLER_TRAIN 'IdentitySampler' needs the per-process batch "
            f"(SOLVER.IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH} / {comm.get_world_size()} "
            f"processes = {batch_size_per_rank}) to be a multiple of DATALOADER.NUM_INSTANCE "
            f"({k})"
        )
    labels = [d["label"] for d in _records(dataset)]
    return IdentitySampler(labels, batch_size_per_rank, k, seed=seed)
