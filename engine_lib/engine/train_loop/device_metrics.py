"""Losses kept on the device between metric gathers, and their reduction over ranks."""

import logging
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist

from engine_lib.utils import comm
from engine_lib.utils.events import BackgroundRunner, EventStorage

__all__ = ["DeviceMetrics"]

logger = logging.getLogger(__name__)


class DeviceMetrics:
    """Per-iteration losses held on the device until a flush copies them to the host at once.

    Each iteration only keeps references to its detached loss tensors; a flush stacks them,
    reduces them over ranks (one collective) and copies them to the host (one copy), however
    many iterations it covers. Each value is put into the storage at its own iteration, so the
    histories are the same as if they had been put at every step.

    With a ``background`` runner, the collective still runs on the calling (training) thread,
    where every rank issues its collectives in the same order, but the host copy (the wait for
    the device), the finiteness check and the storage puts run on the background thread.

    Args:
        background (BackgroundRunner, optional): where to do the host half of a flush;
            None: on the calling thread.
    """

    def __init__(self, background: Optional[BackgroundRunner] = None) -> None:
        # (iteration, loss names, detached losses in the same order, data time in seconds)
        self._pending: List[Tuple[int, Tuple[str, ...], List[torch.Tensor], float]] = []
        self._background = background

    def append(
        self, iteration: int, names: Tuple[str, ...], losses: List[torch.Tensor], data_time: float
    ) -> None:
        self._pending.append((iteration, names, losses, data_time))

    def flush(self, storage: EventStorage, wait: bool = True, defer: bool = False) -> None:
        """Put the pending losses (and ``total_loss``, ``data_time``) into ``storage``.

        Args:
            storage (EventStorage): where the values go.
            wait (bool): with a background runner, wait until every earlier flush has put
                its values (and raise its error); otherwise only raise the errors of flushes
                that already finished. Default: True.
            defer (bool): do not wait for the device: start the host copy (non-blocking,
                into pinned memory on CUDA, with an event) and hand it to the storage
                (:meth:`EventStorage.put_deferred`); it is put into the storage at the next
                flush, one period later, when the copy is long done; the writer thread puts
                it into its snapshot meanwhile. Ignored with a background runner.
                Default: False.

        Raises:
            FloatingPointError: if a loss is infinite or NaN, naming the earliest such
                iteration; raised on every rank because the values are reduced first.
        """
        defer = defer and self._background is None
        # Values of an earlier deferred flush go in first: the storage stays in order.
        try:
            storage.put_deferred_values()
        except FloatingPointError:
            # The earliest non-finite loss is the one to report; the later ones still go
            # into the storage, unchecked, so that nothing is left for a later flush.
            self._flush_pending(storage, defer=False, check=False)
            raise
        self._flush_pending(storage, defer, check=True)
        if self._background is not None:
            if wait:
                self._background.wait()
            else:
                self._background.raise_errors()

    def _flush_pending(self, storage: EventStorage, defer: bool, check: bool) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            losses, data_times = _reduce(pending)
            meta = [(iteration, names) for iteration, names, _, _ in pending]
            if defer:
                storage.put_deferred(_HostCopy(meta, losses, data_times))
            elif self._background is None:
                _put_checked(storage, meta, losses, data_times, check)
            else:
                self._background.submit(_put, storage, meta, losses, data_times)

    def close(self) -> None:
        """Stop the background runner, if any, after its queued flushes ran."""
        if self._background is not None:
            self._background.close()


class _HostCopy:
    """Reduced losses on their way to the host: a non-blocking copy, put once it is done."""

    def __init__(self, meta: List[Tuple], losses: torch.Tensor, data_times: Any) -> None:
        self._meta = meta
        self._event = None
        if losses.is_cuda:
            # Pinned memory: the copy is truly asynchronous; the event marks its end on the
            # stream that computed the losses.
            losses = _to_pinned(losses)
            if isinstance(data_times, torch.Tensor):
                data_times = _to_pinned(data_times)
            self._event = torch.cuda.Event()
            self._event.record()
        self._losses = losses
        self._data_times = data_times

    def __call__(self, storage: EventStorage, check: bool) -> None:
        if self._event is not None:
            self._event.synchronize()
        _put_checked(storage, self._meta, self._losses, self._data_times, check)


def _put_checked(
    storage: EventStorage, meta: List[Tuple], losses: Any, data_times: Any, check: bool
) -> None:
    """:func:`_put`, which raises for a non-finite loss only with ``check``."""
    try:
        _put(storage, meta, losses, data_times)
    except FloatingPointError:
        if check:
            raise


def _to_pinned(tensor: torch.Tensor) -> torch.Tensor:
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    return host


def _put(storage: EventStorage, pending: List[Tuple], losses: Any, data_times: Any) -> None:
    """Copy the reduced values to the host and put them at their iterations."""
    losses = losses.tolist()
    if isinstance(data_times, torch.Tensor):
        data_times = data_times.tolist()
    iterations = [iteration for iteration, *_ in pending]
    names = pending[0][1]
    if all(step_names == names for _, step_names, *_ in pending):
        # Every iteration has the same losses (the usual case): one slice per name, and
        # the totals summed in C, as the loop below would sum them.
        width = len(names)
        totals = list(map(sum, zip(*[iter(losses)] * width)))
        # {name: values}, in the order the loop below puts them.
        series = {"total_loss": totals}
        if width > 1 or names[0] != "total_loss":
            series.update((name, losses[j::width]) for j, name in enumerate(names))
        for name, values in series.items():
            storage.put_scalar_series(name, values, iterations)
        storage.put_scalar_series("data_time", list(map(float, data_times)), iterations)
        bad = _first_non_finite(totals)
        if bad is not None:
            step_losses = losses[bad * width : (bad + 1) * width]
            _raise_non_finite(iterations[bad], dict(zip(names, step_losses)))
        return
    # {name: ([values], [iterations])}, filled in iteration order, then put with one call
    # per name: a period of 20 iterations is 3 puts of 20 values, not 60 puts.
    by_name: Dict[str, Tuple[List[float], List[int]]] = {}

    def add(name: str, value: float, iteration: int) -> None:
        values, its = by_name.setdefault(name, ([], []))
        values.append(value)
        its.append(iteration)

    offset, totals, loss_dicts = 0, [], []
    for (iteration, step_names, *_), data_time in zip(pending, data_times):
        values = losses[offset : offset + len(step_names)]
        offset += len(step_names)
        total = sum(values)
        # As in detectron2, "total_loss" is always there; the losses are there under their
        # own names too (detectron2 leaves a single loss out), as they always were here.
        add("total_loss", total, iteration)
        if len(step_names) > 1 or step_names[0] != "total_loss":
            for name, value in zip(step_names, values):
                add(name, value, iteration)
        add("data_time", float(data_time), iteration)
        totals.append(total)
        loss_dicts.append(dict(zip(step_names, values)))
    for name, (name_values, name_iters) in by_name.items():
        storage.put_scalar_series(name, name_values, name_iters)
    bad = _first_non_finite(totals)
    if bad is not None:
        _raise_non_finite(iterations[bad], loss_dicts[bad])


def _first_non_finite(totals: Sequence[float]) -> Optional[int]:
    """The index of the first infinite or NaN total, or None."""
    if all(map(math.isfinite, totals)):
        return None
    return next(i for i, total in enumerate(totals) if not math.isfinite(total))


def _raise_non_finite(iteration: int, loss_dict: Dict[str, float]) -> None:
    raise FloatingPointError(
        f"Loss became infinite or NaN at iteration={iteration}!\nloss_dict = {loss_dict}"
    )


def _reduce(pending: List[Tuple]) -> Tuple[torch.Tensor, Union[List[float], torch.Tensor]]:
    """All pending losses (averaged over ranks, on the device) and data times (max over ranks)."""
    tensors = [t for _, _, step_losses, _ in pending for t in step_losses]
    if any(t.dtype != torch.float32 for t in tensors):
        # bf16/fp16 losses join the float32 ones (only then: each float() is a dispatch).
        tensors = [t.float() for t in tensors]
    losses = torch.stack(tensors)
    data_times = [data_time for *_, data_time in pending]
    world_size = comm.get_world_size()
    if world_size == 1:
        return losses, data_times
    # One all_gather of [losses, data times] serves both reductions: the mean loss and the
    # slowest rank's data time, which is the one that holds the others back.
    n = losses.numel()
    packed = torch.cat([losses, torch.tensor(data_times, device=losses.device)])
    gathered = [torch.empty_like(packed) for _ in range(world_size)]
    dist.all_gather(gathered, packed)
    stacked = torch.stack(gathered)
    return stacked[:, :n].mean(dim=0), stacked[:, n:].amax(dim=0)
