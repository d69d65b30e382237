"""Training metrics: the per-iteration :class:`EventStorage` and the writers that report it.

The trainer opens an ``EventStorage``; the model, hooks and the trainer put scalars (and images
and histograms for TensorBoard) into it; the writers (:class:`CommonMetricPrinter`,
:class:`JSONWriter`, :class:`TensorboardXWriter`) read it only in ``write()``, which a hook calls
every few iterations. Reading the histories is therefore confined to the writers.
"""

import functools
import json
import logging
import numbers
import os
import statistics
import time
from collections import defaultdict, deque
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from fvcore.common.history_buffer import HistoryBuffer

from engine_lib.utils.errors import UnknownNameError
from engine_lib.utils.file_io import atomic_write

__all__ = [
    "EventStorage",
    "get_event_storage",
    "has_event_storage",
    "EventWriter",
    "JSONWriter",
    "TensorboardXWriter",
    "CommonMetricPrinter",
]

logger = logging.getLogger(__name__)

_CURRENT_STORAGE_STACK: List["EventStorage"] = []


class _HistoryBuffer(HistoryBuffer):
    """fvcore's ``HistoryBuffer`` with a faster windowed median and mean.

    fvcore converts the window to a numpy array for each call, which costs ~15 us even for
    the 20 values a writer asks about; the writers call these for every smoothed metric at
    every write, so in a short iteration that conversion alone was a measurable share of the
    trainer's overhead. Pure-Python ``statistics`` is ~10x faster at these sizes and returns
    the same values.
    """

    def median(self, window_size: int) -> float:
        return statistics.median([x[0] for x in self._data[-window_size:]])

    def avg(self, window_size: int) -> float:
        window = self._data[-window_size:]
        return sum(x[0] for x in window) / len(window)


def get_event_storage() -> "EventStorage":
    """Return the innermost open :class:`EventStorage`.

    Raises:
        RuntimeError: outside any ``with EventStorage(...)`` block.
    """
    if not _CURRENT_STORAGE_STACK:
        raise RuntimeError(
            "get_event_storage() was called outside an EventStorage: call it during training "
            "(the trainer opens one in train()) or inside 'with EventStorage():'."
        )
    return _CURRENT_STORAGE_STACK[-1]


def has_event_storage() -> bool:
    """Return True inside a ``with EventStorage(...)`` block."""
    return bool(_CURRENT_STORAGE_STACK)


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
        self._history: Dict[str, HistoryBuffer] = defaultdict(_HistoryBuffer)
        self._smoothing_hints: Dict[str, bool] = {}
        self._latest_scalars: Dict[str, Tuple[float, int]] = {}
        self._iter = int(start_iter)
        self._start_iter = int(start_iter)
        self._prefix = ""
        self._images: List[Tuple[str, torch.Tensor, int]] = []
        self._histograms: List[Dict[str, Any]] = []

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
            value = float(value)
        previous_hint = self._smoothing_hints.setdefault(name, smoothing_hint)
        if previous_hint != smoothing_hint:
            raise ValueError(
                f"Scalar {name!r} was put with smoothing_hint={previous_hint} before and "
                f"smoothing_hint={smoothing_hint} now; use one value per name."
            )
        cur_iter = self._iter if cur_iter is None else int(cur_iter)
        self._history[name].update(value, cur_iter)
        self._latest_scalars[name] = (value, cur_iter)

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

    def latest_with_smoothing_hint(self, window_size: int = 20) -> Dict[str, Tuple[float, int]]:
        """Like :meth:`latest`, but a smoothed scalar reports its median over the last values.

        Args:
            window_size (int): how many recent values the median covers. Default: 20.
        """
        result = {}
        for name, (value, itr) in self._latest_scalars.items():
            if self._smoothing_hints[name]:
                value = float(self._history[name].median(window_size))
            result[name] = (value, itr)
        return result

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


class EventWriter:
    """Base class of the writers: ``write()`` reports the current storage, ``close()`` ends."""

    def write(self) -> None:
        """Report the metrics of :func:`get_event_storage`."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files and other resources; the default does nothing."""


def _kept_lines(text: str, start_iter: int) -> List[str]:
    """The complete JSON lines of ``text`` about iterations before ``start_iter``."""
    kept = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by a crash
            continue
        if isinstance(record, dict) and isinstance(record.get("iteration"), int):
            if record["iteration"] < start_iter:
                kept.append(line.strip() + "\n")
    return kept


class JSONWriter(EventWriter):
    """Append one JSON object per iteration to a file (``metrics.json``), durably.

    Each line is ``{"iteration": i, "<metric>": value, ...}`` with the metrics put at iteration
    ``i`` since the previous write (smoothed ones as their windowed median). Each write is
    flushed to the operating system, so a killed process loses nothing; the file is fsynced
    on close only, because an fsync per write costs milliseconds (a large share of a short
    iteration) and a torn last line after a power loss is dropped by the resume logic below.

    A resumed run never repeats an iteration: on its first write, if the file exists, the writer
    keeps only its complete lines about iterations before the storage's ``start_iter`` (a
    truncated last line from a crash, and the iterations the resumed run will redo, go) and
    replaces the file atomically before appending. A run that starts at iteration 0 therefore
    starts a fresh file. The file must be on a local file system (the replace is ``os.replace``).

    Read it with ``[json.loads(line) for line in open(path)]``.
    """

    def __init__(self, json_file: str, window_size: int = 20) -> None:
        """
        Args:
            json_file (str): the file, created if missing.
            window_size (int): the median window of smoothed scalars. Default: 20.
        """
        self._path = json_file
        self._window_size = window_size
        self._file: Optional[Any] = None
        self._resume_checked = False
        self._last_write = -1

    def _drop_iterations_from(self, start_iter: int) -> None:
        if not os.path.exists(self._path):
            return
        with open(self._path) as f:
            text = f.read()
        kept = _kept_lines(text, start_iter)
        if "".join(kept) == text:
            return
        with atomic_write(self._path, "w") as f:
            f.writelines(kept)
        logger.info(
            "Kept %d lines of %s, about the iterations before %d.",
            len(kept),
            self._path,
            start_iter,
        )

    def write(self) -> None:
        storage = get_event_storage()
        by_iter: Dict[int, Dict[str, float]] = defaultdict(dict)
        for name, (value, itr) in storage.latest_with_smoothing_hint(self._window_size).items():
            if itr > self._last_write:  # only what changed since the last write
                by_iter[itr][name] = value
        if not by_iter:
            # Before touching the file: a run that failed before its first metric must leave
            # an earlier run's metrics.json as it was.
            return
        if not self._resume_checked:
            self._drop_iterations_from(storage.start_iter)
            self._resume_checked = True
        if self._file is None:
            os.makedirs(os.path.dirname(os.path.abspath(self._path)), exist_ok=True)
            self._file = open(self._path, "a")

        for itr in sorted(by_iter):
            self._file.write(json.dumps({"iteration": itr, **by_iter[itr]}) + "\n")
        self._file.flush()
        self._last_write = max(by_iter)

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


class TensorboardXWriter(EventWriter):
    """Write scalars, images and histograms to TensorBoard event files.

    The ``SummaryWriter`` (which creates ``log_dir`` and an event file) is made on the first
    write that has something to write, so a run that fails while it is being set up leaves
    its output directory untouched.
    """

    def __init__(self, log_dir: str, window_size: int = 20, **kwargs: Any) -> None:
        """
        Args:
            log_dir (str): the directory of the event files.
            window_size (int): the median window of smoothed scalars. Default: 20.
            **kwargs: passed to ``torch.utils.tensorboard.SummaryWriter``.

        Raises:
            ImportError: if the tensorboard package is not installed.
        """
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # tensorboard is optional for users who only read metrics.json
            raise ImportError(
                "TensorboardXWriter needs the tensorboard package: pip install tensorboard"
            ) from e
        self._make_writer = functools.partial(SummaryWriter, log_dir, **kwargs)
        self._writer: Optional[Any] = None
        self._window_size = window_size
        self._last_write = -1

    def write(self) -> None:
        storage = get_event_storage()
        if self._writer is None:
            if not storage.latest():
                return
            self._writer = self._make_writer()
        newest = self._last_write
        for name, (value, itr) in storage.latest_with_smoothing_hint(self._window_size).items():
            if itr > self._last_write:
                self._writer.add_scalar(name, value, itr)
                newest = max(newest, itr)
        self._last_write = newest

        # This writer is the only consumer of images and histograms, so it drops them once
        # written, which bounds the memory they hold.
        images = storage.images()
        if images:
            for name, img, itr in images:
                self._writer.add_image(name, img, itr)
            storage.clear_images()
        histograms = storage.histogram_data()
        if histograms:
            for params in histograms:
                self._writer.add_histogram_raw(**params)
            storage.clear_histograms()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class CommonMetricPrinter(EventWriter):
    """Log one line of training progress: ETA, iteration, losses, time, data time, lr, memory.

    Losses are the scalars whose name contains "loss", as their median over the window. The ETA
    comes from the "time" scalar (what ``IterationTimer`` puts): the median of the last 50
    writes' window medians, a robust estimate over the recent ~1000 iterations that costs
    microseconds per write (a median over 1000 raw values cost ~60 us). Without "time", it is
    estimated from the wall-clock time between two writes. The ETA is also put in the storage as
    "eta_seconds". Absent metrics are left out of the line.
    """

    def __init__(
        self, max_iter: Optional[int] = None, window_size: int = 20, iters_per_epoch: int = 0
    ) -> None:
        """
        Args:
            max_iter (int, optional): the number of training iterations, for the ETA; None:
                no ETA.
            window_size (int): the window of the losses' median and the times' mean.
                Default: 20.
            iters_per_epoch (int): with ``max_iter``, the line shows "epoch: e/E" too; 0
                (unknown) leaves it out. Default: 0.
        """
        self._max_iter = max_iter
        self._window_size = window_size
        self._iters_per_epoch = iters_per_epoch
        self._last_write: Optional[Tuple[int, float]] = None  # (iteration, perf_counter())
        # Median iteration time of each recent write's window, for the ETA.
        self._window_times: deque = deque(maxlen=50)

    def _eta(self, storage: EventStorage, histories: Dict[str, HistoryBuffer]) -> Optional[str]:
        if self._max_iter is None:
            return None
        iteration = storage.iter
        remaining = self._max_iter - iteration - 1
        eta_seconds = None
        if "time" in histories:
            self._window_times.append(histories["time"].median(self._window_size))
            eta_seconds = statistics.median(self._window_times) * remaining
            storage.put_scalar("eta_seconds", float(eta_seconds), smoothing_hint=False)
        elif self._last_write is not None and iteration > self._last_write[0]:
            last_iter, last_time = self._last_write
            seconds_per_iter = (time.perf_counter() - last_time) / (iteration - last_iter)
            eta_seconds = seconds_per_iter * remaining
        self._last_write = (iteration, time.perf_counter())
        if eta_seconds is None:
            return None
        return str(timedelta(seconds=int(eta_seconds)))

    def write(self) -> None:
        storage = get_event_storage()
        iteration = storage.iter
        if iteration == self._max_iter:
            # The trainer sets iter to max_iter once training has finished: there is no
            # progress left to report.
            return
        histories = storage.histories()
        parts = []
        eta = self._eta(storage, histories)
        if eta is not None:
            parts.append(f"eta: {eta}")
        per_epoch = self._iters_per_epoch
        if per_epoch > 0 and self._max_iter is not None:
            epochs = -(-self._max_iter // per_epoch)  # the last epoch may be partial
            parts.append(f"epoch: {iteration // per_epoch + 1}/{epochs}")
        parts.append(f"iter: {iteration}")
        losses = [
            f"{name}: {buffer.median(self._window_size):.4g}"
            for name, buffer in histories.items()
            if "loss" in name
        ]
        parts.extend(losses)
        if "time" in histories:
            parts.append(f"time: {histories['time'].avg(self._window_size):.4f}")
        if "data_time" in histories:
            parts.append(f"data_time: {histories['data_time'].avg(self._window_size):.4f}")
        if "lr" in histories:
            parts.append(f"lr: {histories['lr'].latest():.5g}")
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            # is_initialized: a CPU run on a GPU machine must not create a CUDA context here.
            max_mem_mb = torch.cuda.max_memory_allocated() / 1024.0 / 1024.0
            parts.append(f"max_mem: {max_mem_mb:.0f}M")
        logger.info(" " + "  ".join(parts))
