"""P x K identity sampler for metric learning (re-identification, contrastive losses)."""

import logging
from collections import defaultdict
from typing import Dict, Iterator, List, Optional, Sequence

import torch

from .base import ResumableSampler

__all__ = ["IdentitySampler"]

logger = logging.getLogger(__name__)


class IdentitySampler(ResumableSampler):
    """Batches of P distinct identities with K samples each (fastreid's "naive" sampler).

    Epoch ``e`` (a function of ``(seed, e)`` only): each identity's samples are shuffled and
    cut into groups of K (an identity with fewer than K samples is topped up by drawing its
    samples again; a last partial group is dropped); then, while at least P identities still
    have groups, P of them are chosen at random and one group of each forms a batch. The
    epoch keeps a multiple of ``world_size`` batches and rank ``r`` takes batches
    ``r, r + W, ...``, so every batch a rank sees is a whole P x K batch. Positions count
    samples; a trainer resuming after ``i`` iterations sets ``i * batch_size``.

    Args:
        labels (sequence of int): the identity (label) of each sample.
        batch_size (int): samples per batch on each rank (P * K).
        num_instances (int): K, the samples per identity in a batch.
        seed (int, optional): seed shared by all ranks (default: ``comm.shared_random_seed()``).
        rank (int, optional): default ``comm.get_rank()``.
        world_size (int, optional): default ``comm.get_world_size()``.

    Raises:
        ValueError: ``batch_size`` is not a multiple of ``num_instances``, or there are fewer
            than P identities.
    """

    def __init__(
        self,
        labels: Sequence[int],
        batch_size: int,
        num_instances: int,
        seed: Optional[int] = None,
        *,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ):
        if num_instances <= 0 or batch_size <= 0 or batch_size % num_instances:
            raise ValueError(
                f"IdentitySampler needs a batch size that is a positive multiple of the number "
                f"of instances per identity; got batch size {batch_size} and {num_instances} "
                "instances"
            )
        super().__init__(seed, rank=rank, world_size=world_size)
        by_identity: Dict[int, List[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            by_identity[int(label)].append(index)
        self._identities = [by_identity[k] for k in sorted(by_identity)]
        self._batch_size = batch_size
        self._num_instances = num_instances
        self._num_identities = batch_size // num_instances
        if len(self._identities) < self._num_identities:
            raise ValueError(
                f"IdentitySampler needs at least {self._num_identities} identities per batch "
                f"(batch size {batch_size} / {num_instances} instances) but the labels have "
                f"only {len(self._identities)}"
            )

    def _groups(self, samples: List[int], generator: torch.Generator) -> List[List[int]]:
        k = self._num_instances
        order = torch.randperm(len(samples), generator=generator).tolist()
        if len(order) < k:
            order += torch.randint(len(samples), (k - len(order),), generator=generator).tolist()
        shuffled = [samples[i] for i in order]
        return [shuffled[i : i + k] for i in range(0, len(shuffled) - k + 1, k)]

    def epoch_batches(self, epoch: int) -> List[List[int]]:
        """Return the batches of ``epoch`` of the global stream (a multiple of world size)."""
        generator = torch.Generator().manual_seed(self.epoch_seed(epoch))
        groups = [self._groups(samples, generator) for samples in self._identities]
        available = list(range(len(groups)))
        batches: List[List[int]] = []
        while len(available) >= self._num_identities:
            pick = torch.randperm(len(available), generator=generator)[: self._num_identities]
            chosen = [available[i] for i in pick.tolist()]
            batches.append([index for identity in chosen for index in groups[identity].pop()])
            available = [identity for identity in available if groups[identity]]
        batches = batches[: len(batches) - len(batches) % self.world_size]
        if not batches:
            raise ValueError(
                f"IdentitySampler cannot form {self.world_size} batch(es) of "
                f"{self._num_identities} identities x {self._num_instances} instances: too few "
                "identities with enough samples"
            )
        return batches

    def epoch_indices(self, epoch: int) -> List[int]:
        """Return the indices of ``epoch`` of the global stream (its batches, concatenated)."""
        return [index for batch in self.epoch_batches(epoch) for index in batch]

    def _rank_stream(self, start: int) -> Iterator[int]:
        # Every rank takes the same share (1/W) of every epoch, so rank position n sits at
        # global position n * W and the rank offset is the global offset / W.
        step = self.world_size
        epoch, offset = self._locate(start * step)
        offset //= step
        while True:
            mine = self.epoch_batches(epoch)[self.rank :: step]
            yield from [index for batch in mine for index in batch][offset:]
            offset = 0
            epoch += 1
