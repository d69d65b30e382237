"""Name -> object registries (models, backbones, data sets, ...) with helpful lookup errors.

fvcore's ``Registry`` answers an unknown name with a bare ``KeyError`` and a duplicate one with
an ``assert``; the names usually come from a config file, so ours says what is registered and
which name was probably meant.
"""

import difflib
import logging
from typing import Any, List, Optional, Union

from fvcore.common.registry import Registry as _FvcoreRegistry

from engine_lib.utils.errors import ConfigError, UnknownNameError

__all__ = ["Registry", "UnknownConfigNameError"]

logger = logging.getLogger(__name__)


class UnknownConfigNameError(ConfigError, UnknownNameError):
    """A config key names something its registry does not have.

    Both a :class:`ConfigError` (a bad config value) and an :class:`UnknownNameError` (a
    ``KeyError``), so that either ``except`` clause catches it.
    """


class Registry(_FvcoreRegistry):
    """A registry of named objects; register with ``@REG.register()`` or ``REG.register(obj)``.

    Example:
        >>> BACKBONE_REGISTRY = Registry("BACKBONE")
        >>> @BACKBONE_REGISTRY.register()
        ... class MyBackbone(nn.Module): ...
        >>> BACKBONE_REGISTRY.get("MyBackbone")
    """

    def register(self, obj: Optional[Union[Any, str]] = None) -> Any:
        """Register ``obj`` under its ``__name__``, or return a decorator that does.

        As in fvcore, plus one form: ``@REG.register("Name")`` registers the decorated
        object under ``"Name"`` (e.g. a builder function named after what it builds).

        Args:
            obj (object or str, optional): the object; a string gives the name to register
                the decorated object under; None: decorate.

        Returns:
            the object, or a decorator that returns it.
        """
        if isinstance(obj, str):
            name = obj

            def decorator(func_or_class: Any) -> Any:
                self._do_register(name, func_or_class)
                return func_or_class

            return decorator
        return super().register(obj)

    def _do_register(self, name: str, obj: Any) -> None:
        if name in self._obj_map:
            existing = self._obj_map[name]
            where = (
                f"{getattr(existing, '__module__', '?')}.{getattr(existing, '__qualname__', '?')}"
            )
            raise ValueError(
                f"An object named {name!r} is already registered in the {self._name} registry "
                f"(by {where}); give the new one another name."
            )
        self._obj_map[name] = obj

    def closest_names(self, name: str, n: int = 3) -> List[str]:
        """Return up to ``n`` registered names most similar to ``name``, best first.

        The comparison ignores case, so "resnet" suggests "ResNet".
        """
        by_lower = {registered.lower(): registered for registered in self._obj_map}
        matches = difflib.get_close_matches(str(name).lower(), list(by_lower), n=n, cutoff=0.5)
        return [by_lower[m] for m in matches]

    def get(self, name: str) -> Any:
        """Return the object registered under ``name``.

        Raises:
            UnknownNameError: (a ``KeyError``) if nothing is registered under ``name``; the
                message names the registry, the closest names and every registered name.
        """
        if name in self._obj_map:
            return self._obj_map[name]
        message = f"No object named {name!r} in the {self._name} registry."
        close = self.closest_names(name)
        if close:
            message += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
        registered = ", ".join(sorted(self._obj_map)) or "(none)"
        message += (
            f" Registered names: {registered}. Register a custom object with this registry's "
            "register() decorator, in a module that is imported before the name is looked up."
        )
        raise UnknownNameError(message)

    def get_for_key(self, key: str, name: str) -> Any:
        """Return the object registered under ``name``, which the config key ``key`` gave.

        Args:
            key (str): the config key the name came from, e.g. ``"SOLVER.OPTIMIZER"``.
            name (str): the registered name.

        Raises:
            UnknownConfigNameError: naming the key, the value, the closest registered names
                and every registered name.
        """
        try:
            return self.get(name)
        except UnknownNameError as e:
            raise UnknownConfigNameError(f"{key}: {e}") from None
