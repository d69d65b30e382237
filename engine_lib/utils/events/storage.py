"""The per-iteration metrics store of a training run: :class:`EventStorage`."""

import itertools
import logging
import numbers
import statistics
import threading
from collections import defaultdict
from contextlib import contextmanager
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    SupportsFloat,
    Tuple,
    cast,
)

import torch
from fvcore.common.history_buffer import HistoryBuffer

from engine_lib.utils.errors import UnknownNameError

__all__ = ["EventStorage", "get_event_storage", "has_event_storage"]

logger = logging.getLogger(__name__)

_CURRENT_STORAGE_STACK: List["EventStorage"] = []
# Storages bound to one thread only (the writer thread binds each snapshot it writes); they
# come before the process-wide stack, in that thread alone.
_THREAD_STORAGE = threading.local()


class _HistoryBuffer(HistoryBuffer):
    """fvcore's ``HistoryBuffer`` with a faster windowed median and mean.

    fvcore converts the window to a numpy array for each call, which costs ~15 us even for
    the 20 values a writer asks about; the writers call these for every smoothed metric at
    every write, so in a short iteration that conversion alone was a measurable share of the
    trainer's overhead. Pure-Python ``statistics`` is ~10x faster at these sizes and returns
    the same values.
    """

    # fvcore's attributes, typed for the methods below.
    _data: List[Tuple[float, int]]
    _max_length: int
    _count: int
    _global_avg: float

    def median(self, window_size: int) -> float:
        return statistics.median([x[0] for x in self._data[-window_size:]])

    def avg(self, window_size: int) -> float:
        window = self._data[-window_size:]
        return sum(x[0] for x in window) / len(window)

    def extend(self, values: Sequence[float], iterations: Sequence[int]) -> None:
        """``update(value, iteration)`` for each pair, in order, with one call."""
        self._data.extend(zip(values, iterations))
        excess = len(self._data) - self._max_length
        if excess > 0:
            del self._data[:excess]
        # fvcore's running mean, step by step, so that the average is the same to the bit.
        count, mean = self._count, self._global_avg
        for value in values:
            count += 1
            mean += (value - mean) / count
        self._count, self._global_avg = count, mean


def get_event_storage() -> "EventStorage":
    """Return the innermost open :class:`EventStorage`.

    Raises:
        RuntimeError: outside any ``with EventStorage(...)`` block.
    """
    bound = getattr(_THREAD_STORAGE, "stack", None)
    if bound:
        return bound[-1]
    if not _CURRENT_STORAGE_STACK:
        raise RuntimeError(
            "get_event_storage() was called outside an EventStorage: call it during training "
            "(the trainer opens one in train()) or inside 'with EventStorage():'."
        )
    return _CURRENT_STORAGE_STACK[-1]


def has_event_storage() -> bool:
    """Return True inside a ``with EventStorage(...)`` block."""
    return bool(_CURRENT_STORAGE_STACK) or bool(getattr(_THREAD_STORAGE, "stack", None))


def _tail_copy(buffer: HistoryBuffer, length: int) -> _HistoryBuffer:
    """A new buffer with the last ``length`` values of ``buffer`` and its global average."""
    copy = _HistoryBuffer(buffer._max_length)
    copy._data = buffer._data[-length:]
    copy._count = buffer._count
    copy._global_avg = buffer._global_avg
    return copy


class EventStorage:
    """Per-iteration metrics of a training run: scalar histories, images and histograms.

    Used as a context manager, which makes it the one :func:`get_event_storage` returns.

    Example:
        >>> with EventStorage(start_iter=0) as storage:
        ...     storage.put_scalar("loss", 0.5)
        ...     storage.step()
    """

    def __init__(self, start_iter: int = 0) -> None:
        """
        Args:
            start_iter (int): the iteration training starts (or resumes) at. Default: 0.
        """
        self._history: Dict[str, _HistoryBuffer] = defaultdict(_HistoryBuffer)
        self._smoothing_hints: Dict[str, bool] = {}
        self._latest_scalars: Dict[str, Tuple[float, int]] = {}
        self._iter = int(start_iter)
        self._start_iter = int(start_iter)
        self._prefix = ""
        self._images: List[Tuple[str, torch.Tensor, int]] = []
        self._histograms: List[Dict[str, Any]] = []
        self._flush_callbacks: List[Callable[[], None]] = []
        # Puts whose values are still on their way from the device: fn(storage, check).
        self._deferred_puts: List[Callable[[EventStorage, bool], None]] = []
        # (put count, window_size, latest_with_smoothing_hint(window_size)), reused until the
        # next put: the writers of one write all ask for it. The count comes from a C counter,
        # so puts from two threads never share a number.
        self._put_counter = itertools.count(1)
        self._puts = 0
        self._smoothed: Optional[Tuple[int, int, Dict[str, Tuple[float, int]]]] = None

    @property
    def iter(self) -> int:
        """int: the current iteration; the trainer sets it before each step."""
        return self._iter

    @iter.setter
    def iter(self, value: int) -> None:
        self._iter = int(value)

    @property
    def start_iter(self) -> int:
        """int: the iteration this storage was created at (read-only)."""
        return self._start_iter

    def step(self) -> None:
        """Advance the iteration by one."""
        self._iter += 1

    def put_scalar(
        self,
        name: str,
        value: Any,
        smoothing_hint: bool = True,
        cur_iter: Optional[int] = None,
    ) -> None:
        """Record a scalar for the current (or a given) iteration.

        Args:
            name (str): the metric name; prefixed by the active :meth:`name_scope`.
            value (float): a python or numpy number. A one-element tensor is accepted but
                costs a device-to-host sync: the trainer passes floats.
            smoothing_hint (bool): whether writers should report a windowed median rather than
                the latest value. Must be the same every time for a name. Default: True.
            cur_iter (int, optional): the iteration; default: :attr:`iter`.

        Raises:
            TypeError: if ``value`` is not a number.
            ValueError: if ``smoothing_hint`` differs from the earlier one for this name.
        """
        name = self._prefix + name
        # Checked and converted unless it is a float already, as what the trainer and the
        # hooks put at every iteration is (this method is on the per-iteration path).
        if type(value) is not float:
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if not isinstance(value, numbers.Number) or isinstance(value, complex):
                raise TypeError(
                    f"put_scalar({name!r}) needs a real number, got {type(value).__name__}: "
                    f"{value!r}"
                )
            # numbers.Number declares no __float__; every real one (complex is refused above)
            # has it.
            value = float(cast(SupportsFloat, value))
        previous_hint = self._smoothing_hints.setdefault(name, smoothing_hint)
        if previous_hint != smoothing_hint:
            raise ValueError(
                f"Scalar {name!r} was put with smoothing_hint={previous_hint} before and "
                f"smoothing_hint={smoothing_hint} now; use one value per name."
            )
        cur_iter = self._iter if cur_iter is None else int(cur_iter)
        # No lock on this per-iteration path: scalars may be put from a background thread
        # (SimpleTrainer's async_write_metrics) while the writers read, so the readers below
        # work on copies, which the GIL makes atomic; the two threads put different names.
        self._history[name].update(value, cur_iter)
        self._latest_scalars[name] = (value, cur_iter)
        self._puts = next(self._put_counter)

    def put_scalar_series(
        self,
        name: str,
        values: Sequence[float],
        iterations: Sequence[int],
        smoothing_hint: bool = True,
    ) -> None:
        """Record one scalar's values at several iterations, as :meth:`put_scalar` would one
        at a time, in order.

        The trainer puts the losses it gathers every ``gather_metric_period`` iterations
        this way: one call per name instead of one per name and iteration.

        Args:
            name (str): the metric name; prefixed by the active :meth:`name_scope`.
            values (sequence[float]): python floats.
            iterations (sequence[int]): the iteration of each value.
            smoothing_hint (bool): as in :meth:`put_scalar`. Default: True.

        Raises:
            TypeError: if a value is not a python float.
            ValueError: if the lengths differ, or ``smoothing_hint`` differs from the earlier
                one for this name.
        """
        name = self._prefix + name
        if len(values) != len(iterations):
            raise ValueError(
                f"put_scalar_series({name!r}) got {len(values)} values for "
                f"{len(iterations)} iterations."
            )
        if not values:
            return
        if set(map(type, values)) != {float}:  # one pass in C: this is a per-gather path
            value = next(v for v in values if type(v) is not float)
            raise TypeError(
                f"put_scalar_series({name!r}) needs python floats, got "
                f"{type(value).__name__}: {value!r}"
            )
        previous_hint = self._smoothing_hints.setdefault(name, smoothing_hint)
        if previous_hint != smoothing_hint:
            raise ValueError(
                f"Scalar {name!r} was put with smoothing_hint={previous_hint} before and "
                f"smoothing_hint={smoothing_hint} now; use one value per name."
            )
        self._history[name].extend(values, iterations)
        self._latest_scalars[name] = (values[-1], int(iterations[-1]))
        self._puts = next(self._put_counter)

    def put_scalars(
        self, *, smoothing_hint: bool = True, cur_iter: Optional[int] = None, **kwargs: Any
    ) -> None:
        """Record several scalars at once, e.g. ``put_scalars(loss_cls=0.3, loss_box=0.1)``.

        Args:
            smoothing_hint (bool): as in :meth:`put_scalar`, for all of them. Default: True.
            cur_iter (int, optional): as in :meth:`put_scalar`.
            **kwargs: name=value pairs.
        """
        for name, value in kwargs.items():
            self.put_scalar(name, value, smoothing_hint=smoothing_hint, cur_iter=cur_iter)

    def put_image(self, img_name: str, img_tensor: torch.Tensor) -> None:
        """Queue an image for TensorBoard, shown at the current iteration.

        Args:
            img_name (str): the tag; prefixed by the active :meth:`name_scope`.
            img_tensor (Tensor): a CHW float tensor in [0, 1] (or uint8 in [0, 255]).
        """
        self._images.append((self._prefix + img_name, img_tensor, self._iter))

    def put_histogram(self, hist_name: str, hist_tensor: torch.Tensor, bins: int = 1000) -> None:
        """Queue the histogram of a tensor's values for TensorBoard.

        Args:
            hist_name (str): the tag; prefixed by the active :meth:`name_scope`.
            hist_tensor (Tensor): any tensor; its values are binned.
            bins (int): the number of equal-width bins. Default: 1000.
        """
        values = hist_tensor.detach().flatten().float().cpu()
        low, high = values.min().item(), values.max().item()
        if low == high:  # histc needs a non-empty range
            low, high = low - 0.5, high + 0.5
        counts = torch.histc(values, bins=bins, min=low, max=high)
        edges = torch.linspace(low, high, steps=bins + 1)
        self._histograms.append(
            {
                "tag": self._prefix + hist_name,
                "min": low,
                "max": high,
                "num": values.numel(),
                "sum": values.sum().item(),
                "sum_squares": (values**2).sum().item(),
                "bucket_limits": edges[1:].tolist(),
                "bucket_counts": counts.tolist(),
                "global_step": self._iter,
            }
        )

    def history(self, name: str) -> HistoryBuffer:
        """Return the :class:`HistoryBuffer` of scalar ``name``.

        Raises:
            UnknownNameError: (a ``KeyError``) if no scalar of that name was put.
        """
        buffer = self._history.get(name)
        if buffer is None:
            known = ", ".join(sorted(self._history)) or "(none yet)"
            raise UnknownNameError(
                f"No scalar named {name!r} in the EventStorage; it has: {known}."
            )
        return buffer

    def histories(self) -> Dict[str, HistoryBuffer]:
        """Return every scalar's :class:`HistoryBuffer`, by name."""
        return dict(self._history)

    def latest(self) -> Dict[str, Tuple[float, int]]:
        """Return ``{name: (latest value, iteration it was put at)}`` for every scalar."""
        return dict(self._latest_scalars)

    def count_samples(self, name: str, window_size: int = 20) -> int:
        """Return how many values of ``name`` were put in its last ``window_size`` iterations.

        The window ends at the iteration of the scalar's latest value. A scalar put every
        iteration has ``window_size`` of them (fewer at the start); one put every ``k``
        iterations (e.g. losses gathered every ``k`` iterations in detectron2's way) has
        about ``window_size / k``, so windowed statistics cover the same iterations either way.

        Args:
            name (str): the scalar.
            window_size (int): the window, in iterations. Default: 20.

        Raises:
            UnknownNameError: (a ``KeyError``) if no scalar of that name was put.
        """
        values = self.history(name).values()
        if not values:
            return 0
        first_in_window = values[-1][1] - window_size
        # O(1) answers for the common cases (every writer asks for every smoothed scalar at
        # every write): all values inside the window, or one value per iteration in it.
        if values[0][1] > first_in_window:
            return len(values)
        if len(values) >= window_size and values[-window_size][1] == first_in_window + 1:
            return window_size
        count = 0
        for _, itr in reversed(values):
            if itr <= first_in_window:
                break
            count += 1
        return count

    def latest_with_smoothing_hint(self, window_size: int = 20) -> Dict[str, Tuple[float, int]]:
        """Like :meth:`latest`, but a smoothed scalar reports its median over a window.

        Args:
            window_size (int): the median covers the values put in this many most recent
                iterations (see :meth:`count_samples`). Default: 20.
        """
        puts, cached = self._puts, self._smoothed
        if cached is not None and cached[:2] == (puts, window_size):
            return dict(cached[2])
        result = {}
        for name, (value, itr) in list(self._latest_scalars.items()):
            if self._smoothing_hints[name]:
                buffer = self._history[name]
                value = float(buffer.median(self.count_samples(name, window_size)))
            result[name] = (value, itr)
        self._smoothed = (puts, window_size, result)
        return dict(result)

    def smoothing_hints(self) -> Dict[str, bool]:
        """Return ``{name: smoothing_hint}`` as given to :meth:`put_scalar`."""
        return dict(self._smoothing_hints)

    def images(self) -> List[Tuple[str, torch.Tensor, int]]:
        """Return the queued images as ``(name, tensor, iteration)``."""
        return list(self._images)

    def histogram_data(self) -> List[Dict[str, Any]]:
        """Return the queued histograms as keyword arguments of TensorBoard's
        ``SummaryWriter.add_histogram_raw``."""
        return list(self._histograms)

    def clear_images(self) -> None:
        """Drop the queued images (the TensorBoard writer calls it once it wrote them)."""
        self._images = []

    def clear_histograms(self) -> None:
        """Drop the queued histograms (the TensorBoard writer calls it once it wrote them)."""
        self._histograms = []

    def snapshot(self, history_length: int = 1000) -> "EventStorage":
        """Return a copy of the storage as it is now, for writers on another thread.

        The copy has the iteration, the latest scalars, the smoothing hints, the last
        ``history_length`` values of each scalar's history (with its global average), and
        takes the queued images and histograms with it (the writers are their only
        consumers). Later puts into this storage do not reach it, and what a writer puts
        into it (e.g. the console printer's "eta_seconds") stays there. Costs a few
        microseconds per scalar; call it on the thread that puts the scalars.

        Args:
            history_length (int): how many of each history's latest values to copy; writers
                that read further back see only these. Default: 1000.

        Returns:
            EventStorage: the copy, with the same ``iter`` and ``start_iter``.
        """
        copy = EventStorage(self._start_iter)
        copy._iter = self._iter
        copy._history.update(
            (name, _tail_copy(buffer, history_length)) for name, buffer in self._history.items()
        )
        copy._smoothing_hints = dict(self._smoothing_hints)
        copy._latest_scalars = dict(self._latest_scalars)
        copy._deferred_puts = list(self._deferred_puts)
        copy._images, self._images = self._images, []
        copy._histograms, self._histograms = self._histograms, []
        return copy

    def put_deferred(self, put: Callable[["EventStorage", bool], None]) -> None:
        """Queue puts whose values are still being copied from the device.

        ``put(storage, check)`` waits for the copy and puts the values into ``storage``;
        with ``check`` it may raise (e.g. ``FloatingPointError`` for a non-finite loss).
        :meth:`put_deferred_values` calls the queued puts; a :meth:`snapshot` carries them
        and the writer thread puts them into the snapshot (without ``check``) before writing,
        so writers see values the training thread has not waited for yet.

        Args:
            put (callable): ``put(storage, check)``.
        """
        self._deferred_puts.append(put)

    def put_deferred_values(self, check: bool = True) -> None:
        """Wait for the values queued by :meth:`put_deferred` and put them, in order.

        Args:
            check (bool): passed to each put. Default: True.
        """
        puts, self._deferred_puts = self._deferred_puts, []
        for put in puts:
            put(self, check)

    def add_flush_callback(self, callback: Callable[[], None]) -> None:
        """Have :meth:`flush` call ``callback`` (a background writer's wait), in order added.

        Args:
            callback (callable): takes no argument; may raise a writer's error.
        """
        self._flush_callbacks.append(callback)

    def flush(self) -> None:
        """Wait until what background writers took from this storage is written.

        ``SimpleTrainer.flush_metrics`` calls it, so hooks that save a checkpoint or
        evaluate find every earlier write done (e.g. in ``metrics.json``).

        Raises:
            Exception: the error of a background write, raised by its callback.
        """
        for callback in self._flush_callbacks:
            callback()

    @contextmanager
    def bound_to_this_thread(self) -> Iterator["EventStorage"]:
        """Make this storage the one :func:`get_event_storage` returns, in this thread only.

        The writer thread binds each snapshot while it writes it; other threads (the
        training thread) keep seeing their own storage.
        """
        stack = _THREAD_STORAGE.__dict__.setdefault("stack", [])
        stack.append(self)
        try:
            yield self
        finally:
            stack.pop()

    @contextmanager
    def name_scope(self, name: str) -> Iterator[None]:
        """Prefix the names put inside the block with ``name/`` (nested scopes concatenate)."""
        old_prefix = self._prefix
        self._prefix = old_prefix + name.rstrip("/") + "/"
        try:
            yield
        finally:
            self._prefix = old_prefix

    def __enter__(self) -> "EventStorage":
        _CURRENT_STORAGE_STACK.append(self)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        assert _CURRENT_STORAGE_STACK[-1] is self, "EventStorage blocks must be nested"
        _CURRENT_STORAGE_STACK.pop()
