"""Sampler for evaluation: every index exactly once over all ranks, in order."""

import logging
from typing import Iterator, Optional

from torch.utils.data import Sampler

from engine_lib.utils import comm

__all__ = ["InferenceSampler"]

logger = logging.getLogger(__name__)


class InferenceSampler(Sampler[int]):
    """Split ``range(size)`` into contiguous shards, one per rank, in rank order.

    The first ``size % world_size`` ranks get one sample more. Concatenating the per-rank
    results in rank order (what ``comm.gather`` returns) restores the dataset order; no
    sample is repeated or dropped, so metrics are exact.

    Args:
        size (int): number of samples in the dataset.
        rank (int, optional): default ``comm.get_rank()``.
        world_size (int, optional): default ``comm.get_world_size()``.
    """

    def __init__(self, size: int, *, rank: Optional[int] = None, world_size: Optional[int] = None):
        if int(size) != size or size < 0:
            raise ValueError(f"InferenceSampler needs a non-negative size, got {size!r}")
        rank = comm.get_rank() if rank is None else int(rank)
        world_size = comm.get_world_size() if world_size is None else int(world_size)
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        base, extra = divmod(int(size), world_size)
        self._begin = rank * base + min(rank, extra)
        self._end = self._begin + base + (1 if rank < extra else 0)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self._begin, self._end))

    def __len__(self) -> int:
        return self._end - self._begin
