"""Repeatable runs: one seed for the whole job, RNG states in checkpoints, deterministic mode.

``SEED < 0`` draws a seed at start-up; every rank must use the same one (each then seeds
``SEED + rank``), and the dumped ``config.yaml`` must record it so that the run can be repeated.
A checkpoint holds every rank's RNG states (:func:`capture_rng_state`,
:func:`restore_rng_state`), so that a resumed run draws the same random numbers as an
uninterrupted one. ``DETERMINISTIC`` (``--deterministic``) turns on the deterministic kernels
of cuDNN, cuBLAS and torch.
"""

import logging
import os
import random
from typing import Any, Dict, MutableMapping, Tuple, cast

import numpy as np
import torch

from engine_lib.config import CfgNode
from engine_lib.config.resolve import job_seed

__all__ = [
    "CUBLAS_WORKSPACE_CONFIG",
    "apply_determinism",
    "capture_rng_state",
    "cuda_in_use",
    "resolve_seed",
    "restore_rng_state",
    "set_cublas_workspace_config",
]

logger = logging.getLogger(__name__)

#: The cuBLAS workspace setting that makes cuBLAS deterministic (from CUDA 10.2 on).
CUBLAS_WORKSPACE_CONFIG = ":4096:8"
# The values torch accepts as deterministic (the smaller one saves memory).
_DETERMINISTIC_WORKSPACES = (":4096:8", ":16:8")


def resolve_seed(cfg: CfgNode) -> CfgNode:
    """Replace a negative ``cfg.SEED`` by a random seed that every rank shares.

    Rank 0 draws the seed from the operating system and the other ranks receive it (a
    collective when distributed: every rank must call this). The seed is logged with how to
    repeat the run, and is the job's seed from then on (:func:`~engine_lib.config.resolve.
    job_seed`): a trainer built afterwards from the unresolved config uses it too.

    Args:
        cfg (CfgNode): the config, frozen or not.

    Returns:
        CfgNode: ``cfg`` itself when ``SEED >= 0``; otherwise a copy with ``SEED`` set to the
        drawn seed, frozen like ``cfg``.
    """
    if cfg.SEED >= 0:
        return cfg
    with cfg.edited_copy() as resolved:
        # A new job's seed, which the trainer's resolve_config then reuses (job_seed).
        resolved.SEED = job_seed(cfg, new_job=True)
    return resolved


def capture_rng_state() -> Dict[str, Any]:
    """This process's python, numpy, torch (and CUDA) RNG states, for a checkpoint.

    Returns:
        dict: plain data that ``torch.load(weights_only=True)`` accepts (the numpy key array
        as a tensor); give it to :func:`restore_rng_state`.
    """
    version, mt_state, gauss = random.getstate()
    # legacy=True (the default) gives the tuple form, not the dict its type also allows.
    numpy_state = cast(Tuple[str, np.ndarray, int, int, float], np.random.get_state())  # noqa: NPY002
    kind, keys, pos, has_gauss, cached = numpy_state
    state: Dict[str, Any] = {
        "python": [version, list(mt_state), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` returned (CUDA states only where CUDA exists).

    Args:
        state (dict): one process's RNG states.
    """
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
