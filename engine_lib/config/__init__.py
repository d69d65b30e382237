"""Config system: a frozen yacs/fvcore ``CfgNode`` tree of defaults, merged from YAML and CLI."""

from .config import CfgNode
from .configurable import configurable
from .defaults import _C
from .extension import load_config_extension

__all__ = ["CfgNode", "configurable", "get_cfg", "load_config_extension"]


def get_cfg() -> CfgNode:
    """Return a fresh copy of the default config tree (safe to modify).

    Returns:
        CfgNode: a clone of ``engine_lib.config.defaults._C``.
    """
    return _C.clone()
