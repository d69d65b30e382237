"""``create_ddp_model``: wrap a model in DistributedDataParallel when the job has several
processes."""

import inspect
import logging
from typing import Any

from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from engine_lib.utils import comm

__all__ = ["create_ddp_model"]

logger = logging.getLogger(__name__)

# Newer torch renamed ``broadcast_buffers`` to ``forward_sync_buffers`` (and warns on the old
# name); the new flag still copies rank 0's buffers once, when the wrapper is built.
_FORWARD_SYNC_FLAG = (
    "forward_sync_buffers"
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else "broadcast_buffers"
)


def create_ddp_model(
    model: nn.Module,
    *,
    fp16_compression: bool = False,
    find_unused_parameters: bool = False,
    broadcast_buffers: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Wrap ``model`` in :class:`DistributedDataParallel`; return it unchanged in one process.

    The wrapper averages gradients over all processes during ``backward()`` and, when it is
    built, copies rank 0's parameters to every rank, so all replicas start equal whatever
    each rank's seed was.

    Args:
        model (nn.Module): the model, already on its device. On CUDA, ``device_ids`` is its
            device, which :func:`~engine_lib.engine.launch.launch` set to the local rank.
        fp16_compression (bool): all-reduce gradients as float16 (half the traffic, a little
            less precision; worth it across machines). Default: False.
        find_unused_parameters (bool): tolerate parameters that get no gradient in an
            iteration, at the cost of a graph traversal per step
            (``cfg.MODEL.DDP.FIND_UNUSED_PARAMETERS``). Default: False.
        broadcast_buffers (bool): copy rank 0's buffers (e.g. BatchNorm statistics) to the
            other ranks at every forward. Default: False: each rank keeps statistics of its
            own data, and the copy costs a collective per forward. (Passed to DDP as
            ``forward_sync_buffers`` where torch has it.)
        **kwargs: other arguments of :class:`DistributedDataParallel`.

    Returns:
        nn.Module: the DDP wrapper, or ``model`` itself when the world size is 1.
    """
    if comm.get_world_size() == 1:
        return model
    if "device_ids" not in kwargs:
        device = next(model.parameters()).device
        if device.type == "cuda":
            kwargs["device_ids"] = [device.index]
    if "forward_sync_buffers" not in kwargs:
        kwargs[_FORWARD_SYNC_FLAG] = broadcast_buffers
    ddp = DistributedDataParallel(model, find_unused_parameters=find_unused_parameters, **kwargs)
    if fp16_compression:
        ddp.register_comm_hook(state=None, hook=default_hooks.fp16_compress_hook)
        logger.info("DDP all-reduces gradients as float16.")
    return ddp
