"""Config system: a frozen yacs/fvcore ``CfgNode`` tree of defaults, merged from YAML and CLI."""

from typing import Callable, Sequence

from . import epochs  # noqa: F401  (registers the rules of the SOLVER length and periods)
from .config import CfgNode
from .configurable import configurable
from .defaults import _C
from .extension import add_extra_config_argument, load_config_extension
from .resolve import job_seed, resolve_config
from .validators import register_validator, register_value_check

__all__ = [
    "CfgNode",
    "add_extra_config_argument",
    "build_config",
    "configurable",
    "get_cfg",
    "job_seed",
    "load_config_extension",
    "register_validator",
    "register_value_check",
    "resolve_config",
]


def get_cfg() -> CfgNode:
    """Return a fresh copy of the default config tree (safe to modify).

    Returns:
        CfgNode: a clone of ``engine_lib.config.defaults._C``.
    """
    return _C.clone()


def build_config(
    config_file: str,
    opts: Sequence[str] = (),
    extensions: Sequence[Callable[[CfgNode], None]] = (),
) -> CfgNode:
    """The config of an entry point: defaults, a project's keys, a file, overrides; frozen.

    Args:
        config_file (str): the YAML file (its ``_BASE_`` files are merged first).
        opts (Sequence[str]): ``KEY VALUE`` overrides, merged last.
        extensions (Sequence[callable]): functions adding a project's keys, e.g.
            ``add_metric_learning_config``, called on the defaults before the file is merged.

    Returns:
        CfgNode: the frozen config.
    """
    cfg = get_cfg()
    for extend in extensions:
        extend(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg
