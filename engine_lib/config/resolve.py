"""One step from the merged config to the config a run uses (and dumps to ``config.yaml``).

A merged config may leave things to be decided when the run starts: ``SEED < 0`` asks for a
random seed, ``SOLVER.REFERENCE_WORLD_SIZE`` asks to rescale batch, LR and schedule to the
world size, and lengths or periods may be given in epochs, whose size in iterations is only
known once the training set is. :func:`resolve_config` settles all of them at once, in that
order, and returns one frozen config: the one ``DefaultTrainer`` builds everything from, keeps
as ``trainer.cfg`` and writes to ``config.yaml``.
"""

import logging
import os
from typing import Any, Callable, Optional

from engine_lib.utils import comm

from .epochs import compute_iters_per_epoch, resolve_epochs_in_place
from .scaling import scale_to_world_size_in_place

__all__ = ["draw_seed", "job_seed", "resolve_config"]

logger = logging.getLogger(__name__)

# Drawn seeds stay below 2**31, so that SEED + rank stays in numpy's range [0, 2**32).
_MAX_RANDOM_SEED = 2**31


def draw_seed() -> int:
    """A random seed shared by every rank: rank 0 draws it from the operating system.

    A collective when distributed: every rank must call it. The seed is logged with how to
    repeat the run.

    Returns:
        int: the seed, in ``[0, 2**31)``.
    """
    drawn = int.from_bytes(os.urandom(4), "big") % _MAX_RANDOM_SEED
    seed = int(comm.all_gather(drawn)[0]) if comm.get_world_size() > 1 else drawn
    logger.info("Using random seed %d; repeat with SEED %d", seed, seed)
    return seed


# The seed job_seed drew for this process's job; None until it draws one.
_job_seed: Optional[int] = None


def job_seed(cfg: Any, *, new_job: bool = False) -> int:
    """The job's seed: ``cfg.SEED`` if it is >= 0, else one random seed drawn once per job.

    A negative ``SEED`` is drawn (:func:`draw_seed`, a collective) the first time and then
    returned again, so that every part of the job that resolves the config gets the same
    seed: ``default_setup`` seeds the RNGs with it and ``DefaultTrainer`` gives it to its
    samplers and records it in ``config.yaml``, even when ``default_setup``'s returned config
    was dropped. A replay from that ``config.yaml`` then trains the same weights.

    Args:
        cfg (CfgNode): the config.
        new_job (bool): draw a new seed even if one was drawn in this process before (a new
            job starts: ``default_setup`` passes True). Default: False.

    Returns:
        int: the seed, >= 0.
    """
    global _job_seed
    if cfg.SEED >= 0:
        return cfg.SEED
    if new_job or _job_seed is None:
        _job_seed = draw_seed()
    return _job_seed


def resolve_config(
    cfg: Any,
    *,
    world_size: int,
    epoch_size: Callable[[Any], Optional[int]],
) -> Any:
    """Return the config a run uses: seed drawn, rescaled to ``world_size``, epochs in iterations.

    In order, on one copy of ``cfg``:

    1. ``SEED < 0`` becomes the job's seed shared by all ranks (:func:`job_seed`: the one
       ``default_setup`` drew, else drawn now, a collective); a seed >= 0 is kept;
    2. the batch, LR and iteration counts are rescaled from ``SOLVER.REFERENCE_WORLD_SIZE``
       to ``world_size`` (:mod:`engine_lib.config.scaling`);
    3. ``epoch_size`` is called once with the config so far (frozen), which holds everything
       a training loader reads (seed, batch): the caller builds its loader there and returns
       its samples per epoch (None if it has no length);
    4. lengths and periods in epochs become iterations (:func:`~engine_lib.config.epochs.
       resolve_epochs`), and ``SOLVER.ITERS_PER_EPOCH`` is set.

    Args:
        cfg (CfgNode): the merged config (not modified).
        world_size (int): the number of processes.
        epoch_size (callable): ``epoch_size(cfg) -> Optional[int]``, see step 3.

    Returns:
        CfgNode: the resolved copy, frozen if ``cfg`` is.

    Raises:
        ConfigError: the batch cannot be rescaled, or the length of training is missing,
            doubly given or in epochs of unknown size.

    Example:
        >>> resolved = resolve_config(cfg, world_size=1, epoch_size=lambda c: 1437)
        >>> resolved.SOLVER.MAX_ITER  # e.g. MAX_EPOCH 10 with a batch of 64: 230
    """
    with cfg.edited_copy() as resolved:
        resolved.SEED = job_seed(resolved)
        scale_to_world_size_in_place(resolved, world_size)
        resolved.freeze()
        samples = epoch_size(resolved)
        resolved.defrost()
        resolve_epochs_in_place(resolved, compute_iters_per_epoch(resolved, samples))
    return resolved
