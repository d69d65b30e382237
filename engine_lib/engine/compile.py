"""``MODEL.COMPILE``: ``torch.compile`` of the model's forward, in place."""

import logging

import torch
from torch import nn

from engine_lib.config import CfgNode
from engine_lib.utils.errors import ConfigError

__all__ = ["COMPILE_MODES", "maybe_compile"]

logger = logging.getLogger(__name__)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def maybe_compile(model: nn.Module, cfg: CfgNode) -> nn.Module:
    """Compile ``model``'s forward with ``MODEL.COMPILE`` (``MODEL.COMPILE_MODE``).

    What is compiled is the forward of each direct submodule that has parameters (for the
    built-in classifier: backbone and head), or of the model itself when it has none. The
    meta-architecture's own forward turns a list of dicts into tensors in Python: compiled,
    it would be specialized on each batch's labels and recompiled at every step until
    dynamo gives up. ``nn.Module.compile`` compiles in place: the module stays the same
    object with the same parameter names, so checkpoints have no ``_orig_mod.`` prefix and
    load into an uncompiled model, and DDP, EMA and AMP wrap or read it as before. Training and
    evaluation both run the compiled forward (switching between train and eval mode
    recompiles once).

    Args:
        model (nn.Module): the model, before any DDP wrapping.
        cfg (CfgNode): reads ``MODEL.COMPILE`` and ``MODEL.COMPILE_MODE``.

    Returns:
        nn.Module: ``model`` itself.

    Raises:
        ConfigError: an unknown mode, or torch.compile unsupported on this platform.
    """
    if not cfg.MODEL.COMPILE:
        return model
    mode = cfg.MODEL.COMPILE_MODE
    if mode not in COMPILE_MODES:
        raise ConfigError(f"MODEL.COMPILE_MODE must be one of {list(COMPILE_MODES)}, got {mode!r}")
    if not torch._dynamo.is_dynamo_supported():
        raise ConfigError(
            "MODEL.COMPILE: torch.compile is not supported on this platform / Python version; "
            "set MODEL.COMPILE False."
        )
    if mode in ("reduce-overhead", "max-autotune") and cfg.MODEL.DEVICE == "cpu":
        logger.warning(
            "MODEL.COMPILE_MODE %r uses CUDA graphs, which do nothing on MODEL.DEVICE 'cpu'; "
            "'default' compiles as well.",
            mode,
        )
    targets = [(n, m) for n, m in model.named_children() if any(True for _ in m.parameters())]
    targets = targets or [("", model)]
    logger.info(
        "Compiling with torch.compile (mode=%s): %s",
        mode,
        ", ".join(n or type(model).__name__ for n, _ in targets),
    )
    for _, module in targets:
        module.compile(mode=mode)
    return model
