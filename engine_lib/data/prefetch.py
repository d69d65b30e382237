"""Move the next batch to the device while the current step runs: :class:`DevicePrefetcher`."""

import logging
from typing import Any, Iterable, Iterator, Optional, Sized, Union, cast

import torch

__all__ = ["DevicePrefetcher", "move_to_device"]

logger = logging.getLogger(__name__)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Return ``batch`` with every tensor in it (in lists, tuples and dicts) on ``device``.

    The copies are non-blocking: from pinned memory (``pin_memory=True`` in the loader) they
    overlap whatever runs on the device.

    Args:
        batch: a tensor, or lists / tuples / dicts of them and of other values.
        device (torch.device): where the tensors go.
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(value, device) for value in batch)
    return batch


def _record_stream(batch: Any, stream: "torch.cuda.Stream") -> None:
    """Tell the caching allocator that ``stream`` uses the batch's tensors (made on another)."""
    if isinstance(batch, torch.Tensor):
        batch.record_stream(stream)
    elif isinstance(batch, dict):
        for value in batch.values():
            _record_stream(value, stream)
    elif isinstance(batch, (list, tuple)):
        for value in batch:
            _record_stream(value, stream)


class DevicePrefetcher:
    """Iterate over a loader one batch ahead, copying that batch to the device meanwhile.

    Each iterator draws one batch from the loader before the one it returns is used, and
    starts its copy to ``device`` on a side CUDA stream; the step that uses the returned
    batch waits for its copy only. The copy thus overlaps the previous step. On a CPU device
    the batches pass through unchanged (still one ahead).

    Exact resume is unaffected when the sampler position counts the samples the trainer
    consumed (``SimpleTrainer.samples_consumed`` counts the batches it received), not those
    drawn from the loader: the batch drawn ahead is drawn again after a resume.

    Args:
        loader (Iterable): yields batches (lists of dicts of tensors, tuples, ...); give the
            ``DataLoader`` ``pin_memory=True`` for truly asynchronous copies.
        device (str or torch.device): where the batches go.

    Example:
        >>> for batch in DevicePrefetcher(loader, "cuda"):
        ...     losses = model(batch)
    """

    def __init__(self, loader: Iterable, device: Union[str, torch.device]) -> None:
        self.loader = loader
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(cast(Sized, self.loader))  # TypeError as from len(loader) if it has none

    def __iter__(self) -> Iterator:
        stream: Optional[torch.cuda.Stream] = None
        if self.device.type == "cuda":
            stream = torch.cuda.Stream(self.device)
        source = iter(self.loader)
        ahead = self._draw(source, stream)
        while ahead is not None:
            batch, event = ahead
            if stream is not None:
                current = torch.cuda.current_stream(self.device)
                current.wait_event(event)
                _record_stream(batch, current)
            # Start the next copy before handing this batch over: it overlaps the step.
            ahead = self._draw(source, stream)
            yield batch

    def _draw(self, source: Iterator, stream: Optional["torch.cuda.Stream"]) -> Optional[tuple]:
        try:
            batch = next(source)
        except StopIteration:
            return None
        if stream is None:
            return move_to_device(batch, self.device), None
        with torch.cuda.stream(stream):
            batch = move_to_device(batch, self.device)
            event = torch.cuda.Event()
            event.record(stream)
        return batch, event
