"""Dataset and sampler wrappers shared by the train and test loaders."""

import logging
import math
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from .catalog import SizedDataset
from .samplers import ResumableSampler
from .seeding import (
    TAG_EVAL,
    DrawSeeds,
    derive_seed,
    isolated_rngs,
    seed_sample,
    wants_numpy_and_python_seeds,
)

__all__ = [
    "MapDataset",
    "DrawSeedSampler",
    "trivial_batch_collator",
    "worker_batch_collator",
]

logger = logging.getLogger(__name__)

# A key of MapDataset: a plain index, or (index, draw seed) from DrawSeedSampler.
Key = Union[int, Tuple[int, int]]


class MapDataset(Dataset):
    """Apply ``map_func`` to each item of ``dataset``, each sample under its own seed.

    A key is an index, or ``(index, draw_seed)`` as yielded by :class:`DrawSeedSampler` (for
    a plain index, a seed derived from the index). Before reading and mapping a sample, torch's
    global CPU generator is seeded with its seed (numpy's and python's too when ``map_func`` or
    ``dataset`` asks, see :func:`~engine_lib.data.seeding.wants_numpy_and_python_seeds`), so
    its random draws are reproducible. In the main process the caller's generators are saved
    once per batch and restored after it (:meth:`__getitems__`, which the ``DataLoader`` calls
    with a batch of keys); in a data-loader worker they are the worker's own and are left
    seeded (see :mod:`engine_lib.data.seeding`).

    Args:
        dataset (sequence or Dataset): items to map, usually dataset dicts.
        map_func (callable): maps one item to one output (e.g. a ``DatasetMapper``); must not
            return ``None``.
    """

    def __init__(self, dataset: SizedDataset, map_func: Callable[[Any], Any]):
        self._dataset = dataset
        self._map_func = map_func
        self._numpy_and_python = wants_numpy_and_python_seeds(map_func, dataset)

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, key: Key) -> Any:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: Sequence[Key]) -> List[Any]:
        """Return the mapped samples of a batch of keys (what the ``DataLoader`` calls)."""
        if get_worker_info() is not None:
            # A worker's global generators serve nothing but its samples: no need to restore.
            return [self._map(key) for key in keys]
        with isolated_rngs(self._numpy_and_python):
            return [self._map(key) for key in keys]

    def _map(self, key: Key) -> Any:
        if isinstance(key, tuple):
            index, draw_seed = key
        else:
            index, draw_seed = key, derive_seed(TAG_EVAL, key)
        seed_sample(draw_seed, self._numpy_and_python)
        result = self._map_func(self._dataset[index])
        if result is None:
            raise TypeError(
                f"The mapper {self._map_func!r} returned None for sample {index}; skipping "
                "samples is not supported (it would break exact resume): filter the dataset "
                "dicts instead"
            )
        return result


class DrawSeedSampler(Sampler[Tuple[int, int]]):
    """Pair each index of ``sampler`` with the seed of its random draw: ``(index, seed)``.

    A :class:`~engine_lib.data.samplers.ResumableSampler` supplies seeds that depend on its
    seed, its rank and the position in its stream, so they survive a resume. Any other
    sampler gets seeds from ``(seed, rank, count since iteration began)``: reproducible from
    the start, but such a sampler cannot resume mid-stream.

    Args:
        sampler (Sampler): yields dataset indices.
        seed (int): base seed for samplers that are not resumable.
        rank (int): this process's rank, for samplers that are not resumable.
    """

    def __init__(self, sampler: Sampler, seed: int, rank: int):
        self.sampler = sampler
        self._seed = seed
        self._rank = rank

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        if isinstance(self.sampler, ResumableSampler):
            return self.sampler.iter_with_draw_seeds()
        return self._counted()

    def _counted(self) -> Iterator[Tuple[int, int]]:
        draw_seed = DrawSeeds(self._seed, self._rank)
        for position, index in enumerate(self.sampler):
            yield index, draw_seed(position)

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]


def trivial_batch_collator(batch: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Return the batch as it is: a list of per-sample dicts (the model's input convention)."""
    return batch


def worker_batch_collator(batch: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Return the batch as a list of dicts that travels between processes as one tensor per dtype.

    The collate function of loaders with workers. A worker sends its batch to the main
    process through shared memory, and every tensor storage costs a shared-memory segment and
    a file-descriptor handover: 64 images of their own made loading small images with 2
    workers slower than without. Here the batch's tensors (the values of each dict, on the
    CPU) are copied into one flat tensor per dtype, each dict gets a view of it with the same
    shape and values, and the batch pickles as those flat tensors plus the layout: one
    segment per dtype and batch. Other values, and a batch that is not a list of dicts, are
    left as they are; the main process receives a plain list of dicts.

    Args:
        batch (list[dict]): the mapped samples of one batch.

    Returns:
        list[dict]: new dicts with the same keys and values.
    """
    if not all(isinstance(sample, dict) for sample in batch):
        return batch
    by_dtype: Dict[torch.dtype, List[Tuple[int, Any, torch.Tensor]]] = {}
    for i, sample in enumerate(batch):
        for key, value in sample.items():
            if isinstance(value, torch.Tensor) and value.device.type == "cpu":
                by_dtype.setdefault(value.dtype, []).append((i, key, value))
    if not by_dtype:
        return batch
    skeleton = [dict(sample) for sample in batch]
    flats, layout = {}, []
    for dtype, entries in by_dtype.items():
        flats[dtype] = torch.cat([tensor.detach().reshape(-1) for _, _, tensor in entries])
        offset = 0
        for i, key, tensor in entries:
            skeleton[i][key] = None  # keeps the key's place in the dict
            layout.append((i, key, dtype, offset, tuple(tensor.shape)))
            offset += tensor.numel()
    return _PackedBatch(skeleton, flats, layout)


def _unpack(skeleton: List[Dict[str, Any]], flats: Dict, layout: List[Tuple]) -> List[Dict]:
    """The list of dicts of a packed batch, each packed tensor a view of its flat tensor."""
    samples = [dict(sample) for sample in skeleton]
    for i, key, dtype, offset, shape in layout:
        samples[i][key] = flats[dtype][offset : offset + math.prod(shape)].view(shape)
    return samples


class _PackedBatch(list):
    """The list of dicts of :func:`worker_batch_collator`; pickles as its flat tensors."""

    def __init__(self, skeleton: List[Dict[str, Any]], flats: Dict, layout: List[Tuple]):
        super().__init__(_unpack(skeleton, flats, layout))
        self._parts = (skeleton, flats, layout)

    def __reduce__(self) -> Tuple[Callable, Tuple]:
        # Unpickles as a plain list: what the rest of the pipeline (pin_memory included) expects.
        return _unpack, self._parts
