"""Hooks chosen by the config: ``HOOK_REGISTRY`` and ``build_hooks_from_config``.

``cfg.HOOKS`` lists registered names; ``DefaultTrainer`` adds the hooks they build after its
own and before the metric writers (so the writers see what these hooks put). A registered
entry is a callable ``(cfg) -> HookBase | None``: a builder function (None: nothing to add for
this config), or a hook class whose constructor takes the config, e.g. through
``@configurable``. A project adds one with no engine edit:

Example:
    >>> from engine_lib.engine.hooks import HOOK_REGISTRY, HookBase
    >>> @HOOK_REGISTRY.register()
    ... class LogGradNorm(HookBase):
    ...     def __init__(self, cfg):
    ...         self._period = cfg.SOLVER.LOG_PERIOD
    ...     def after_backward(self): ...

and turns it on with ``HOOKS: ("LogGradNorm",)``.
"""

import logging
from typing import Any, List

from engine_lib.utils.errors import ConfigError
from engine_lib.utils.registry import Registry

from ..train_loop import HookBase
from .memory_stats import TorchMemoryStats

__all__ = ["HOOK_REGISTRY", "build_hooks_from_config"]

logger = logging.getLogger(__name__)

# name -> (cfg) -> HookBase or None
HOOK_REGISTRY = Registry("HOOK")


@HOOK_REGISTRY.register("TorchMemoryStats")
def _torch_memory_stats(cfg: Any) -> HookBase:
    """CUDA memory statistics every ``SOLVER.LOG_PERIOD`` iterations."""
    return TorchMemoryStats(period=cfg.SOLVER.LOG_PERIOD)


def build_hooks_from_config(cfg: Any) -> List[HookBase]:
    """Build the hooks ``cfg.HOOKS`` names in ``HOOK_REGISTRY``, in that order.

    Args:
        cfg (CfgNode): the config; reads ``HOOKS`` and what each hook reads.

    Returns:
        list[HookBase]: the hooks (entries whose builder returned None are left out).

    Raises:
        ConfigError: for a name not in ``HOOK_REGISTRY`` (naming the closest ones), or a
            name listed twice.
        TypeError: if a builder returns something else than a :class:`HookBase` or None.
    """
    names = list(cfg.HOOKS)
    built: List[HookBase] = []
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"HOOKS: {name!r} is listed {names.count(name)} times; list it once.")
        hook = HOOK_REGISTRY.get_for_key("HOOKS", name)(cfg)
        if hook is None:
            continue
        if not isinstance(hook, HookBase):
            raise TypeError(
                f"HOOKS entry {name!r} built {type(hook).__name__}, not a HookBase; the "
                "registered callable must take the config and return a hook or None."
            )
        built.append(hook)
    return built
