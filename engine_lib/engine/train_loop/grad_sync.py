"""``skip_grad_sync``: no gradient synchronisation on the first micro-batches of a step."""

import contextlib
import logging
import sys
from typing import Any, Iterator

from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["skip_grad_sync"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def skip_grad_sync(model: nn.Module) -> Iterator[None]:
    """Within the block, ``backward()`` accumulates local gradients without reducing them.

    With gradient accumulation only the last micro-batch's backward needs to reduce the
    gradients over the ranks; each wrapper has its own switch: DDP's ``no_sync()``, FSDP2's
    ``set_requires_gradient_sync(False)`` (which keeps the unsharded gradients until a
    backward with synchronisation). A model without either is left as it is.

    Args:
        model (nn.Module): the model the trainer steps (DDP wrapper, FSDP module or plain).
    """
    if isinstance(model, DistributedDataParallel):
        with model.no_sync():
            yield
    elif _is_fsdp(model):
        fsdp_model: Any = model  # an FSDPModule, a class not imported here (see _is_fsdp)
        fsdp_model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            fsdp_model.set_requires_gradient_sync(True)
    else:
        yield


def _is_fsdp(model: nn.Module) -> bool:
    # torch.distributed.fsdp costs ~0.7 s to import: a model can only be sharded once something
    # (engine_lib.engine.parallel) imported it, so it is not imported here for the check.
    fsdp = sys.modules.get("torch.distributed.fsdp")
    return fsdp is not None and isinstance(model, fsdp.FSDPModule)
