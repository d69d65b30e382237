"""Process-wide environment helpers: seeding every random number generator, the torch version."""

import logging
import os
import random
from typing import Optional

import numpy as np
import torch

from engine_lib.utils.errors import ConfigError

__all__ = ["seed_all_rng", "TORCH_VERSION"]

logger = logging.getLogger(__name__)

#: (major, minor) of the installed torch, for version-dependent code paths.
TORCH_VERSION = tuple(int(x) for x in torch.__version__.split(".")[:2])


def seed_all_rng(seed: Optional[int] = None) -> int:
    """Seed python's ``random``, numpy's global generator and torch (CPU and every GPU).

    Args:
        seed (int, optional): the seed, in ``[0, 2**32)``. None: draw one from the operating
            system and log it, so that the run can be repeated.

    Returns:
        int: the seed used.

    Raises:
        ConfigError: if ``seed`` is not an integer in ``[0, 2**32)`` (numpy's range).
    """
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "big") >> 1
        logger.info("Using a randomly generated seed: %d", seed)
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ConfigError(f"The random seed must be an integer in [0, 2**32), got {seed!r}.")
    seed = int(seed)
    random.seed(seed)
    # The legacy global generator is what third-party augmentation code draws from.
    np.random.seed(seed)  # noqa: NPY002
    torch.manual_seed(seed)  # also seeds every CUDA device
    return seed
