"""Metric writers chosen by the config: ``WRITER_REGISTRY``, ``WRITERS`` and the trackers.

``cfg.WRITERS`` lists registered names; :func:`build_writers_from_config` builds them for the
main process of a run. Built in: ``"console"`` (:class:`CommonMetricPrinter`), ``"json"``
(``metrics.json``), ``"tensorboard"``, and two experiment trackers on their own libraries,
``"mlflow"`` (:class:`MLflowWriter`, extra ``.[mlflow]``) and ``"wandb"``
(:class:`WandbWriter`, extra ``.[wandb]``). A registered entry is a callable
``(cfg, output_dir, max_iter, iters_per_epoch) -> EventWriter``; a project adds one with no
engine edit:

Example:
    >>> from engine_lib.engine.writers import WRITER_REGISTRY
    >>> @WRITER_REGISTRY.register("csv")
    ... def build_csv_writer(cfg, output_dir, max_iter, iters_per_epoch):
    ...     return MyCSVWriter(os.path.join(output_dir, "metrics.csv"))

and turns it on with ``WRITERS: ("console", "csv")``. See docs/trackers.md.
"""

import logging

from .registry import WRITER_REGISTRY, build_writers_from_config, tracker_writers
from .state import WriterState
from .tracker import TrackerWriter, flatten_config

__all__ = [
    "WRITER_REGISTRY",
    "TrackerWriter",
    "WriterState",
    "build_writers_from_config",
    "flatten_config",
    "tracker_writers",
]

logger = logging.getLogger(__name__)
