"""detectron2's optimizer-side gradient clipping, :func:`maybe_add_gradient_clipping`.

engine_lib clips in the trainer (``SimpleTrainer(clip_grad=GradClip(...))``, which
``DefaultTrainer`` builds from ``SOLVER.CLIP_GRADIENTS``), where it also unscales fp16
gradients first; :func:`engine_lib.solver.build_optimizer` therefore does not wrap its
optimizer. This function is for code ported from detectron2 that builds its own optimizer
and a plain :class:`SimpleTrainer`: do not combine both, or gradients are clipped twice.
"""

import logging
from typing import Any, Type

import torch

from engine_lib.utils.errors import ConfigError

__all__ = ["maybe_add_gradient_clipping"]

logger = logging.getLogger(__name__)


def maybe_add_gradient_clipping(
    cfg: Any, optimizer: Type[torch.optim.Optimizer]
) -> Type[torch.optim.Optimizer]:
    """Return ``optimizer`` (a class), or a subclass that clips gradients before each step.

    Args:
        cfg (CfgNode): reads ``SOLVER.CLIP_GRADIENTS.{ENABLED, CLIP_TYPE, CLIP_VALUE,
            NORM_TYPE}``; ``CLIP_TYPE`` is ``"value"`` (clamp each element) or ``"norm"``
            (the norm of each parameter's gradient, as in detectron2).
        optimizer (type): an optimizer class, e.g. ``torch.optim.SGD``.

    Returns:
        type: ``optimizer`` itself when clipping is disabled, else a subclass of it.

    Raises:
        TypeError: if ``optimizer`` is an instance rather than a class.
        ConfigError: for an unknown ``CLIP_TYPE``.

    Example:
        >>> opt = maybe_add_gradient_clipping(cfg, torch.optim.SGD)(params, lr=0.1)
    """
    if not isinstance(optimizer, type) or not issubclass(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"maybe_add_gradient_clipping takes an optimizer class, got {optimizer!r}; "
            "pass e.g. torch.optim.SGD and build the optimizer from the returned class."
        )
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not clip.ENABLED:
        return optimizer
    clip_type, value, norm_type = clip.CLIP_TYPE, float(clip.CLIP_VALUE), float(clip.NORM_TYPE)
    if clip_type not in ("value", "norm"):
        raise ConfigError(
            f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE: got {clip_type!r}; expected 'value' or 'norm'."
        )

    def step(self: torch.optim.Optimizer, closure: Any = None) -> Any:
        for group in self.param_groups:
            for param in group["params"]:
                if clip_type == "value":
                    torch.nn.utils.clip_grad_value_(param, value)
                else:
                    torch.nn.utils.clip_grad_norm_(param, value, norm_type)
        return optimizer.step(self, closure)

    name = optimizer.__name__ + "WithGradientClip"
    return type(name, (optimizer,), {"step": step})
