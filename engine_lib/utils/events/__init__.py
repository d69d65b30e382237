"""Training metrics: the per-iteration :class:`EventStorage` and the writers that report it.

The trainer opens an ``EventStorage``; the model, hooks and the trainer put scalars (and images
and histograms for TensorBoard) into it; the writers (:class:`CommonMetricPrinter`,
:class:`JSONWriter`, :class:`TensorboardXWriter`) read it only in ``write()``, which a hook calls
every few iterations. Reading the histories is therefore confined to the writers.

The package has one module per concept: ``storage`` (:class:`EventStorage`), ``writers``
(:class:`EventWriter`, :class:`JSONWriter`, :class:`TensorboardXWriter`), ``printer``
(:class:`CommonMetricPrinter`), ``background`` (the ordered background thread that
``SimpleTrainer(async_write_metrics=True)`` puts metrics from) and ``writer_thread``
(:class:`WriterThread`: writers on a background thread, fed with snapshots of the
storage, which ``PeriodicWriter`` uses for the writers that ask for it, e.g. trackers).
"""

from .background import BackgroundRunner
from .printer import CommonMetricPrinter
from .storage import EventStorage, get_event_storage, has_event_storage
from .writer_thread import WriterThread
from .writers import EventWriter, JSONWriter, ScalarsSinceLastWrite, TensorboardXWriter

__all__ = [
    "BackgroundRunner",
    "CommonMetricPrinter",
    "EventStorage",
    "EventWriter",
    "JSONWriter",
    "ScalarsSinceLastWrite",
    "TensorboardXWriter",
    "WriterThread",
    "get_event_storage",
    "has_event_storage",
]
