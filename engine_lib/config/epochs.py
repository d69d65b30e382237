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

import logging
import math
import re
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

from engine_lib.utils.errors import ConfigError

from .validators import (
    Describe,
    coerce_like_default,
    register_range,
    register_validator,
    register_value_check,
)

__all__ = [
    "PERIOD_KEYS",
    "UNSET_MAX_ITER",
    "UNSET_MAX_EPOCH",
    "check_period",
    "compute_iters_per_epoch",
    "parse_period",
    "resolve_epochs",
    "resolve_epochs_in_place",
    "scale_period",
    "settle_training_length",
]

logger = logging.getLogger(__name__)

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
    with cfg.edited_copy() as resolved:
        resolve_epochs_in_place(resolved, iters_per_epoch)
    return resolved


def resolve_epochs_in_place(cfg: Any, iters_per_epoch: int) -> None:
    """:func:`resolve_epochs` on a config that is not frozen, changed in place.

    Args:
        cfg (CfgNode): the config to resolve (not frozen).
        iters_per_epoch (int): see :func:`resolve_epochs`.

    Raises:
        ConfigError: see :func:`resolve_epochs`.
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
    for key, node, leaf in list(_epoch_values(cfg)):
        value = node[leaf]
        if isinstance(value, (list, tuple)):
            node[leaf] = type(value)(_to_iters(v, iters_per_epoch, key) for v in value)
        else:
            node[leaf] = _to_iters(value, iters_per_epoch, key)
    if by_epoch:
        solver.MAX_ITER = int(solver.MAX_EPOCH * iters_per_epoch)
        solver.MAX_EPOCH = UNSET_MAX_EPOCH
    solver.ITERS_PER_EPOCH = int(iters_per_epoch)


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


def check_period(value: Any, default: Any, key: str, source: str) -> Any:
    """The value check of :data:`PERIOD_KEYS`: iterations (int) or epochs (``"5ep"``).

    Registered with :func:`~engine_lib.config.validators.register_value_check`; a period may
    switch between an int and an ``"Nep"`` string from one source to the next.

    Args:
        value: the decoded value.
        default: the key's current value (a list or tuple for ``SOLVER.STEPS``).
        key (str): the dotted key.
        source (str): where the value came from.

    Returns:
        The value to store.

    Raises:
        ConfigError: naming the key, the accepted forms and the source.
    """
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            return coerce_like_default(value, default, key, source)
        # Numeric entries are checked when the schedule is built, as before epochs existed.
        entries = [v for v in value if isinstance(v, str)]
        result: Any = type(default)(value)
    else:
        entries, result = [value], value
    for entry in entries:
        try:
            parse_period(entry, key)
        except ConfigError as e:
            raise ConfigError(f"{e} ({source})") from e
    return result


# Alternative ways to give the length of training: a source (a config file, or the command
# line) that sets one of them to a positive value unsets the other, so a config can switch
# from iterations to epochs without repeating the other key. Both in one source is an error.
_LENGTH_KEYS = (("MAX_ITER", UNSET_MAX_ITER), ("MAX_EPOCH", UNSET_MAX_EPOCH))


def settle_training_length(
    incoming: Dict[str, Any], current: Mapping[str, Any], describe: Describe
) -> None:
    """The ``SOLVER`` validator: one source gives the length in iterations or in epochs.

    A source that sets ``MAX_ITER`` (or ``MAX_EPOCH``) to a positive value, but not the other,
    unsets the other (``incoming`` gets its "not set" value); setting both is an error.

    Args:
        incoming (dict): the ``SOLVER`` values of one source (edited in place).
        current (Mapping): the ``SOLVER`` group they are merged onto.
        describe (callable): names the source of a dotted key.

    Raises:
        ConfigError: both keys set to positive values by the source, naming both.
    """
    (iter_key, _), (epoch_key, _) = _LENGTH_KEYS
    if _is_positive(incoming.get(iter_key)) and _is_positive(incoming.get(epoch_key)):
        where = {describe(f"SOLVER.{k}") for k in (iter_key, epoch_key)}
        raise ConfigError(
            f"SOLVER.{iter_key}={incoming[iter_key]} and SOLVER.{epoch_key}="
            f"{incoming[epoch_key]} are both set ({' and '.join(sorted(where))}); give the "
            f"length of training in iterations or in epochs, not both"
        )
    for (key, _), (alt, unset) in (_LENGTH_KEYS, _LENGTH_KEYS[::-1]):
        if _is_positive(incoming.get(key)) and alt not in incoming and alt in current:
            if _is_positive(current[alt]):
                logger.info(
                    "SOLVER.%s=%s (%s) replaces SOLVER.%s=%s",
                    key,
                    incoming[key],
                    describe(f"SOLVER.{key}"),
                    alt,
                    current[alt],
                )
            incoming[alt] = unset


def _is_positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


for _key in PERIOD_KEYS:
    register_value_check(_key, check_period)
# Iteration counts only; an "Nep" string is never negative. A checkpoint period of 0 would
# divide by zero; an evaluation period of 0 means "only at the end".
register_range("SOLVER.CHECKPOINT_PERIOD", 1, meaning="iterations between checkpoints")
register_range("TEST.EVAL_PERIOD", 0, meaning="iterations between evaluations, 0: at the end")
register_range("SOLVER.WARMUP_ITERS", 0, meaning="warmup iterations")
register_range("SOLVER.STEPS", 0, meaning="iterations of the LR decays")
register_validator("SOLVER", settle_training_length)
