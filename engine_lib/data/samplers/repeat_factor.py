"""Class-balanced training sampler: rare classes' samples repeated within each epoch."""

import logging
import math
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from .base import ResumableSampler

__all__ = ["RepeatFactorTrainingSampler"]

logger = logging.getLogger(__name__)


class RepeatFactorTrainingSampler(ResumableSampler):
    """Like :class:`TrainingSampler`, but sample ``i`` appears about ``repeat_factors[i]`` times
    per epoch.

    A fractional factor is rounded stochastically in each epoch (``2.3`` gives 3 copies with
    probability 0.3, else 2), so the expected count is exact. The rounding and the shuffle of
    epoch ``e`` use a generator seeded from ``(seed, e)`` only, so epochs are reproducible and
    the sampler resumes at any position like the others.

    Args:
        repeat_factors (sequence of float or Tensor): one factor per sample, each > 0.
        shuffle (bool): permute each epoch (default ``True``).
        seed (int, optional): seed shared by all ranks (default: ``comm.shared_random_seed()``).
        rank (int, optional): default ``comm.get_rank()``.
        world_size (int, optional): default ``comm.get_world_size()``.
    """

    def __init__(
        self,
        repeat_factors: Union[Sequence[float], torch.Tensor],
        shuffle: bool = True,
        seed: Optional[int] = None,
        *,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ):
        factors = torch.as_tensor(repeat_factors, dtype=torch.float64).flatten()
        if factors.numel() == 0 or not bool((factors > 0).all()):
            raise ValueError("repeat_factors must be a non-empty sequence of positive numbers")
        super().__init__(seed, rank=rank, world_size=world_size)
        self._integer = factors.floor()
        self._fraction = factors - self._integer
        self._shuffle = shuffle

    @staticmethod
    def repeat_factors_from_labels(
        dataset_dicts: Sequence[Dict[str, Any]], repeat_thresh: float
    ) -> torch.Tensor:
        """Return per-sample factors ``max(1, sqrt(repeat_thresh / frequency(label)))``.

        ``frequency`` is the fraction of samples with that label, so classes rarer than
        ``repeat_thresh`` are repeated and the others appear once per epoch.

        Args:
            dataset_dicts (sequence of dict): dataset dicts, each with an int ``"label"``.
            repeat_thresh (float): frequency below which a class is over-sampled.

        Returns:
            Tensor: float64 factors, one per dataset dict.
        """
        labels = [int(d["label"]) for d in dataset_dicts]
        counts = Counter(labels)
        total = len(labels)
        factor = {
            label: max(1.0, math.sqrt(repeat_thresh / (count / total)))
            for label, count in counts.items()
        }
        return torch.tensor([factor[label] for label in labels], dtype=torch.float64)

    def _repeats(self, generator: torch.Generator) -> torch.Tensor:
        draws = torch.rand(self._fraction.shape, generator=generator, dtype=torch.float64)
        return (self._integer + (draws < self._fraction)).long()

    def epoch_indices(self, epoch: int) -> List[int]:
        """Return the (repeated, shuffled) indices of ``epoch`` of the global stream."""
        generator = torch.Generator().manual_seed(self.epoch_seed(epoch))
        repeats = self._repeats(generator)
        indices = torch.repeat_interleave(torch.arange(len(repeats)), repeats)
        if self._shuffle:
            indices = indices[torch.randperm(len(indices), generator=generator)]
        return indices.tolist()

    @property
    def epoch_size(self) -> int:
        """int: the expected number of samples per epoch, ``round(sum(repeat_factors))``."""
        return max(1, round(float((self._integer + self._fraction).sum())))

    def epoch_length(self, epoch: int) -> int:
        """Return the number of samples in ``epoch`` without building its order."""
        generator = torch.Generator().manual_seed(self.epoch_seed(epoch))
        return int(self._repeats(generator).sum())
