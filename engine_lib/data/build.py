"""Build the training and test data loaders (``list[dict]`` batches) from objects or a config.

Both builders are ``@configurable``: ``build_train_loader(cfg)`` reads ``DATASETS``,
``DATALOADER``, ``SOLVER.IMS_PER_BATCH``, ``INPUT`` and ``SEED``; the same functions take
plain objects (``build_train_loader(dataset, mapper=..., total_batch_size=64)``).

Reproducibility and exact resume (see :mod:`engine_lib.data.seeding`): the training
sampler is a :class:`~engine_lib.data.samplers.ResumableSampler`; each sample's
augmentation seed depends on (seed, rank, position in the rank's stream); workers are seeded
from (seed, rank, worker id); the ``DataLoader`` gets its own generator, so building or
iterating a loader never consumes the global torch RNG. To resume, the trainer calls
``get_training_sampler(loader).set_position(samples_consumed_by_this_rank)`` before it starts
iterating the loader.
"""

import itertools
import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Union, cast

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

from engine_lib.config import CfgNode, configurable
from engine_lib.utils import comm
from engine_lib.utils.errors import ConfigError

from .catalog import DatasetCatalog, SizedDataset
from .common import DrawSeedSampler, MapDataset, trivial_batch_collator, worker_batch_collator
from .mapper import DatasetMapper
from .metadata_check import check_label_range, check_metadata_consistency
from .sampler_builder import build_training_sampler
from .samplers import InferenceSampler, ResumableSampler, TrainingSampler
from .seeding import TAG_LOADER, WorkerSeeder, derive_seed

__all__ = [
    "get_dataset_dicts",
    "build_training_sampler",
    "build_train_loader",
    "build_test_loader",
    "get_training_sampler",
    "epoch_size",
]

logger = logging.getLogger(__name__)

DatasetLike = Union[List[Dict[str, Any]], SizedDataset]


def get_dataset_dicts(names: Union[str, Sequence[str]]) -> DatasetLike:
    """Load the data sets ``names`` from ``DatasetCatalog`` and concatenate them.

    Checks each list of dicts' labels against its ``thing_classes``
    (:func:`~engine_lib.data.metadata_check.check_label_range`), and that several data sets
    agree on their class metadata
    (:func:`~engine_lib.data.metadata_check.check_metadata_consistency`).

    Args:
        names (str or sequence of str): registered data set names.

    Returns:
        A list of dicts when every data set is a list (a new list; the dicts are shared with
        the catalog's cache), else a ``ConcatDataset``.

    Raises:
        UnknownNameError: a name is not registered.
        ConfigError: no name is given, a data set is empty, a label is out of its class
            list's range, or two data sets have different class lists.
    """
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ConfigError("No data set given: DATASETS.TRAIN / DATASETS.TEST is empty")
    datasets = [DatasetCatalog.get(name) for name in names]
    for name, dataset in zip(names, datasets):
        if len(dataset) == 0:
            raise ConfigError(f"Data set {name!r} is empty; its loader returned no samples")
        if isinstance(dataset, list):
            check_label_range(name, dataset)
    if len(names) > 1:
        check_metadata_consistency(names)
    lists = [d for d in datasets if isinstance(d, list)]
    if len(lists) == len(datasets):
        return list(itertools.chain.from_iterable(lists))
    # A cast: ConcatDataset needs only len() and indexing of its parts, which lists have too.
    return datasets[0] if len(datasets) == 1 else ConcatDataset(cast(List[Dataset], datasets))


def _batch_per_rank(total_batch_size: int, world_size: int) -> int:
    if total_batch_size <= 0 or total_batch_size % world_size:
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH is {total_batch_size}; it must be a positive multiple of the "
            f"world size ({world_size}) so every process gets the same batch"
        )
    return total_batch_size // world_size


def _identity(x: Any) -> Any:
    return x


def _default_collator(num_workers: int) -> Callable[[List[Any]], List[Any]]:
    # A list of dicts either way; with workers their tensors share one storage per batch,
    # which makes the transfer to the main process one shared-memory segment, not one per image.
    return worker_batch_collator if num_workers > 0 else trivial_batch_collator


def _seeded_generator(*values: int) -> torch.Generator:
    # The DataLoader draws its workers' base seed from this generator; without one it would
    # draw from (and so advance) the global torch RNG on every iter(loader).
    return torch.Generator().manual_seed(derive_seed(TAG_LOADER, *values))


def _train_loader_from_config(
    cfg: CfgNode,
    mapper: Optional[Callable] = None,
    dataset: Optional[DatasetLike] = None,
    sampler: Optional[Sampler] = None,
) -> Dict[str, Any]:
    if dataset is None:
        dataset = get_dataset_dicts(cfg.DATASETS.TRAIN)
    if mapper is None:
        mapper = DatasetMapper(cfg, True)
    if sampler is None:
        batch = _batch_per_rank(cfg.SOLVER.IMS_PER_BATCH, comm.get_world_size())
        sampler = build_training_sampler(cfg, dataset, batch)
    return {
        "dataset": dataset,
        "mapper": mapper,
        "sampler": sampler,
        "total_batch_size": cfg.SOLVER.IMS_PER_BATCH,
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
        "seed": cfg.SEED if cfg.SEED >= 0 else None,
        "pin_memory": str(cfg.MODEL.DEVICE).startswith("cuda"),
        "drop_last": cfg.DATALOADER.DROP_LAST,
    }


@configurable(from_config=_train_loader_from_config)
def build_train_loader(
    dataset: DatasetLike,
    *,
    mapper: Optional[Callable[[Dict[str, Any]], Any]] = None,
    sampler: Optional[Sampler] = None,
    total_batch_size: int,
    num_workers: int = 0,
    seed: Optional[int] = None,
    pin_memory: bool = False,
    drop_last: bool = True,
    collate_fn: Optional[Callable[[List[Any]], Any]] = None,
) -> DataLoader:
    """Build the training loader: an endless iterable of per-rank batches (lists of dicts).

    Also callable as ``build_train_loader(cfg, mapper=None, dataset=None, sampler=None)``:
    the data sets ``DATASETS.TRAIN`` (concatenated), ``DatasetMapper(cfg, True)``, the sampler
    ``DATALOADER.SAMPLER_TRAIN``, ``SOLVER.IMS_PER_BATCH``, ``DATALOADER.NUM_WORKERS``,
    ``SEED``, pinned memory when ``MODEL.DEVICE`` is CUDA.

    Args:
        dataset (list or Dataset): dataset dicts.
        mapper (callable, optional): maps a dataset dict to a model input (default: none).
        sampler (Sampler, optional): yields indices of ``dataset``; a ``ResumableSampler``
            makes the loader resumable. Default: ``TrainingSampler(len(dataset), seed=seed)``.
        total_batch_size (int): batch size summed over all processes (``SOLVER.IMS_PER_BATCH``).
        num_workers (int): worker processes (0 = load in this process).
        seed (int, optional): base seed of workers and, for samplers that are not resumable,
            of augmentations. Default: the sampler's seed, else a seed shared by all ranks.
        pin_memory (bool): pin batches in page-locked memory (for CUDA training).
        drop_last (bool): drop an incomplete last batch (only matters for finite samplers).
        collate_fn (callable, optional): default: keep the batch as a list of dicts
            (:func:`~engine_lib.data.common.worker_batch_collator` with workers).

    Returns:
        DataLoader: use :func:`get_training_sampler` on it to reposition the sampler.

    Raises:
        ConfigError: ``total_batch_size`` is not a multiple of the world size.
    """
    world_size, rank = comm.get_world_size(), comm.get_rank()
    batch_size = _batch_per_rank(total_batch_size, world_size)
    if sampler is None:
        sampler = TrainingSampler(len(dataset), seed=seed)
    if seed is None:
        seed = sampler.seed if isinstance(sampler, ResumableSampler) else comm.shared_random_seed()
    if not isinstance(sampler, ResumableSampler):
        logger.warning(
            "The training sampler %s is not a ResumableSampler: a resumed run will not see the "
            "same samples as an uninterrupted one.",
            type(sampler).__name__,
        )
    return DataLoader(
        MapDataset(dataset, mapper if mapper is not None else _identity),
        sampler=DrawSeedSampler(sampler, seed, rank),
        batch_size=batch_size,
        drop_last=drop_last,
        num_workers=num_workers,
        collate_fn=collate_fn if collate_fn is not None else _default_collator(num_workers),
        worker_init_fn=WorkerSeeder(seed, rank),
        generator=_seeded_generator(seed, rank),
        pin_memory=pin_memory,
        # Workers outlive one iteration: re-creating them after every epoch (or after
        # reset_data_loader) would cost seconds for nothing.
        persistent_workers=num_workers > 0,
    )


def get_training_sampler(loader: Any) -> Optional[ResumableSampler]:
    """Return the resumable sampler of a loader from :func:`build_train_loader`, else ``None``.

    On resume the trainer calls ``get_training_sampler(loader).set_position(n)`` with ``n``
    the number of samples this rank consumed (``iteration * per-rank batch size`` when every
    iteration takes one batch) *before* it first iterates the loader.
    """
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, DrawSeedSampler):
        sampler = sampler.sampler
    return sampler if isinstance(sampler, ResumableSampler) else None


def epoch_size(loader: Any) -> int:
    """Return the number of samples in one epoch of a training loader (all ranks together).

    For a loader from :func:`build_train_loader` with a resumable sampler this is
    ``sampler.epoch_size``: the data set size for ``TrainingSampler``; with repeat factors
    (``DATASETS.TRAIN_REPEAT``, class-balanced sampling) the *expected* number of samples
    drawn per epoch, ``round(sum of the per-sample factors)``. For any other loader, the
    length of its sampler, else of its data set. Iterations per epoch are
    ``epoch_size(loader) / SOLVER.IMS_PER_BATCH``.

    Args:
        loader (DataLoader or ResumableSampler): the training loader, or its sampler.

    Returns:
        int: samples per epoch, at least 1.

    Raises:
        TypeError: ``loader`` has neither a sized sampler nor a sized data set.
    """
    if isinstance(loader, ResumableSampler):
        return loader.epoch_size
    sampler = get_training_sampler(loader)
    if sampler is not None:
        return sampler.epoch_size
    for attribute in ("sampler", "dataset"):
        try:
            return max(1, len(getattr(loader, attribute)))
        except (AttributeError, TypeError):
            continue
    raise TypeError(f"Cannot tell the epoch size of {type(loader).__name__}: it has no length")


def _test_loader_from_config(
    cfg: CfgNode, dataset_name: Union[str, Sequence[str]], mapper: Optional[Callable] = None
) -> Dict[str, Any]:
    return {
        "dataset": get_dataset_dicts(dataset_name),
        "mapper": mapper if mapper is not None else DatasetMapper(cfg, False),
        "batch_size": cfg.TEST.IMS_PER_BATCH,
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
        "pin_memory": str(cfg.MODEL.DEVICE).startswith("cuda"),
    }


@configurable(from_config=_test_loader_from_config)
def build_test_loader(
    dataset: DatasetLike,
    *,
    mapper: Optional[Callable[[Dict[str, Any]], Any]] = None,
    sampler: Optional[Sampler] = None,
    batch_size: int = 1,
    num_workers: int = 0,
    pin_memory: bool = False,
    collate_fn: Optional[Callable[[List[Any]], Any]] = None,
) -> DataLoader:
    """Build a loader that yields every sample once over all ranks, in order, in list batches.

    Also callable as ``build_test_loader(cfg, dataset_name, mapper=None)``: the data set(s)
    ``dataset_name``, ``DatasetMapper(cfg, False)``, ``TEST.IMS_PER_BATCH`` samples per batch
    on each process, ``DATALOADER.NUM_WORKERS``.

    Args:
        dataset (list or Dataset): dataset dicts.
        mapper (callable, optional): maps a dataset dict to a model input (default: none).
        sampler (Sampler, optional): default ``InferenceSampler(len(dataset))``: contiguous
            shards in rank order, so gathering results in rank order restores dataset order.
        batch_size (int): samples per batch on each process (the last batch may be smaller).
        num_workers (int): worker processes.
        pin_memory (bool): pin batches in page-locked memory.
        collate_fn (callable, optional): default: keep the batch as a list of dicts
            (:func:`~engine_lib.data.common.worker_batch_collator` with workers).

    Returns:
        DataLoader: a finite loader over this rank's share.
    """
    if batch_size <= 0:
        raise ConfigError(f"TEST.IMS_PER_BATCH is {batch_size}; expected a positive integer")
    rank = comm.get_rank()
    return DataLoader(
        MapDataset(dataset, mapper if mapper is not None else _identity),
        sampler=sampler if sampler is not None else InferenceSampler(len(dataset)),
        batch_size=batch_size,
        drop_last=False,
        num_workers=num_workers,
        collate_fn=collate_fn if collate_fn is not None else _default_collator(num_workers),
        worker_init_fn=WorkerSeeder(0, rank),
        generator=_seeded_generator(0, rank),
        pin_memory=pin_memory,
    )
