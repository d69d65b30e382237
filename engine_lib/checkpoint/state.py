"""Full (unsharded) state dicts of a model and optimizer, whatever their parallel wrapping.

Under FSDP2 a module's ``state_dict()`` holds DTensor shards and an optimizer's holds the
state of this rank's shards only. A single-file checkpoint needs the whole state:
``torch.distributed.checkpoint.state_dict`` gathers it (``full_state_dict=True``) into host
memory on rank 0 (``cpu_offload=True``; the other ranks get an empty dict, and only rank 0
writes) and, on load, shards a full state dict given on every rank back into place. For a
model that is not sharded these are the module's own ``state_dict`` / ``load_state_dict``.

:class:`FullStateModel` and :class:`FullStateOptimizer` give these to a
:class:`~engine_lib.checkpoint.Checkpointer` as its model and its ``optimizer``
checkpointable, so a run under ``PARALLEL.STRATEGY fsdp`` writes the same single
``model_*.pth`` files as one under DDP; ``--eval-only`` and ``DefaultPredictor`` load them in
one process.
"""

import logging
from types import ModuleType
from typing import Any, Dict, Iterator, Mapping, Tuple

import torch
from torch import nn

from .dist_types import is_fsdp_module, local_tensor

__all__ = [
    "FullStateModel",
    "FullStateOptimizer",
    "is_sharded",
    "load_full_model_state_dict",
    "load_full_optimizer_state_dict",
    "reshard",
    "full_model_state_dict",
    "full_optimizer_state_dict",
]

logger = logging.getLogger(__name__)


def _state_dict_api() -> ModuleType:
    # Imported on first use: torch.distributed.checkpoint costs ~0.7 s, and only sharded
    # models (whose packages are then loaded anyway) reach it.
    from torch.distributed.checkpoint import state_dict

    return state_dict


def _save_options() -> Any:
    return _state_dict_api().StateDictOptions(full_state_dict=True, cpu_offload=True)


def is_sharded(model: nn.Module) -> bool:
    """Whether some part of ``model`` is sharded by FSDP2 (``fully_shard``)."""
    return any(is_fsdp_module(m) for m in model.modules())


def reshard(model: nn.Module) -> nn.Module:
    """Put the sharded (DTensor) parameters back on every FSDP module of ``model``.

    FSDP2 registers the gathered, plain-tensor parameters on a module between its forward
    and its backward (always for a unit that does not reshard after forward). A forward
    without backward (evaluation, PreciseBN) leaves them there; code that reads or writes
    the parameters outside a step calls this first. Without FSDP it does nothing.

    Args:
        model (nn.Module): the model.

    Returns:
        nn.Module: ``model``.
    """
    for module in model.modules():
        if is_fsdp_module(module):
            module.reshard()
    return model


def full_model_state_dict(model: nn.Module) -> Dict[str, Any]:
    """The model's full state dict, in host memory on rank 0 (collective when sharded).

    Args:
        model (nn.Module): the model (FSDP-sharded or not; never a DDP wrapper).

    Returns:
        dict: parameter and buffer names to tensors; empty on ranks other than 0 when sharded.
    """
    if not is_sharded(model):
        return model.state_dict()
    return _state_dict_api().get_model_state_dict(reshard(model), options=_save_options())


def load_full_model_state_dict(
    model: nn.Module, state: Mapping[str, Any], strict: bool = True
) -> Any:
    """Load a full state dict (given on every rank) into ``model``, sharding it if needed.

    Args:
        model (nn.Module): the model.
        state (Mapping): a full state dict, as :func:`full_model_state_dict` returns.
        strict (bool): whether missing or unexpected keys are an error. Default: True.

    Returns:
        NamedTuple: ``missing_keys`` and ``unexpected_keys``, as ``load_state_dict``.
    """
    if not is_sharded(model):
        return model.load_state_dict(state, strict=strict)
    api = _state_dict_api()
    options = api.StateDictOptions(full_state_dict=True, strict=strict)
    return api.set_model_state_dict(reshard(model), dict(state), options=options)


def full_optimizer_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer) -> Dict[str, Any]:
    """The optimizer's full state dict, on rank 0 in host memory when ``model`` is sharded.

    Under FSDP the state is keyed by parameter name (not by index), as
    ``get_optimizer_state_dict`` writes it.
    """
    if not is_sharded(model):
        return optimizer.state_dict()
    return _state_dict_api().get_optimizer_state_dict(model, optimizer, options=_save_options())


def load_full_optimizer_state_dict(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: Dict[str, Any]
) -> None:
    """Load :func:`full_optimizer_state_dict`'s result (given on every rank)."""
    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    api = _state_dict_api()
    api.set_optimizer_state_dict(
        model, optimizer, state, options=api.StateDictOptions(full_state_dict=True)
    )


class FullStateModel(nn.Module):
    """A view of a model whose ``state_dict`` / ``load_state_dict`` are the full ones.

    Give it to a :class:`~engine_lib.checkpoint.Checkpointer` as its model: the
    checkpointer's other uses of the model (its parameters, for the finiteness check before
    a save) reach the real model, held as ``module``.

    Args:
        module (nn.Module): the (possibly FSDP-sharded) model.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    # The overrides take what Module's methods take, but always save and load the full state
    # (no ``destination`` to fill, no ``assign``): their signatures differ on purpose.
    def state_dict(self, *args: Any, **kwargs: Any) -> Dict[str, Any]:  # type: ignore[override]
        """The full state dict (see :func:`full_model_state_dict`)."""
        return full_model_state_dict(self.module)

    def load_state_dict(  # type: ignore[override]
        self, state_dict: Mapping[str, Any], strict: bool = True, **_: Any
    ) -> Any:
        """Load a full state dict (see :func:`load_full_model_state_dict`)."""
        return load_full_model_state_dict(self.module, state_dict, strict=strict)

    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[Tuple[str, Any]]:
        """The model's parameters, as this rank's local shards when they are DTensors.

        The checks a checkpointer makes before a save (e.g. that every weight is finite)
        then run on local tensors, with no collective; each rank checks its own shard.
        """
        reshard(self.module)
        prefix = "module."
        for name, param in super().named_parameters(*args, **kwargs):
            name = name[len(prefix) :] if name.startswith(prefix) else name
            yield name, local_tensor(param)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Call the model."""
        return self.module(*args, **kwargs)


class FullStateOptimizer:
    """An optimizer checkpointable whose state is the full one (see :class:`FullStateModel`).

    Args:
        model (nn.Module): the model whose parameters ``optimizer`` steps.
        optimizer (torch.optim.Optimizer): the optimizer.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model = model
        self.optimizer = optimizer

    def state_dict(self) -> Dict[str, Any]:
        """The full optimizer state (see :func:`full_optimizer_state_dict`)."""
        return full_optimizer_state_dict(self.model, self.optimizer)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Load a full optimizer state (see :func:`load_full_optimizer_state_dict`)."""
        load_full_optimizer_state_dict(self.model, self.optimizer, state)
