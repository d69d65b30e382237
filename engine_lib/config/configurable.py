"""``@configurable``: build an object from explicit arguments or from a config.

Classes and functions take plain objects and values ("objects in"); a ``from_config`` function
translates a config into those arguments ("config at the edge"). The decorator lets callers
use either form with the same name:

    class Head(nn.Module):
        @configurable
        def __init__(self, in_dim: int, num_classes: int):
            ...

        @classmethod
        def from_config(cls, cfg):
            return {"in_dim": 64, "num_classes": cfg.MODEL.HEADS.NUM_CLASSES}

    Head(64, 10)          # explicit arguments
    Head(cfg)             # from the config
    Head(cfg, in_dim=32)  # from the config, with an explicit override
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict, Optional, TypeVar

from yacs.config import CfgNode as _YacsCfgNode

__all__ = ["configurable"]

F = TypeVar("F", bound=Callable[..., Any])


def _is_cfg_call(args: tuple, kwargs: Dict[str, Any]) -> bool:
    """True when the call passes a config as first positional argument or as ``cfg=``."""
    if args and isinstance(args[0], _YacsCfgNode):
        return True
    return isinstance(kwargs.get("cfg"), _YacsCfgNode)


def _args_from_config(from_config: Callable[..., Dict[str, Any]], *args, **kwargs) -> Dict:
    """Call ``from_config`` with the arguments it accepts; others go straight to the target.

    Returns the keyword arguments for the decorated function: what ``from_config`` returned,
    updated with the caller's extra keyword arguments (explicit values win).
    """
    signature = inspect.signature(from_config)
    params = signature.parameters
    if next(iter(params), None) != "cfg":
        name = getattr(from_config, "__qualname__", repr(from_config))
        raise TypeError(f"{name} must take 'cfg' as its first argument to be used by @configurable")
    takes_var_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
    if takes_var_kwargs:
        built = from_config(*args, **kwargs)
        extra: Dict[str, Any] = {}
    else:
        own = {k: v for k, v in kwargs.items() if k in params}
        extra = {k: v for k, v in kwargs.items() if k not in params}
        built = from_config(*args, **own)
    if not isinstance(built, dict):
        name = getattr(from_config, "__qualname__", repr(from_config))
        raise TypeError(f"{name} must return a dict of keyword arguments, got {type(built)}")
    built.update(extra)
    return built


def configurable(init_func: Optional[F] = None, *, from_config: Optional[Callable] = None):
    """Let a class ``__init__`` or a function also be called with a config.

    On an ``__init__``, the class must define a ``from_config(cls, cfg, ...)`` classmethod. On
    a function, pass ``from_config=`` explicitly: ``@configurable(from_config=fn)``.

    Args:
        init_func (callable, optional): the ``__init__`` being decorated (bare decorator form).
        from_config (callable, optional): for functions, maps ``(cfg, ...)`` to a dict of
            keyword arguments.

    Returns:
        The decorated ``__init__`` or function, callable with explicit arguments as before, or
        with a ``CfgNode`` as first argument (or ``cfg=``) plus optional keyword overrides.

    Raises:
        TypeError: ``from_config`` is missing, has no ``cfg`` argument or returns a non-dict.
    """
    if init_func is not None:
        if from_config is not None:
            raise TypeError("@configurable on __init__ takes no from_config; define a classmethod")

        @functools.wraps(init_func)
        def wrapped_init(self, *args, **kwargs):
            if not _is_cfg_call(args, kwargs):
                return init_func(self, *args, **kwargs)
            builder = getattr(type(self), "from_config", None)
            if builder is None or not inspect.ismethod(builder):
                raise TypeError(
                    f"{type(self).__name__} uses @configurable but has no from_config classmethod"
                )
            return init_func(self, **_args_from_config(builder, *args, **kwargs))

        return wrapped_init

    if from_config is None:
        # ``@configurable()`` with no arguments on an __init__.
        return configurable

    def decorator(func: F) -> F:
        @functools.wraps(func)
        def wrapped(*args, **kwargs):
            if _is_cfg_call(args, kwargs):
                return func(**_args_from_config(from_config, *args, **kwargs))
            return func(*args, **kwargs)

        wrapped.from_config = from_config  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator
