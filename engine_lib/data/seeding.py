"""Deterministic random streams for data loading, independent of workers and processes.

Exact resume (DESIGN.md §3) needs every random choice of the input pipeline to be a pure
function of the run's seed and of *which sample of the stream* is being produced, never of
which worker or process happened to produce it, nor of how many samples were drawn before a
restart. Three pieces make that so:

* Samplers derive each epoch's order from ``derive_seed(seed, epoch)`` with a private
  ``torch.Generator``.
* The training loader pairs each index with a *draw seed*
  ``derive_seed(seed, rank, position)`` (``position`` = place of the sample in this rank's
  stream), and :class:`~engine_lib.data.common.MapDataset` seeds torch's global CPU
  generator with it (:func:`seed_sample`) just before it reads and maps that sample, once
  per sample. numpy's and python's global generators are seeded too only for a mapper that
  asks (:func:`wants_numpy_and_python_seeds`). Augmentations are therefore the same with 0 or
  8 workers and after workers are re-created by a resume.
* Isolation costs one save and one restore per *batch*, and only where it is needed: in the
  main process (``NUM_WORKERS`` 0) :func:`isolated_rngs` keeps data loading from consuming
  the training RNG; a worker's generators are its own, so they are never saved or restored.
  :class:`WorkerSeeder` seeds each worker's global generators from ``(seed, rank, worker id)``
  once, when the worker starts.
"""

import contextlib
import logging
import random
from typing import Iterable, Iterator

import numpy as np
import torch

__all__ = [
    "derive_seed",
    "DrawSeeds",
    "seed_sample",
    "isolated_rngs",
    "seeded_rng",
    "wants_numpy_and_python_seeds",
    "WorkerSeeder",
]

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
    return _absorb(0, values) >> 1


def _absorb(state: int, values: Iterable[int]) -> int:
    for value in values:
        state = _splitmix64(state ^ (int(value) & _MASK64))
    return state


class DrawSeeds:
    """The draw seeds ``derive_seed(TAG_DRAW, seed, rank, position)`` of one rank's stream.

    The hash of the fixed prefix ``(TAG_DRAW, seed, rank)`` is computed once, so a seed costs
    one mixing round instead of four; the values are those of :func:`derive_seed`.

    Args:
        seed (int): the stream's seed.
        rank (int): the rank whose stream it is.
    """

    def __init__(self, seed: int, rank: int):
        self._prefix = _absorb(0, (TAG_DRAW, seed, rank))

    def __call__(self, position: int) -> int:
        """Return the draw seed of the sample at ``position``."""
        return _absorb(self._prefix, (position,)) >> 1


# The attribute by which a mapper (or a dataset) asks for numpy and python seeding.
NUMPY_AND_PYTHON_ATTRIBUTE = "seed_numpy_and_python"


def wants_numpy_and_python_seeds(*functions: object) -> bool:
    """Return whether any of ``functions`` asks for numpy and python seeding per sample.

    A mapper (or a dataset) that draws from ``numpy.random``'s or python's ``random``
    global generator asks by having a true ``seed_numpy_and_python`` attribute (a class
    attribute is enough). Others get torch's generator seeded only (see ``docs/data.md``).

    Args:
        *functions (object): the mapper, the dataset, ...
    """
    return any(getattr(f, NUMPY_AND_PYTHON_ATTRIBUTE, False) for f in functions)


def seed_sample(seed: int, numpy_and_python: bool = False) -> None:
    """Seed the global generators for one sample; nothing is saved or restored.

    Only torch's CPU generator is seeded (torchvision's random transforms draw from it and
    take no generator argument); not ``torch.manual_seed``, which would also reseed, and so
    clobber, every CUDA generator.

    Args:
        seed (int): the sample's draw seed, e.g. from :class:`DrawSeeds`.
        numpy_and_python (bool): seed numpy's and python's global generators too.
    """
    torch.default_generator.manual_seed(seed)
    if numpy_and_python:
        random.seed(seed)
        # The legacy global numpy generator is what user code calls.
        np.random.seed(seed % 2**32)  # noqa: NPY002


@contextlib.contextmanager
def isolated_rngs(numpy_and_python: bool = False) -> Iterator[None]:
    """Restore torch's CPU generator (and numpy's and python's) on exit to their state on entry.

    Args:
        numpy_and_python (bool): isolate numpy's and python's global generators too.
    """
    if numpy_and_python:
        py_state = random.getstate()
        np_state = np.random.get_state()  # noqa: NPY002
    # devices=[]: only the CPU generator is forked; CUDA generators are never touched here.
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            if numpy_and_python:
                random.setstate(py_state)
                np.random.set_state(np_state)  # noqa: NPY002


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Seed torch (CPU), numpy and python's global generators; restore them on exit.

    For code that maps one sample on its own (a test, a notebook); loaders go through
    :class:`~engine_lib.data.common.MapDataset`, which isolates once per batch.

    Args:
        seed (int): the seed, e.g. from :func:`derive_seed`.
    """
    with isolated_rngs(numpy_and_python=True):
        seed_sample(seed, numpy_and_python=True)
        yield


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
