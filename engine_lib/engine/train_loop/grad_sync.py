"""``skip_grad_sync``: no gradient synchronisation on the first micro-batches of a step."""

import contextlib
import logging
from typing import Any, Iterator

from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine_lib.checkpoint.dist_types import is_fsdp_module

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
    elif is_fsdp_module(model):
        fsdp_model: Any = model  # an FSDPModule, a class not imported here (see dist_types)
        fsdp_model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            fsdp_model.set_requires_gradient_sync(True)
    else:
        yield
