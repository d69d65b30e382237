"""Recognise FSDP2 modules and DTensors without importing the packages that define them.

``torch.distributed.fsdp`` and ``torch.distributed.tensor`` take ~0.7 s to import (sympy and
the DTensor op tables come with them), which every run would pay on ``import
engine_lib.engine`` although most never shard a model. An instance of ``FSDPModule`` or
``DTensor`` can only exist once its package was imported (by whoever sharded the model), so
these checks look the classes up in ``sys.modules`` and answer False when they are absent.
"""

import sys
from typing import TYPE_CHECKING, Any, Optional, TypeGuard

import torch

if TYPE_CHECKING:  # for the annotations only
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

__all__ = ["is_dtensor", "is_fsdp_module", "local_tensor"]


def _loaded_class(module: str, name: str) -> Optional[type]:
    loaded = sys.modules.get(module)
    # getattr: a package in the middle of its own import may not define the class yet.
    return getattr(loaded, name, None) if loaded is not None else None


def is_fsdp_module(module: Any) -> "TypeGuard[FSDPModule]":
    """Whether ``module`` was sharded by FSDP2 (``fully_shard``), i.e. is an ``FSDPModule``.

    Args:
        module (Any): a module, or anything else (then False).

    Returns:
        bool: True for an ``FSDPModule``.
    """
    cls = _loaded_class("torch.distributed.fsdp", "FSDPModule")
    return cls is not None and isinstance(module, cls)


def is_dtensor(value: Any) -> "TypeGuard[DTensor]":
    """Whether ``value`` is a ``torch.distributed.tensor.DTensor``.

    Args:
        value (Any): a tensor, or anything else (then False).

    Returns:
        bool: True for a DTensor.
    """
    cls = _loaded_class("torch.distributed.tensor", "DTensor")
    return cls is not None and isinstance(value, cls)


def local_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (``to_local()``); any other tensor unchanged.

    Args:
        tensor (Tensor): a tensor or a DTensor.

    Returns:
        Tensor: a plain tensor.
    """
    return tensor.to_local() if is_dtensor(tensor) else tensor
