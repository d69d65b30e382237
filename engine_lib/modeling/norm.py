"""``get_norm``: the normalization layer named by ``MODEL.BACKBONE.NORM``."""

import logging
import math

from torch import nn

from engine_lib.utils.errors import ConfigError

__all__ = ["NORM_CHOICES", "get_norm"]

logger = logging.getLogger(__name__)

#: The names ``get_norm`` understands ("" means no normalization).
NORM_CHOICES = ("BN", "GN", "SyncBN", "")

# GroupNorm's usual group count; get_norm lowers it to a divisor of small channel counts.
_GN_GROUPS = 32


def get_norm(norm: str, num_channels: int) -> nn.Module:
    """Return a 2-d normalization layer for ``num_channels`` channels.

    Args:
        norm (str): "BN" (BatchNorm2d), "GN" (GroupNorm with up to 32 groups), "SyncBN"
            (SyncBatchNorm; needs GPU tensors once trained under a process group) or "" (none).
        num_channels (int): number of channels to normalize.

    Returns:
        nn.Module: the layer; ``nn.Identity`` for "".

    Raises:
        ConfigError: if ``norm`` is not one of :data:`NORM_CHOICES`.
    """
    if norm == "BN":
        return nn.BatchNorm2d(num_channels)
    if norm == "SyncBN":
        return nn.SyncBatchNorm(num_channels)
    if norm == "GN":
        # The largest group count <= 32 that divides the channels, so narrow layers work too.
        return nn.GroupNorm(math.gcd(_GN_GROUPS, num_channels), num_channels)
    if norm == "":
        return nn.Identity()
    raise ConfigError(
        f"Unknown normalization {norm!r} (MODEL.BACKBONE.NORM); expected one of {NORM_CHOICES}"
    )
