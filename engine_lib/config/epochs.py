"""Epochs as a unit of training length: ``SOLVER.MAX_EPOCH`` and ``"5ep"`` periods.

The engine counts iterations (optimizer steps). A config may instead give the length of
training as ``SOLVER.MAX_EPOCH`` and any period in :data:`PERIOD_KEYS` as a number of epochs
with the suffix ``ep`` (``"5ep"``, ``"2.5ep"``). Once the training set is known,
:func:`resolve_epochs` turns all of them into iterations, so everything downstream (LR
schedule, hooks, checkpointer) keeps reading plain integers.

An epoch is ``iters_per_epoch`` iterations, derived from the training set size ``N`` and the
samples one optimizer step consumes, ``B = SOLVER.IMS_PER_BATCH * SOLVER.GRAD_ACCUM_STEPS``:
``N // B`` when ``DATALOADER.DROP_LAST`` (an incomplete last batch would be dropped, as in
fastreid), ``ceil(N / B)`` otherwise, and at least 1. ``SOLVER.ITERS_PER_EPOCH > 0`` overrides
the derivation (for data sets without a length, or another notion of epoch).
"""

import math
import re
from typing import Any, Iterator, Optional, Tuple

from engine_lib.utils.errors import ConfigError

__all__ = [
    "PERIOD_KEYS",
    "UNSET_MAX_ITER",
    "UNSET_MAX_EPOCH",
    "parse_period",
    "compute_iters_per_epoch",
    "resolve_epochs",
    "scale_period",
]

#: Keys that take iterations (int) or epochs (``"<number>ep"``); ``SOLVER.STEPS`` per entry.
PERIOD_KEYS = (
    "SOLVER.CHECKPOINT_PERIOD",
    "TEST.EVAL_PERIOD",
    "SOLVER.STEPS",
    "SOLVER.WARMUP_ITERS",
)
#: ``SOLVER.MAX_ITER`` at or below this is "not set" (the length is ``SOLVER.MAX_EPOCH``).
UNSET_MAX_ITER = -1
#: ``SOLVER.MAX_EPOCH`` at or below this is "not set" (the length is ``SOLVER.MAX_ITER``).
UNSET_MAX_EPOCH = 0

_EPOCH_SUFFIX = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*ep\s*$")
_ACCEPTED = (
    "an integer number of iterations (e.g. 500) or a number of epochs with the suffix 'ep' "
    "(e.g. '5ep' or '2.5ep')"
)


def parse_period(value: Any, key: str) -> Tuple[float, bool]:
    """Split a period into its number and unit.

    Args:
        value (int or str): ``500`` (iterations) or ``"5ep"`` / ``"2.5ep"`` (epochs).
        key (str): the config key, for the error message.

    Returns:
        tuple: ``(number, is_epochs)``.

    Raises:
        ConfigError: anything else (``"5epochs"``, ``"abc"``, ``2.5``, ``True``), naming the key.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value, False
    if isinstance(value, str):
        match = _EPOCH_SUFFIX.match(value)
        if match:
            return float(match.group(1)), True
    raise ConfigError(f"Config key '{key}' got {value!r}; expected {_ACCEPTED}")


def compute_iters_per_epoch(cfg: Any, num_samples: Optional[int]) -> int:
    """Iterations in one epoch of ``num_samples`` training samples (rounding: module docstring).

    Args:
        cfg (CfgNode): reads ``SOLVER.ITERS_PER_EPOCH, IMS_PER_BATCH, GRAD_ACCUM_STEPS`` and
            ``DATALOADER.DROP_LAST``.
        num_samples (int, optional): the training set size; None if it has no length.

    Returns:
        int: ``SOLVER.ITERS_PER_EPOCH`` if positive, else the derived count; 0 when it is
        unknown (``num_samples`` is None).
    """
    if cfg.SOLVER.ITERS_PER_EPOCH > 0:
        return int(cfg.SOLVER.ITERS_PER_EPOCH)
    if num_samples is None:
        return 0
    per_step = cfg.SOLVER.IMS_PER_BATCH * cfg.SOLVER.GRAD_ACCUM_STEPS
    if cfg.DATALOADER.DROP_LAST:
        return max(1, num_samples // per_step)
    return max(1, math.ceil(num_samples / per_step))


def resolve_epochs(cfg: Any, iters_per_epoch: int) -> Any:
    """Return a copy of ``cfg`` whose length and periods are all in iterations.

    Sets ``SOLVER.MAX_ITER`` (``MAX_EPOCH * iters_per_epoch`` when the length is in epochs),
    each ``"<x>ep"`` of :data:`PERIOD_KEYS` to ``round(x * iters_per_epoch)`` (at least 1 for
    ``x > 0``) and ``SOLVER.ITERS_PER_EPOCH`` to ``iters_per_epoch``; ``MAX_EPOCH`` becomes
    "not set", so the resolved config, dumped and merged again, passes the "exactly one" check.

    Args:
        cfg (CfgNode): the config (not modified).
        iters_per_epoch (int): see :func:`compute_iters_per_epoch`; 0 if unknown, which is
            only allowed when nothing is given in epochs.

    Returns:
        CfgNode: the resolved copy, frozen if ``cfg`` was.

    Raises:
        ConfigError: both or neither of ``SOLVER.MAX_ITER`` and ``SOLVER.MAX_EPOCH`` are set,
            or epochs are used while ``iters_per_epoch`` is unknown.

    Example:
        >>> cfg.SOLVER.MAX_ITER, cfg.SOLVER.MAX_EPOCH, cfg.TEST.EVAL_PERIOD = -1, 10, "2ep"
        >>> resolved = resolve_epochs(cfg, iters_per_epoch=22)
        >>> resolved.SOLVER.MAX_ITER, resolved.TEST.EVAL_PERIOD
        (220, 44)
    """
    solver = cfg.SOLVER
    by_iter, by_epoch = solver.MAX_ITER > UNSET_MAX_ITER, solver.MAX_EPOCH > UNSET_MAX_EPOCH
    if by_iter == by_epoch:
        if by_iter:
            which = "both are set"
            fix = (
                f"unset one: SOLVER.MAX_ITER {UNSET_MAX_ITER} or SOLVER.MAX_EPOCH {UNSET_MAX_EPOCH}"
            )
        else:
            which, fix = "neither is set", "e.g. SOLVER.MAX_ITER 4000 or SOLVER.MAX_EPOCH 20"
        raise ConfigError(
            f"Set exactly one of SOLVER.MAX_ITER (iterations) and SOLVER.MAX_EPOCH (epochs), "
            f"but {which} (SOLVER.MAX_ITER={solver.MAX_ITER}, "
            f"SOLVER.MAX_EPOCH={solver.MAX_EPOCH}); {fix}"
        )
    uses_epochs = [key for key, _, _ in _epoch_values(cfg)]
    if by_epoch:
        uses_epochs.insert(0, "SOLVER.MAX_EPOCH")
    if solver.DELAY_EPOCHS > 0:
        uses_epochs.append("SOLVER.DELAY_EPOCHS")
    if iters_per_epoch <= 0 and uses_epochs:
        raise ConfigError(
            f"{', '.join(uses_epochs)} given in epochs, but the number of iterations per epoch "
            f"is unknown (the training set has no length); set SOLVER.ITERS_PER_EPOCH"
        )
    with cfg.edited_copy() as resolved:
        for key, node, leaf in list(_epoch_values(resolved)):
            value = node[leaf]
            if isinstance(value, (list, tuple)):
                node[leaf] = type(value)(_to_iters(v, iters_per_epoch, key) for v in value)
            else:
                node[leaf] = _to_iters(value, iters_per_epoch, key)
        if by_epoch:
            resolved.SOLVER.MAX_ITER = int(resolved.SOLVER.MAX_EPOCH * iters_per_epoch)
            resolved.SOLVER.MAX_EPOCH = UNSET_MAX_EPOCH
        resolved.SOLVER.ITERS_PER_EPOCH = int(iters_per_epoch)
    return resolved


def scale_period(value: Any, scale: float) -> Any:
    """Divide a period in iterations by ``scale``; epochs (``"5ep"``) are left as they are.

    Used when the world size changes the global batch: an epoch then has fewer iterations
    by itself, so an epoch-valued period must not be divided again.

    Args:
        value (int, str, list or tuple): a value of one of :data:`PERIOD_KEYS`.
        scale (float): new world size / reference world size.

    Returns:
        The rescaled value, of the same type.
    """
    if isinstance(value, (list, tuple)):
        return type(value)(scale_period(v, scale) for v in value)
    if isinstance(value, str):
        return value
    return int(round(value / scale))


def _to_iters(value: Any, iters_per_epoch: int, key: str) -> int:
    number, is_epochs = parse_period(value, key)
    if not is_epochs:
        return int(number)
    iters = int(round(number * iters_per_epoch))
    # A short but non-zero period must not turn into 0, which means "never".
    return max(iters, 1) if number > 0 else 0


def _epoch_values(cfg: Any) -> Iterator[Tuple[str, Any, str]]:
    """Yield ``(key, parent node, leaf name)`` of each period key holding epochs."""
    for key in PERIOD_KEYS:
        group, leaf = key.split(".")
        node = cfg.get(group)
        if node is None or leaf not in node:
            continue
        value = node[leaf]
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, str) for v in values):
            yield key, node, leaf
