"""The default training sampler: reshuffled epochs, sharded by rank, resumable."""

import logging
from typing import List, Optional, Tuple

import torch

from .base import ResumableSampler

__all__ = ["TrainingSampler"]

logger = logging.getLogger(__name__)


class TrainingSampler(ResumableSampler):
    """Infinite stream of indices in ``[0, size)``: epoch after epoch, each a fresh permutation.

    The global stream is ``perm(0) + perm(1) + ...`` where ``perm(e)`` depends only on
    ``(seed, e)``; rank ``r`` of ``W`` takes the global positions ``r, r + W, r + 2W, ...``,
    so ranks see disjoint samples and together exactly the global stream.

    Args:
        size (int): number of samples in the dataset.
        shuffle (bool): permute each epoch (default ``True``); ``False`` repeats ``0..size-1``.
        seed (int, optional): seed shared by all ranks (default: ``comm.shared_random_seed()``).
        rank (int, optional): default ``comm.get_rank()``.
        world_size (int, optional): default ``comm.get_world_size()``.

    Example:
        >>> sampler = TrainingSampler(len(dataset), seed=0)
        >>> sampler.set_position(iteration * batch_size_per_rank)  # on resume
    """

    def __init__(
        self,
        size: int,
        shuffle: bool = True,
        seed: Optional[int] = None,
        *,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ):
        if int(size) != size or size <= 0:
            raise ValueError(f"TrainingSampler needs a dataset with samples, got size={size!r}")
        super().__init__(seed, rank=rank, world_size=world_size)
        self._size = int(size)
        self._shuffle = shuffle

    def epoch_indices(self, epoch: int) -> List[int]:
        """Return the order of the dataset in ``epoch`` of the global stream."""
        if not self._shuffle:
            return list(range(self._size))
        generator = torch.Generator().manual_seed(self.epoch_seed(epoch))
        return torch.randperm(self._size, generator=generator).tolist()

    def epoch_length(self, epoch: int) -> int:
        """Return the dataset size: every epoch is one permutation."""
        return self._size

    def _locate(self, global_position: int) -> Tuple[int, int]:
        # Equal-length epochs: jump straight there, O(1) whatever the position.
        return divmod(global_position, self._size)
