"""Deterministic random streams for data loading, independent of workers and processes.

Exact resume (DESIGN.md §3) needs every random choice of the input pipeline to be a pure
function of the run's seed and of *which sample of the stream* is being produced, never of
which worker or process happened to produce it, nor of how many samples were drawn before a
restart. Three pieces make that so:

* Samplers derive each epoch's order from ``derive_seed(seed, epoch)`` with a private
  ``torch.Generator``.
* The training loader pairs each index with a *draw seed*
  ``derive_seed(seed, rank, position)`` (``position`` = place of the sample in this rank's
  stream), and :class:`~engine_lib.data.common.MapDataset` runs the mapper under
  :func:`seeded_rng` with it: the torch, numpy and python global generators are seeded for the
  call and restored afterwards. Augmentations are therefore the same with 0 or 8 workers,
  after workers are re-created by a resume, and the main process's global RNG is never
  consumed by data loading (``NUM_WORKERS`` 0 included).
* :class:`WorkerSeeder` seeds each worker's global generators from ``(seed, rank, worker id)``
  for code that runs outside the mapper (a user's dataset ``__getitem__``).
"""

import contextlib
import logging
import random
from typing import Iterator

import numpy as np
import torch

__all__ = ["derive_seed", "seeded_rng", "WorkerSeeder"]

logger = logging.getLogger(__name__)

_MASK64 = (1 << 64) - 1

# Domain tags keep the streams derived from one user seed independent of each other.
TAG_EPOCH = 1
TAG_DRAW = 2
TAG_WORKER = 3
TAG_LOADER = 4
TAG_EVAL = 5


def _splitmix64(x: int) -> int:
    # A well-mixed 64-bit bijection (Steele et al., "SplitMix"), so nearby inputs such as
    # consecutive positions give unrelated seeds.
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(*values: int) -> int:
    """Hash integers into one seed in ``[0, 2**63)``, valid for ``torch.manual_seed``.

    Args:
        *values (int): the inputs, e.g. ``(TAG_DRAW, seed, rank, position)``; order matters.

    Returns:
        int: a seed that is a pure function of ``values``.
    """
    state = 0
    for value in values:
        state = _splitmix64(state ^ (int(value) & _MASK64))
    return state >> 1


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Seed torch (CPU), numpy and python's global generators; restore them on exit.

    torchvision's random transforms draw from torch's global generator and take no generator
    argument, so the draw is steered by seeding that generator for the duration of the call.

    Args:
        seed (int): the seed, e.g. from :func:`derive_seed`.
    """
    py_state = random.getstate()
    # The legacy global numpy generator is what user code calls; it is the one to isolate.
    np_state = np.random.get_state()  # noqa: NPY002
    # devices=[]: only the CPU generator is forked; CUDA generators are never touched here.
    with torch.random.fork_rng(devices=[]):
        # Not torch.manual_seed: it would also reseed (and so clobber) every CUDA generator.
        torch.default_generator.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)  # noqa: NPY002
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)  # noqa: NPY002


class WorkerSeeder:
    """``worker_init_fn`` seeding a data worker from ``(seed, rank, worker id)``.

    A class rather than a closure so it pickles under the ``spawn`` start method.

    Args:
        seed (int): the loader's base seed.
        rank (int): the global rank of the process owning the loader.
    """

    def __init__(self, seed: int, rank: int):
        self.seed = int(seed)
        self.rank = int(rank)

    def __call__(self, worker_id: int) -> None:
        """Seed python, numpy and torch in worker ``worker_id``."""
        seed = derive_seed(TAG_WORKER, self.seed, self.rank, worker_id)
        random.seed(seed)
        np.random.seed(seed % 2**32)  # noqa: NPY002
        torch.manual_seed(seed)
