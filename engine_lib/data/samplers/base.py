"""Base class of the infinite, rank-sharded, resumable training samplers."""

import bisect
import logging
from typing import Any, Dict, Iterator, List, Optional, Tuple

from torch.utils.data import Sampler

from engine_lib.data.seeding import TAG_DRAW, TAG_EPOCH, DrawSeeds, derive_seed
from engine_lib.utils import comm

__all__ = ["ResumableSampler"]

logger = logging.getLogger(__name__)


class ResumableSampler(Sampler[int]):
    """An infinite stream of dataset indices for one rank that can restart at any position.

    Subclasses define the global stream epoch by epoch (:meth:`epoch_indices`, a function of
    the seed and the epoch only); this class splits it between ranks and handles seeds,
    positions and state. ``position`` counts the samples *this rank* has consumed: after
    ``set_position(n)`` an iteration yields what an uninterrupted iteration would yield from
    its ``n``-th element on.

    The sampler cannot count consumption itself (a ``DataLoader`` prefetches ahead of the
    trainer); the trainer counts and calls :meth:`set_position` before iterating.

    Args:
        seed (int, optional): seed of the stream, the same on every rank. Default: a seed
            shared by all ranks (:func:`engine_lib.utils.comm.shared_random_seed`).
        rank (int, optional): this process's rank. Default: ``comm.get_rank()``.
        world_size (int, optional): number of processes. Default: ``comm.get_world_size()``.
    """

    def __init__(
        self,
        seed: Optional[int] = None,
        *,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ):
        self._seed = int(comm.shared_random_seed() if seed is None else seed)
        self._rank = comm.get_rank() if rank is None else int(rank)
        self._world_size = comm.get_world_size() if world_size is None else int(world_size)
        if self._world_size < 1 or not 0 <= self._rank < self._world_size:
            raise ValueError(f"rank {self._rank} is not in [0, world_size={self._world_size})")
        self._position = 0
        self._epoch_starts = [0]

    @property
    def seed(self) -> int:
        """int: the seed of the stream (restored by :meth:`load_state_dict`)."""
        return self._seed

    @property
    def rank(self) -> int:
        """int: the rank whose share of the stream this sampler yields."""
        return self._rank

    @property
    def world_size(self) -> int:
        """int: the number of ranks the stream is split between."""
        return self._world_size

    @property
    def position(self) -> int:
        """int: where the next iteration starts in this rank's stream."""
        return self._position

    def set_position(self, position: int) -> None:
        """Make the next iteration start at ``position`` of this rank's stream.

        Args:
            position (int): number of samples this rank has already consumed.
        """
        if int(position) != position or position < 0:
            raise ValueError(f"position must be a non-negative integer, got {position!r}")
        self._position = int(position)

    def state_dict(self) -> Dict[str, Any]:
        """Return ``{"seed", "position", "world_size"}``.

        ``position`` is the start position last set, not the prefetch progress of a loader:
        a trainer saves its own count of consumed samples as the position.
        """
        return {"seed": self._seed, "position": self._position, "world_size": self._world_size}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the seed and position saved by :meth:`state_dict`.

        The seed is restored even when it differs from the current one (a run started with a
        random seed must continue with the same stream). A state saved with another world
        size continues from the same *global* position: ``W`` ranks that each consumed ``n``
        samples consumed global positions ``[0, n * W)``, so each of this run's ``M`` ranks
        starts at ``n * W / M``, and no sample is skipped or repeated when ``M`` divides the
        global count (it does when the global batch is unchanged).
        """
        position = int(state["position"])
        saved_world = int(state.get("world_size", self._world_size))
        if saved_world != self._world_size:
            consumed = position * saved_world
            position = consumed // self._world_size
            lost = consumed - position * self._world_size
            logger.info(
                "Sampler state saved with world size %d, now %d: continuing from global "
                "position %d (%d per rank)%s.",
                saved_world,
                self._world_size,
                consumed,
                position,
                f"; {lost} sample(s) of the last global batch are repeated" if lost else "",
            )
        if int(state["seed"]) != self._seed:
            self._seed = int(state["seed"])
            self._epoch_starts = [0]
        self.set_position(position)

    def epoch_seed(self, epoch: int) -> int:
        """Return the seed of the generator that orders ``epoch`` (depends on seed and epoch)."""
        return derive_seed(TAG_EPOCH, self._seed, epoch)

    def draw_seed(self, position: int) -> int:
        """Return the augmentation seed of the sample at ``position`` of this rank's stream."""
        return derive_seed(TAG_DRAW, self._seed, self._rank, position)

    def __iter__(self) -> Iterator[int]:
        return self._rank_stream(self._position)

    def iter_with_draw_seeds(self) -> Iterator[Tuple[int, int]]:
        """Yield ``(index, draw_seed)`` from the current position on (see ``seeding``)."""
        draw_seed = DrawSeeds(self._seed, self._rank)
        position = self._position
        for index in self._rank_stream(position):
            yield index, draw_seed(position)
            position += 1

    def epoch_indices(self, epoch: int) -> List[int]:
        """Return the dataset indices of ``epoch`` of the global stream, in order."""
        raise NotImplementedError

    def epoch_length(self, epoch: int) -> int:
        """Return ``len(self.epoch_indices(epoch))``; override when it is cheaper to know."""
        return len(self.epoch_indices(epoch))

    @property
    def epoch_size(self) -> int:
        """int: the number of samples in one epoch of the global stream (all ranks together).

        An iteration of a global batch ``B`` takes ``B`` samples of the global stream, so one
        epoch is ``epoch_size / B`` iterations. Epochs may differ in length (repeat-factor
        sampling); then this is the expected length, rounded. Default: epoch 0's length.
        """
        return self.epoch_length(0)

    def _locate(self, global_position: int) -> Tuple[int, int]:
        """Return ``(epoch, offset in that epoch)`` of a position of the global stream."""
        # Epochs may differ in length (repeat-factor sampling), so walk them; their starts
        # are cached, which keeps repeated resumes cheap.
        starts = self._epoch_starts
        while starts[-1] <= global_position:
            starts.append(starts[-1] + self.epoch_length(len(starts) - 1))
        epoch = bisect.bisect_right(starts, global_position) - 1
        return epoch, global_position - starts[epoch]

    def _rank_stream(self, start: int) -> Iterator[int]:
        """Yield this rank's stream from position ``start`` on, forever.

        Rank ``r`` takes the global positions ``r, r + W, r + 2W, ...``: its position ``n``
        is the global position ``r + n * W``.
        """
        step = self._world_size
        epoch, offset = self._locate(self._rank + start * step)
        while True:
            order = self.epoch_indices(epoch)
            taken = range(offset, len(order), step)
            for i in taken:
                yield order[i]
            # Carry the stride across the epoch boundary: the next global position taken is
            # ``len(taken)`` steps on, measured from the next epoch's start.
            offset += len(taken) * step - len(order)
            epoch += 1
