"""Checks hooks run before they write a checkpoint."""

import logging

import torch
from torch import nn

from engine_lib.checkpoint.dist_types import local_tensor

from ..train_loop import TrainerBase
from .periodic_writer import PeriodicWriter

__all__ = ["check_before_save"]

logger = logging.getLogger(__name__)


def check_before_save(trainer: TrainerBase, model: nn.Module) -> None:
    """Make sure no checkpoint of diverged weights is written: flush metrics, check weights.

    Flushing the trainer's buffered losses raises ``FloatingPointError`` for a non-finite
    loss; checking the weights also catches a non-finite gradient whose loss was still finite.
    Costs one device-to-host copy; runs on every rank (the flush is collective). Then each
    ``PeriodicWriter(write_before_save=True)`` writes its pending metrics, so that a run
    resumed from this checkpoint loses no ``metrics.json`` line.

    Args:
        trainer (TrainerBase): the trainer whose metrics are flushed.
        model (nn.Module): the model about to be saved.

    Raises:
        FloatingPointError: if a loss since the last flush or a parameter is not finite.
    """
    trainer.flush_metrics()
    # Under FSDP each rank checks its own shard (a DTensor's local part); every shard is
    # checked by some rank, and the NaN check of a sharded save is not a collective.
    _check_finite(trainer, model)
    for hook in trainer.hooks:
        if isinstance(hook, PeriodicWriter) and hook.write_before_save:
            hook.write_pending()


def _check_finite(trainer: TrainerBase, model: nn.Module) -> None:
    named = [(name, local_tensor(p.detach())) for name, p in model.named_parameters()]
    if not named:
        return
    device = named[0][1].device
    finite = torch.stack([torch.isfinite(p).all().to(device) for _, p in named]).tolist()
    bad = [name for (name, _), ok in zip(named, finite) if not ok]
    if bad:
        raise FloatingPointError(
            f"Weights became infinite or NaN at iteration={trainer.iter} (in {len(bad)} "
            f"parameters, e.g. {bad[:5]}); refusing to save a checkpoint of them."
        )
