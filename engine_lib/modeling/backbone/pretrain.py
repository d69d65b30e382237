"""Load backbone weights from a local state-dict file (``MODEL.BACKBONE.PRETRAIN_PATH``)."""

import logging
from typing import Any, Dict, List, NamedTuple

import torch
from torch import nn

from engine_lib.utils.errors import ConfigError
from engine_lib.utils.file_io import PathManager

__all__ = ["LoadResult", "load_pretrained_backbone"]

logger = logging.getLogger(__name__)

_KEY = "MODEL.BACKBONE.PRETRAIN_PATH"
# Prefixes of a state dict saved from a whole model or a DDP wrapper rather than a backbone.
_WRAPPER_PREFIXES = ("module.", "backbone.")


class LoadResult(NamedTuple):
    """Keys that did not load, as reported by :func:`load_pretrained_backbone`."""

    missing_keys: List[str]
    unexpected_keys: List[str]
    mismatched_keys: List[str]


def _read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    if not PathManager.isfile(path):
        raise ConfigError(f"{_KEY}: no such file {path!r} (expected a state-dict file)")
    try:
        # weights_only: a weights file must never be able to run code when it is read.
        with PathManager.open(path, "rb") as f:
            loaded: Any = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"{_KEY}: cannot read {path!r} as a weights-only state dict: {e}") from e
    # Accept a bare state dict as well as checkpoints that nest it.
    for nest in ("model", "state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(nest), dict):
            loaded = loaded[nest]
    if not isinstance(loaded, dict):
        raise ConfigError(f"{_KEY}: {path!r} holds a {type(loaded).__name__}, not a state dict")
    state = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    for prefix in _WRAPPER_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def load_pretrained_backbone(backbone: nn.Module, path: str) -> LoadResult:
    """Load the weights in ``path`` into ``backbone`` non-strictly and report what did not fit.

    The file may hold a state dict, or a checkpoint with one under "model" or "state_dict";
    keys prefixed "module." (DDP) or "backbone." (a whole classifier) are matched without
    the prefix. Tensors whose shape differs from the backbone's (e.g. the first conv with
    another ``IN_CHANNELS``) are skipped and keep their initialization.

    Args:
        backbone (nn.Module): the backbone to load into.
        path (str): a file written by ``torch.save`` (any path ``PathManager`` can open).

    Returns:
        LoadResult: missing, unexpected and shape-mismatched keys (each also logged).

    Raises:
        ConfigError: the file does not exist or is not a weights-only state dict.
    """
    state = _read_state_dict(path)
    own = backbone.state_dict()
    mismatched = sorted(k for k, v in state.items() if k in own and v.shape != own[k].shape)
    for k in mismatched:
        logger.warning(
            "Skip %s from %s: shape %s, backbone has %s",
            k,
            path,
            tuple(state.pop(k).shape),
            tuple(own[k].shape),
        )
    incompatible = backbone.load_state_dict(state, strict=False)
    result = LoadResult(
        sorted(set(incompatible.missing_keys) - set(mismatched)),
        sorted(incompatible.unexpected_keys),
        mismatched,
    )
    loaded = len(state) - len(result.unexpected_keys)
    logger.info("Loaded %d backbone tensors from %s", loaded, path)
    if result.missing_keys:
        logger.warning("Keys not in %s (kept at init): %s", path, ", ".join(result.missing_keys))
    if result.unexpected_keys:
        logger.warning(
            "Keys in %s unused by the backbone: %s", path, ", ".join(result.unexpected_keys)
        )
    return result
