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
from typing import Any, Callable, Dict, Optional, Type, TypeVar

from yacs.config import CfgNode as _YacsCfgNode

__all__ = ["MissingFromConfigError", "configurable"]

F = TypeVar("F", bound=Callable[..., Any])


def _is_cfg_call(args: tuple, kwargs: Dict[str, Any]) -> bool:
    """True when the call passes a config as first positional argument or as ``cfg=``."""
    if args and isinstance(args[0], _YacsCfgNode):
        return True
    return isinstance(kwargs.get("cfg"), _YacsCfgNode)


def _args_from_config(
    from_config: Callable[..., Dict[str, Any]], *args: Any, **kwargs: Any
) -> Dict:
    """Call ``from_config`` with the arguments it accepts; others go straight to the target.

    Returns the keyword arguments for the decorated function: what ``from_config`` returned,
    updated with the caller's extra keyword arguments (explicit values win).
    """
    signature = inspect.signature(from_config)
    params = signature.parameters
    if next(iter(params), None) != "cfg":
        name = getattr(from_config, "__qualname__", repr(from_config))
        raise TypeError(f"{name} must take 'cfg' as its first argument to be used by @configurable")
    takes_var_kwargs = any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params.values())
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


class MissingFromConfigError(AttributeError, TypeError):
    """A @configurable class built from a config has no ``from_config``.

    detectron2 raises ``AttributeError`` here and engine_lib used to raise ``TypeError``:
    this is both, so either ``except`` clause catches it.
    """


def _from_config_of(cls: Type[Any]) -> Callable[..., Dict[str, Any]]:
    """The ``from_config`` classmethod of a class whose ``__init__`` is @configurable."""
    try:
        builder = cls.from_config
    except AttributeError:
        raise MissingFromConfigError(
            f"{cls.__name__} uses @configurable, so it must have a 'from_config' classmethod."
        ) from None
    if not inspect.ismethod(builder):
        raise TypeError(
            f"{cls.__name__}.from_config must be a classmethod (@classmethod) for @configurable."
        )
    return builder


def configurable(
    init_func: Optional[F] = None, *, from_config: Optional[Callable] = None
) -> Callable[..., Any]:
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
        MissingFromConfigError: (an ``AttributeError`` and a ``TypeError``) built from a
            config, the class has no ``from_config``.
        TypeError: ``from_config`` is not a classmethod (or, for a function, not a function),
            has no ``cfg`` first argument or returns a non-dict; or the bare decorator is put
            on something else than an ``__init__``.
    """
    if init_func is not None:
        if from_config is not None:
            raise TypeError("@configurable on __init__ takes no from_config; define a classmethod")
        if not inspect.isfunction(init_func) or init_func.__name__ != "__init__":
            raise TypeError(
                f"@configurable without from_config= decorates an __init__, not "
                f"{getattr(init_func, '__qualname__', init_func)!r}; for a function use "
                "@configurable(from_config=...)."
            )

        @functools.wraps(init_func)
        def wrapped_init(self: Any, *args: Any, **kwargs: Any) -> Any:
            # Unlike detectron2, explicit arguments need no from_config ("objects in").
            if not _is_cfg_call(args, kwargs):
                return init_func(self, *args, **kwargs)
            builder = _from_config_of(type(self))
            return init_func(self, **_args_from_config(builder, *args, **kwargs))

        return wrapped_init

    if from_config is None:
        # ``@configurable()`` with no arguments on an __init__.
        return configurable
    if not inspect.isfunction(from_config):
        raise TypeError(f"configurable(from_config=...) takes a function, got {from_config!r}")

    def decorator(func: F) -> F:
        @functools.wraps(func)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if _is_cfg_call(args, kwargs):
                return func(**_args_from_config(from_config, *args, **kwargs))
            return func(*args, **kwargs)

        wrapped.from_config = from_config  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator
