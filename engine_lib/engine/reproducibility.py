"""Repeatable runs: one seed for the whole job, and torch's deterministic mode.

``SEED < 0`` draws a seed at start-up; every rank must use the same one (each then seeds
``SEED + rank``), and the dumped ``config.yaml`` must record it so that the run can be repeated.
``DETERMINISTIC`` (``--deterministic``) turns on the deterministic kernels of cuDNN, cuBLAS
and torch.
"""

import logging
import os
from typing import MutableMapping

import torch

from engine_lib.config import CfgNode
from engine_lib.utils import comm

__all__ = [
    "CUBLAS_WORKSPACE_CONFIG",
    "resolve_seed",
    "set_cublas_workspace_config",
    "cuda_in_use",
    "apply_determinism",
]

logger = logging.getLogger(__name__)

#: The cuBLAS workspace setting that makes cuBLAS deterministic (from CUDA 10.2 on).
CUBLAS_WORKSPACE_CONFIG = ":4096:8"
# The values torch accepts as deterministic (the smaller one saves memory).
_DETERMINISTIC_WORKSPACES = (":4096:8", ":16:8")

# Drawn seeds stay below 2**31, so that SEED + rank stays in numpy's range [0, 2**32).
_MAX_RANDOM_SEED = 2**31


def resolve_seed(cfg: CfgNode) -> CfgNode:
    """Replace a negative ``cfg.SEED`` by a random seed that every rank shares.

    Rank 0 draws the seed from the operating system and the other ranks receive it (a
    collective when distributed: every rank must call this). The seed is logged with how to
    repeat the run.

    Args:
        cfg (CfgNode): the config, frozen or not.

    Returns:
        CfgNode: ``cfg`` itself when ``SEED >= 0``; otherwise a copy with ``SEED`` set to the
        drawn seed, frozen like ``cfg``.
    """
    if cfg.SEED >= 0:
        return cfg
    drawn = int.from_bytes(os.urandom(4), "big") % _MAX_RANDOM_SEED
    seed = int(comm.all_gather(drawn)[0]) if comm.get_world_size() > 1 else drawn
    logger.info("Using random seed %d; repeat with SEED %d", seed, seed)
    with cfg.edited_copy() as resolved:
        resolved.SEED = seed
    return resolved


def cuda_in_use(cfg: CfgNode) -> bool:
    """Whether this run computes on CUDA: ``MODEL.DEVICE`` is not the CPU and CUDA exists."""
    return not str(cfg.MODEL.DEVICE).startswith("cpu") and torch.cuda.is_available()


def set_cublas_workspace_config(environ: MutableMapping[str, str]) -> str:
    """Set ``CUBLAS_WORKSPACE_CONFIG`` to :data:`CUBLAS_WORKSPACE_CONFIG` unless set already.

    cuBLAS reads the variable when a process creates its first handle, so it must be set
    before the first matrix product on the GPU, and in the launching process before workers
    are spawned (they inherit its environment). A deterministic value set by the user
    (``:16:8`` saves memory) is kept; any other value is replaced, with a warning.

    Args:
        environ (MutableMapping[str, str]): the environment, usually ``os.environ``.

    Returns:
        str: the value in effect.
    """
    current = environ.get("CUBLAS_WORKSPACE_CONFIG")
    if current in _DETERMINISTIC_WORKSPACES:
        return current
    if current:
        logger.warning(
            "CUBLAS_WORKSPACE_CONFIG=%s is not deterministic; using %s (DETERMINISTIC is on).",
            current,
            CUBLAS_WORKSPACE_CONFIG,
        )
    environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE_CONFIG
    return CUBLAS_WORKSPACE_CONFIG


def apply_determinism(cfg: CfgNode) -> None:
    """Set cuDNN benchmark and, with ``cfg.DETERMINISTIC``, torch's deterministic mode.

    With ``DETERMINISTIC``: ``cudnn.deterministic = True``, ``cudnn.benchmark = False`` (a
    ``CUDNN_BENCHMARK: True`` is overridden, with a warning),
    ``torch.use_deterministic_algorithms(True)`` (strict: an op without a deterministic
    kernel raises instead of silently making the run unrepeatable), and
    ``CUBLAS_WORKSPACE_CONFIG`` when CUDA is in use. Without it, only
    ``cudnn.benchmark = CUDNN_BENCHMARK``; torch's other settings are left as they are.

    Args:
        cfg (CfgNode): the config (``DETERMINISTIC``, ``CUDNN_BENCHMARK``, ``MODEL.DEVICE``).
    """
    if not cfg.DETERMINISTIC:
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK
        return
    if cfg.CUDNN_BENCHMARK:
        logger.warning("CUDNN_BENCHMARK is ignored: DETERMINISTIC turns cuDNN benchmark off.")
    workspace = "not needed on CPU"
    if cuda_in_use(cfg):
        workspace = set_cublas_workspace_config(os.environ)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)
    logger.info(
        "Deterministic mode: cudnn.deterministic=True, cudnn.benchmark=False, "
        "torch.use_deterministic_algorithms(True), CUBLAS_WORKSPACE_CONFIG=%s",
        workspace,
    )
