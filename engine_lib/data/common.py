"""Dataset and sampler wrappers shared by the train and test loaders."""

import logging
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple, Union

from torch.utils.data import Dataset, Sampler

from .samplers import ResumableSampler
from .seeding import TAG_DRAW, TAG_EVAL, derive_seed, seeded_rng

__all__ = ["MapDataset", "DrawSeedSampler", "trivial_batch_collator"]

logger = logging.getLogger(__name__)

# A key of MapDataset: a plain index, or (index, draw seed) from DrawSeedSampler.
Key = Union[int, Tuple[int, int]]


class MapDataset(Dataset):
    """Apply ``map_func`` to each item of ``dataset`` with a seeded, isolated RNG.

    A key is an index, or ``(index, draw_seed)`` as yielded by :class:`DrawSeedSampler`.
    ``map_func`` runs under :func:`~engine_lib.data.seeding.seeded_rng` with that seed (for a
    plain index, a seed derived from the index), so its random draws are reproducible and
    the caller's global generators are left untouched (see :mod:`engine_lib.data.seeding`).

    Args:
        dataset (sequence or Dataset): items to map, usually dataset dicts.
        map_func (callable): maps one item to one output (e.g. a ``DatasetMapper``); must not
            return ``None``.
    """

    def __init__(self, dataset: Union[Sequence[Any], Dataset], map_func: Callable[[Any], Any]):
        self._dataset = dataset
        self._map_func = map_func

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, key: Key) -> Any:
        if isinstance(key, tuple):
            index, draw_seed = key
        else:
            index, draw_seed = key, derive_seed(TAG_EVAL, key)
        with seeded_rng(draw_seed):
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
        for position, index in enumerate(self.sampler):
            yield index, derive_seed(TAG_DRAW, self._seed, self._rank, position)

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]


def trivial_batch_collator(batch: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Return the batch as it is: a list of per-sample dicts (the model's input convention)."""
    return batch
