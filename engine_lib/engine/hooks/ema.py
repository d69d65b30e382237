"""Exponential moving average (EMA) of the model's weights."""

import contextlib
import logging
from typing import Any, Dict, Iterator, List, Optional

import torch
from torch import nn

from engine_lib.checkpoint.dist_types import is_dtensor, local_tensor
from engine_lib.checkpoint.state import reshard
from engine_lib.utils.errors import ConfigError

from ..train_loop import HookBase

__all__ = ["EMA"]

logger = logging.getLogger(__name__)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _named_tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
    # Looked up at every use: buffers may be replaced by new tensors (PreciseBN does so).
    tensors: Dict[str, torch.Tensor] = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    return tensors


def _like(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``value`` (a whole tensor) sharded like ``target`` when that is a DTensor."""
    if not is_dtensor(target):
        return value
    from torch.distributed.tensor import distribute_tensor  # loaded, as target is a DTensor

    # Every rank holds the whole value: each takes its own shard, with no communication.
    return distribute_tensor(
        value.to(target.device), target.device_mesh, target.placements, src_data_rank=None
    )


class EMA(HookBase):
    """Keep an exponential moving average of the model's weights, updated after each step.

    ``average = decay * average + (1 - decay) * weight`` for every floating-point parameter
    and buffer, held in float32 whatever the model's dtype, and updated on the device with
    ``torch._foreach_lerp_``: no host sync. Under FSDP the averages are sharded like the
    parameters (DTensors), and the hook's state holds them whole. Other buffers (e.g.
    BatchNorm's batch counter) are copied. The average starts from the model's weights when
    training starts (so weights loaded after the hook was built are the starting point),
    unless a checkpoint restored it: the averaged weights are the hook's state.

    Evaluate with the averaged weights inside :meth:`apply_to`, e.g. in the function given to
    an :class:`EvalHook`. Register it before the hooks that save or evaluate.

    Args:
        model (nn.Module): the model trained (a DDP wrapper is unwrapped).
        decay (float): the weight of the old average, in [0, 1). Default: 0.999.

    Raises:
        ConfigError: if ``decay`` is outside [0, 1).

    Example:
        >>> ema = EMA(model, decay=0.999)
        >>> def evaluate():
        ...     with ema.apply_to(model):
        ...         return test(model)
        >>> trainer.register_hooks([ema, EvalHook(1000, evaluate)])
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"EMA decay must be in [0, 1), got {decay!r}")
        self._model = _unwrap(model)
        self._decay = float(decay)
        self._average: Optional[Dict[str, torch.Tensor]] = None
        self._float_names: List[str] = []
        self._other_names: List[str] = []
        self.num_updates = 0

    def _start_average(self) -> None:
        """Start the average from the model's current weights."""
        live = _named_tensors(reshard(self._model))
        self._average = {
            name: t.detach().to(torch.float32 if t.is_floating_point() else t.dtype, copy=True)
            for name, t in live.items()
        }
        self._float_names = [name for name, t in live.items() if t.is_floating_point()]
        self._other_names = [name for name, t in live.items() if not t.is_floating_point()]

    def before_train(self) -> None:
        if self._average is None:
            self._start_average()

    @torch.no_grad()
    def after_step(self) -> None:
        # A forward without backward since the last step (an evaluation) may have left FSDP
        # parameters gathered: average the shards.
        assert self._average is not None, "before_train starts the average"
        live = _named_tensors(reshard(self._model))
        # Sharded (DTensor) parameters and plain buffers in one foreach call: on the local
        # shards, which alias the DTensors' storage.
        current = [local_tensor(live[name].detach()) for name in self._float_names]
        current = [t if t.dtype == torch.float32 else t.float() for t in current]
        average = [local_tensor(self._average[name]) for name in self._float_names]
        torch._foreach_lerp_(average, current, 1.0 - self._decay)
        for name in self._other_names:
            self._average[name].copy_(live[name])
        self.num_updates += 1

    @property
    def averaged_weights(self) -> Dict[str, torch.Tensor]:
        """dict[str, Tensor]: the averaged parameters and buffers, by name (float32)."""
        if self._average is None:
            raise RuntimeError("EMA has no average yet: it starts when training starts.")
        return dict(self._average)

    @contextlib.contextmanager
    def apply_to(self, model: Optional[nn.Module] = None) -> Iterator[nn.Module]:
        """Swap the averaged weights into ``model`` for the ``with`` block, then swap back.

        Args:
            model (nn.Module, optional): a model with the same parameter names; default: the
                model this hook averages.

        Yields:
            nn.Module: the (unwrapped) model holding the averaged weights.

        Raises:
            RuntimeError: before training started (no average yet).
            KeyError: if ``model`` lacks some averaged tensor.
        """
        average = self.averaged_weights
        model = self._model if model is None else _unwrap(model)
        live = _named_tensors(reshard(model))
        missing = [name for name in average if name not in live]
        if missing:
            raise KeyError(f"EMA.apply_to: the model has no tensors named {missing[:5]}")
        with torch.no_grad():
            backup = {name: live[name].detach().clone() for name in average}
            for name, value in average.items():
                live[name].copy_(value)
        try:
            yield model
        finally:
            # The block's forward may have left gathered copies of the averaged weights.
            reshard(model)
            with torch.no_grad():
                for name, value in backup.items():
                    live[name].copy_(value)

    def state_dict(self) -> Dict[str, Any]:
        # Under FSDP the averages are DTensor shards, like the parameters: a checkpoint holds
        # them whole (gathered on every rank: call it on all ranks, as checkpointers do).
        weights = {} if self._average is None else dict(self._average)
        weights = {name: t.full_tensor() if is_dtensor(t) else t for name, t in weights.items()}
        return {"num_updates": self.num_updates, "weights": weights}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        weights = state["weights"]
        self.num_updates = int(state["num_updates"])
        if not weights:  # saved before training started
            self._average = None
            return
        self._start_average()
        assert self._average is not None
        unknown = sorted(set(weights) - set(self._average))
        missing = sorted(set(self._average) - set(weights))
        if unknown:
            logger.warning("EMA: the checkpoint averages tensors the model lacks: %s", unknown)
        if missing:
            logger.warning("EMA: no saved average for %s; starting from the weights.", missing)
        with torch.no_grad():
            for name, value in weights.items():
                if name in self._average:
                    self._average[name].copy_(_like(value, self._average[name]))
