"""Name -> object registries (models, backbones, data sets, ...) with helpful lookup errors.

fvcore's ``Registry`` answers an unknown name with a bare ``KeyError`` and a duplicate one with
an ``assert``; the names usually come from a config file, so ours says what is registered and
which name was probably meant.
"""

import difflib
import logging
from typing import Any, List

from fvcore.common.registry import Registry as _FvcoreRegistry

from engine_lib.utils.errors import UnknownNameError

__all__ = ["Registry"]

logger = logging.getLogger(__name__)


class Registry(_FvcoreRegistry):
    """A registry of named objects; register with ``@REG.register()`` or ``REG.register(obj)``.

    Example:
        >>> BACKBONE_REGISTRY = Registry("BACKBONE")
        >>> @BACKBONE_REGISTRY.register()
        ... class MyBackbone(nn.Module): ...
        >>> BACKBONE_REGISTRY.get("MyBackbone")
    """

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
