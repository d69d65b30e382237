"""Per-key rules of the config tree, registered by the module that owns the keys.

:class:`~engine_lib.config.CfgNode` checks every merged value against the type of its
default and knows nothing about what a key means. A key with more to it registers its rule
here, from the module that owns the key:

* a **value check** (:func:`register_value_check`) replaces the type check of one key: it
  takes the decoded value and returns the value to store (it may change type, e.g. a period
  given as ``500`` or ``"5ep"``), or raises a :class:`ConfigError` naming the key and source;
* a **range** (:func:`register_range`) bounds a numeric key (or each number of a list key):
  checked after the type check (or the value check), it also rejects NaN and infinities;
* a **group validator** (:func:`register_validator`) sees what one source (a config file with
  its ``_BASE_`` files, or the command line) sets in a group before it is merged onto what is
  already there; it may edit the incoming values (e.g. unset a key that the source replaces
  by an alternative) or raise.

Example:
    >>> register_value_check("SOLVER.CHECKPOINT_PERIOD", check_period)
    >>> register_validator("SOLVER", settle_training_length)
    >>> register_range("SOLVER.BASE_LR", low=0, low_open=True, meaning="the learning rate")
"""

import logging
import math
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

from yacs.config import _VALID_TYPES

from engine_lib.utils.errors import ConfigError

__all__ = [
    "Describe",
    "GroupValidator",
    "ValueCheck",
    "coerce_like_default",
    "get_value_check",
    "register_range",
    "register_validator",
    "register_value_check",
    "run_validators",
    "value_checked_keys",
]

logger = logging.getLogger(__name__)

#: ``describe(dotted_key) -> "in config file 'x.yaml'"`` or ``"from the command line"``.
Describe = Callable[[str], str]
#: ``check(value, default, dotted_key, source) -> value to store``.
ValueCheck = Callable[[Any, Any, str, str], Any]
#: ``validator(incoming, current, describe)``: ``incoming`` is the group's dict from one
#: source (editable), ``current`` the group as merged so far.
GroupValidator = Callable[[Dict[str, Any], Mapping[str, Any], Describe], None]

_VALUE_CHECKS: Dict[str, ValueCheck] = {}


class _Range(NamedTuple):
    low: Optional[float]
    high: Optional[float]
    low_open: bool
    high_open: bool
    allow_inf: bool
    meaning: str


_RANGES: Dict[str, _Range] = {}
_VALIDATORS: Dict[str, List[GroupValidator]] = {}


def register_value_check(key: str, check: ValueCheck) -> None:
    """Check the values of ``key`` with ``check`` instead of the type of its default.

    Args:
        key (str): the dotted key, e.g. ``"TEST.EVAL_PERIOD"``.
        check (callable): ``check(value, default, key, source)`` returns the value to store.
    """
    _VALUE_CHECKS[key] = check


def register_range(
    key: str,
    low: Optional[float] = None,
    high: Optional[float] = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
    meaning: str = "",
) -> None:
    """Reject values of ``key`` outside ``[low, high]`` (or NaN) when they are merged.

    Strings (a period in epochs, ``"5ep"``) and None are left to the key's value check.

    Args:
        key (str): the dotted key, e.g. ``"SOLVER.BASE_LR"``.
        low (float, optional): the smallest accepted value (None: no bound).
        high (float, optional): the largest accepted value (None: no bound).
        low_open (bool): ``low`` itself is rejected. Default: False.
        high_open (bool): ``high`` itself is rejected. Default: False.
        allow_inf (bool): accept ``inf`` (e.g. an infinity norm). Default: False.
        meaning (str): what the key is, for the message (e.g. ``"the learning rate"``).
    """
    _RANGES[key] = _Range(low, high, low_open, high_open, allow_inf, meaning)


def _expected(rule: _Range) -> str:
    parts = []
    if rule.low is not None:
        parts.append(f"{'>' if rule.low_open else '>='} {rule.low:g}")
    if rule.high is not None:
        parts.append(f"{'<' if rule.high_open else '<='} {rule.high:g}")
    text = "a number " + " and ".join(parts) if parts else "a finite number"
    return text + (f" ({rule.meaning})" if rule.meaning else "")


def _in_range(number: float, rule: _Range) -> bool:
    if math.isnan(number) or (math.isinf(number) and not rule.allow_inf):
        return False
    if rule.low is not None and (number < rule.low or (rule.low_open and number == rule.low)):
        return False
    if rule.high is not None and (number > rule.high or (rule.high_open and number == rule.high)):
        return False
    return True


def _ranged(check: ValueCheck, rule: _Range) -> ValueCheck:
    def check_range(value: Any, default: Any, key: str, source: str) -> Any:
        value = check(value, default, key, source)
        numbers = value if isinstance(value, (list, tuple)) else [value]
        for number in numbers:
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                continue
            if not _in_range(number, rule):
                raise ConfigError(
                    f"Config key '{key}' ({source}) got {value!r}; expected {_expected(rule)}"
                )
        return value

    return check_range


def get_value_check(key: str) -> Optional[ValueCheck]:
    """The check of ``key``: its value check and its range, or None (the default's type applies)."""
    check = _VALUE_CHECKS.get(key)
    rule = _RANGES.get(key)
    if rule is None:
        return check
    return _ranged(check or coerce_like_default, rule)


def value_checked_keys() -> Tuple[str, ...]:
    """The dotted keys that have a value check (their values may change type)."""
    return tuple(_VALUE_CHECKS)


def register_validator(group: str, validator: GroupValidator) -> None:
    """Run ``validator`` whenever a source sets keys of the top-level ``group``.

    Args:
        group (str): a top-level group, e.g. ``"SOLVER"``.
        validator (callable): ``validator(incoming, current, describe)``; see the module
            docstring. Registering the same function twice has no effect.
    """
    validators = _VALIDATORS.setdefault(group, [])
    if validator not in validators:
        validators.append(validator)


def run_validators(
    incoming: Dict[str, Any], current: Mapping[str, Any], describe: Describe
) -> None:
    """Run the group validators on one source's values before they are merged.

    Args:
        incoming (dict): the source's values as a nested dict (edited in place).
        current (Mapping): the tree they are merged onto (a config node, or the dict of the
            ``_BASE_`` files merged so far).
        describe (callable): names the source of a dotted key, for messages.
    """
    for group, validators in _VALIDATORS.items():
        new, old = incoming.get(group), current.get(group)
        if isinstance(new, dict) and isinstance(old, Mapping):
            for validator in validators:
                validator(new, old, describe)


def coerce_like_default(value: Any, default: Any, key: str, source: str) -> Any:
    """Coerce ``value`` to the type of ``default`` or explain the mismatch.

    Args:
        value: the decoded value.
        default: the key's current value, whose type is expected.
        key (str): the dotted key, for the message.
        source (str): where the value came from, for the message.

    Returns:
        The value, converted where it is lossless (int to float, list to tuple).

    Raises:
        ConfigError: a value that yacs cannot hold or of another type, naming the key.
    """
    if not isinstance(value, tuple(_VALID_TYPES)):
        raise ConfigError(
            f"Config key '{key}' ({source}) got {value!r} of type "
            f"{type(value).__name__}; config values must be str, int, float, bool, "
            f"list, tuple or None"
        )
    if value is None or default is None or type(value) is type(default):
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    raise ConfigError(
        f"Wrong type for config key '{key}' ({source}): expected {type(default).__name__} "
        f"(default {default!r}), got {type(value).__name__} {value!r}"
    )
