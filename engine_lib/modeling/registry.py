"""Look up a registry entry named by a config key, with an error that names the key."""

import logging
from typing import Any

from engine_lib.utils.errors import UnknownNameError
from engine_lib.utils.registry import Registry

__all__ = ["get_from_registry"]

logger = logging.getLogger(__name__)


def get_from_registry(registry: Registry, name: str, key: str) -> Any:
    """Return ``registry.get(name)``, naming the config key ``key`` when ``name`` is unknown.

    Args:
        registry (Registry): where to look.
        name (str): the registered name, as read from the config.
        key (str): the config key that holds ``name`` (e.g. "MODEL.BACKBONE.NAME").

    Returns:
        The registered object.

    Raises:
        UnknownNameError: if ``name`` is not registered; the message keeps the registry's
            list of names / closest match and adds ``key``.
    """
    try:
        return registry.get(name)
    except KeyError as e:
        raise UnknownNameError(f"{key}: {e}") from e
