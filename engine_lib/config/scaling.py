"""Rescale a config tuned for one world size to another (linear scaling rule).

With ``SOLVER.REFERENCE_WORLD_SIZE`` R > 0 and W processes, the global batch and the LR are
multiplied by W / R and every count of iterations (``MAX_ITER``, ``STEPS``, ``WARMUP_ITERS``,
``CHECKPOINT_PERIOD``, ``TEST.EVAL_PERIOD``, ``ITERS_PER_EPOCH``) is divided by it, so that
each process keeps its batch and the run sees the same number of epochs. Values given in
epochs (``MAX_EPOCH``, ``"5ep"``) need no rescaling: an epoch has fewer iterations with a
larger batch by itself.
"""

import logging
from typing import Any

from engine_lib.utils.errors import ConfigError

from .epochs import scale_period

__all__ = ["scale_to_world_size", "scale_to_world_size_in_place"]

logger = logging.getLogger(__name__)


def scale_to_world_size(cfg: Any, num_workers: int) -> Any:
    """Return ``cfg`` rescaled from ``SOLVER.REFERENCE_WORLD_SIZE`` to ``num_workers``.

    Args:
        cfg (CfgNode): the config (not modified).
        num_workers (int): the world size.

    Returns:
        CfgNode: ``cfg`` itself when nothing changes, else a rescaled copy, frozen if ``cfg``
        is.

    Raises:
        ConfigError: the global batch cannot be rescaled to a whole number.
    """
    reference = cfg.SOLVER.REFERENCE_WORLD_SIZE
    if reference == 0 or reference == num_workers:
        return cfg
    with cfg.edited_copy() as scaled:
        scale_to_world_size_in_place(scaled, num_workers)
    return scaled


def scale_to_world_size_in_place(cfg: Any, num_workers: int) -> None:
    """:func:`scale_to_world_size` on a config that is not frozen, changed in place.

    Sets ``SOLVER.REFERENCE_WORLD_SIZE`` to ``num_workers``, so a second call does nothing.

    Args:
        cfg (CfgNode): the config (not frozen).
        num_workers (int): the world size.

    Raises:
        ConfigError: the global batch cannot be rescaled to a whole number.
    """
    solver = cfg.SOLVER
    reference = solver.REFERENCE_WORLD_SIZE
    if reference == 0 or reference == num_workers:
        return
    scale = num_workers / reference
    batch = int(round(solver.IMS_PER_BATCH * scale))
    if abs(batch - solver.IMS_PER_BATCH * scale) > 1e-6:
        raise ConfigError(
            f"Cannot rescale SOLVER.IMS_PER_BATCH={solver.IMS_PER_BATCH} from "
            f"SOLVER.REFERENCE_WORLD_SIZE={reference} to {num_workers} processes"
        )
    solver.IMS_PER_BATCH = batch
    solver.BASE_LR *= scale
    # Non-positive values mean "not set" and stay so.
    if solver.MAX_ITER > 0:
        solver.MAX_ITER = int(round(solver.MAX_ITER / scale))
    if solver.ITERS_PER_EPOCH > 0:
        solver.ITERS_PER_EPOCH = max(1, int(round(solver.ITERS_PER_EPOCH / scale)))
    solver.WARMUP_ITERS = scale_period(solver.WARMUP_ITERS, scale)
    solver.STEPS = tuple(scale_period(solver.STEPS, scale))
    solver.CHECKPOINT_PERIOD = scale_period(solver.CHECKPOINT_PERIOD, scale)
    cfg.TEST.EVAL_PERIOD = scale_period(cfg.TEST.EVAL_PERIOD, scale)
    solver.REFERENCE_WORLD_SIZE = num_workers
    logger.info(
        "Auto-scaling the config to %d processes: IMS_PER_BATCH=%d, BASE_LR=%g, MAX_ITER=%d",
        num_workers,
        batch,
        solver.BASE_LR,
        solver.MAX_ITER,
    )
