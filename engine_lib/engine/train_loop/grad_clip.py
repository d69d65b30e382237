"""Gradient clipping settings of :class:`SimpleTrainer`."""

import dataclasses
import logging
from typing import List

import torch
from torch import nn

from engine_lib.utils.errors import ConfigError

__all__ = ["GradClip"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class GradClip:
    """How :class:`SimpleTrainer` clips gradients before each optimizer step.

    Args:
        clip_type (str): ``"norm"`` clips the global norm of all gradients together,
            ``"value"`` clamps each element. Default: ``"norm"``.
        clip_value (float): the maximum norm or absolute value. Default: 1.0.
        norm_type (float): the p of the p-norm for ``"norm"`` (``float("inf")`` or "inf" for
            the max norm). Default: 2.0.

    Raises:
        ConfigError: for an unknown ``clip_type`` or a non-positive ``clip_value``.
    """

    clip_type: str = "norm"
    clip_value: float = 1.0
    norm_type: float = 2.0

    def __post_init__(self) -> None:
        if self.clip_type not in ("norm", "value"):
            raise ConfigError(
                f"GradClip.clip_type must be 'norm' or 'value', got {self.clip_type!r}"
            )
        if not self.clip_value > 0:
            raise ConfigError(f"GradClip.clip_value must be positive, got {self.clip_value!r}")
        # frozen dataclass: object.__setattr__ is the documented way to normalise a field.
        object.__setattr__(self, "norm_type", float(self.norm_type))

    def apply(self, parameters: List[torch.Tensor]) -> None:
        """Clip the gradients of ``parameters`` in place, without a host sync.

        Args:
            parameters (list[Tensor]): the parameters; those without a gradient are skipped.
        """
        if self.clip_type == "norm":
            nn.utils.clip_grad_norm_(parameters, self.clip_value, self.norm_type)
        else:
            nn.utils.clip_grad_value_(parameters, self.clip_value)
