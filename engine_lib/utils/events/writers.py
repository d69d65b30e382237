"""The writers that report an :class:`EventStorage` to files: JSON lines and TensorBoard."""

import functools
import json
import logging
import os
import struct
from collections import defaultdict
from typing import Any, Callable, Dict, List, Optional

from engine_lib.utils.file_io import atomic_write

from .storage import EventStorage, get_event_storage

__all__ = ["EventWriter", "JSONWriter", "ScalarsSinceLastWrite", "TensorboardXWriter"]

logger = logging.getLogger(__name__)


class EventWriter:
    """Base class of the writers: ``write()`` reports the current storage, ``close()`` ends.

    Attributes:
        background (bool): whether ``PeriodicWriter(background="auto")`` (its default) runs
            this writer on its background thread. False here: a local file or console write
            costs less than the hand-off to another thread (a Python thread shares the GIL
            with the training loop, so it cannot overlap it). Writers that wait on a network
            or a remote store (the experiment trackers) set it to True.
    """

    background: bool = False

    def write(self) -> None:
        """Report the metrics of :func:`get_event_storage`."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files and other resources; the default does nothing."""


class ScalarsSinceLastWrite:
    """What a writer has not written yet: the scalars put at iterations after its last write.

    Every writer that reports each iteration once (JSON lines, TensorBoard, trackers) asks
    this for its new values instead of keeping its own bookkeeping. Smoothed scalars come as
    their windowed median (:meth:`EventStorage.latest_with_smoothing_hint`). A scalar put at
    an iteration already written (e.g. an evaluation result put late at an old iteration) is
    not reported again.

    Args:
        window_size (int): the median window of smoothed scalars, in iterations. Default: 20.
    """

    def __init__(self, window_size: int = 20) -> None:
        self.window_size = window_size
        self.last_write = -1

    def take(self, storage: EventStorage) -> Dict[int, Dict[str, float]]:
        """Return ``{iteration: {name: value}}`` of the new scalars, and mark them written.

        Args:
            storage (EventStorage): the storage to read.

        Returns:
            dict: sorted by iteration; empty when nothing is new.
        """
        by_iter: Dict[int, Dict[str, float]] = defaultdict(dict)
        for name, (value, itr) in storage.latest_with_smoothing_hint(self.window_size).items():
            if itr > self.last_write:
                by_iter[itr][name] = value
        if by_iter:
            self.last_write = max(by_iter)
        return {itr: by_iter[itr] for itr in sorted(by_iter)}


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
        self._new = ScalarsSinceLastWrite(window_size)
        self._file: Optional[Any] = None
        self._resume_checked = False

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
        by_iter = self._new.take(storage)
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

        for itr, scalars in by_iter.items():
            self._file.write(json.dumps({"iteration": itr, **scalars}) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


def _masked_crc(data: bytes, crc32c: Callable[[bytes], int]) -> bytes:
    """The TFRecord checksum of ``data``: its CRC-32C, rotated and offset ("masked"), as 4
    little-endian bytes."""
    crc = crc32c(data)
    return struct.pack("<I", ((crc >> 15 | crc << 17) + 0xA282EAD8) & 0xFFFFFFFF)


def _c_crc32c() -> Optional[Callable[[bytes], int]]:
    """google-crc32c's C implementation of CRC-32C, or None where only pure Python is."""
    try:
        import google_crc32c
    except ImportError:
        return None
    return google_crc32c.value if getattr(google_crc32c, "implementation", "") == "c" else None


class _InlineRecords:
    """Stands in for tensorboard's ``_AsyncWriter``: each record is written on the calling
    thread (``write``, ``flush`` and ``close`` as there).

    Tensorboard writes records on a thread of its own, woken for every event, which computes
    the records' CRC in pure Python. That thread shares the GIL with the training loop, which
    releases it at every torch op and then waits to get it back: measured on a 0.2 ms CPU step
    (``benchmarks/trainer_overhead.py --breakdown``), the TensorBoard writer cost +17.6 us per
    iteration that way, against ~2 us for writing the same event on the calling thread.

    Each record is framed here as tensorboard's ``RecordWriter`` frames it (length, its
    checksum, the event, its checksum), with the CRC-32C of google-crc32c's C extension:
    tensorboard's pure-Python CRC takes ~14 us for the ~120 bytes of one iteration's scalars
    (0.13 us in C), and time in proportion for more scalars. Without the C extension, or
    with a tensorboard whose record writer differs, its ``RecordWriter`` frames them.
    """

    def __init__(self, record_writer: Any) -> None:
        self._writer = record_writer
        self._closed = False
        # On a local disk, tensorboard's file object opens, appends to and closes the file
        # for every record; a file kept open in append mode does one write per record.
        gfile: Any = getattr(record_writer, "_writer", None)
        if type(getattr(gfile, "fs", None)).__name__ == "LocalFileSystem" and getattr(
            gfile, "write_started", False
        ):
            gfile.close()
            record_writer._writer = open(os.fsdecode(gfile.filename), "ab")
        # tensorboard's RecordWriter, whose file (_writer) gets the records framed here.
        framed_here = type(record_writer).__name__ == "RecordWriter" and hasattr(
            record_writer, "_writer"
        )
        self._crc32c = _c_crc32c() if framed_here else None

    def write(self, bytestring: bytes) -> None:
        if self._closed:
            raise OSError("Writer is closed")
        crc32c = self._crc32c
        if crc32c is None:
            self._writer.write(bytestring)
        else:
            header = struct.pack("<Q", len(bytestring))
            self._writer._writer.write(
                header + _masked_crc(header, crc32c) + bytestring + _masked_crc(bytestring, crc32c)
            )
        # Each record reaches the operating system at once (as with tensorboard's appends),
        # so a killed run keeps every event written before.
        self._writer.flush()

    def flush(self) -> None:
        if self._closed:
            raise OSError("Writer is closed")
        self._writer.flush()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._writer.flush()
            self._writer.close()


def _write_records_inline(summary_writer: Any) -> None:
    """Make ``summary_writer``'s event file write its records on the calling thread
    (:class:`_InlineRecords`); with a tensorboard whose internals differ, leave it as it is."""
    try:
        event_writer = summary_writer._get_file_writer().event_writer
        async_writer = event_writer._async_writer
        record_writer, worker = async_writer._writer, async_writer._worker
    except AttributeError:
        return
    if not (hasattr(record_writer, "write") and hasattr(worker, "stop")):
        return
    async_writer.flush()  # the event file's first record, queued when it was created
    worker.stop()  # the thread ends; the file stays open, now written from here
    event_writer._async_writer = _InlineRecords(record_writer)


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
        self._new = ScalarsSinceLastWrite(window_size)

    def write(self) -> None:
        storage = get_event_storage()
        if self._writer is None:
            if not storage.latest():
                return
            self._writer = self._make_writer()
            _write_records_inline(self._writer)
        for itr, scalars in self._new.take(storage).items():
            self._add_scalars(self._writer, scalars, itr)

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

    @staticmethod
    def _add_scalars(writer: Any, scalars: Dict[str, float], itr: int) -> None:
        """One event of all the scalars of an iteration: what ``add_scalar`` writes for each.

        ``add_scalar`` makes a summary, an event and a queue entry per scalar (~10 us each,
        through numpy); a summary of several values is one of each per iteration, and
        TensorBoard reads each value under its own tag as before.
        """
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=name, simple_value=value) for name, value in scalars.items()]
        # The SummaryWriter's own file writer (the one add_scalar uses), so that scalars,
        # images and histograms share one event file.
        writer._get_file_writer().add_summary(Summary(value=values), itr)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
