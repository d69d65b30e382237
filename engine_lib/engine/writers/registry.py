"""``WRITER_REGISTRY``: the writers ``cfg.WRITERS`` names, and the built-in entries."""

import logging
import os
from typing import Any, List, Optional

from engine_lib.utils.errors import ConfigError
from engine_lib.utils.events import (
    CommonMetricPrinter,
    EventWriter,
    JSONWriter,
    TensorboardXWriter,
)
from engine_lib.utils.registry import Registry

from .tracker import TrackerWriter

__all__ = ["TRACKER_BUILDERS", "WRITER_REGISTRY", "build_writers_from_config", "tracker_writers"]

logger = logging.getLogger(__name__)

# name -> (cfg, output_dir, max_iter, iters_per_epoch) -> EventWriter
WRITER_REGISTRY = Registry("WRITER")


@WRITER_REGISTRY.register("console")
def _console(
    cfg: Any, output_dir: str, max_iter: Optional[int], iters_per_epoch: int
) -> EventWriter:
    """The console line: losses, LR, times, ETA (and "epoch: e/E" when epochs are known)."""
    return CommonMetricPrinter(max_iter, iters_per_epoch=iters_per_epoch)


@WRITER_REGISTRY.register("json")
def _json(cfg: Any, output_dir: str, max_iter: Optional[int], iters_per_epoch: int) -> EventWriter:
    """``OUTPUT_DIR/metrics.json``, one JSON line per written iteration."""
    return JSONWriter(os.path.join(output_dir, "metrics.json"))


@WRITER_REGISTRY.register("tensorboard")
def _tensorboard(
    cfg: Any, output_dir: str, max_iter: Optional[int], iters_per_epoch: int
) -> EventWriter:
    """TensorBoard event files in ``OUTPUT_DIR``."""
    return TensorboardXWriter(output_dir)


@WRITER_REGISTRY.register("mlflow")
def _mlflow(
    cfg: Any, output_dir: str, max_iter: Optional[int], iters_per_epoch: int
) -> EventWriter:
    """An MLflow run (``TRACKER.MLFLOW.*``); needs ``pip install -e ".[mlflow]"``."""
    from .mlflow_writer import MLflowWriter

    return MLflowWriter.from_config(cfg)


@WRITER_REGISTRY.register("wandb")
def _wandb(cfg: Any, output_dir: str, max_iter: Optional[int], iters_per_epoch: int) -> EventWriter:
    """A Weights & Biases run, offline by default (``TRACKER.WANDB.*``); needs ``.[wandb]``."""
    from .wandb_writer import WandbWriter

    return WandbWriter.from_config(cfg)


#: The registered builders of tracker writers (whose run id the trainer checkpoints); a
#: project registering a tracker of its own adds its builder here.
TRACKER_BUILDERS = [_mlflow, _wandb]


def build_writers_from_config(
    cfg: Any, output_dir: str, max_iter: Optional[int] = None, iters_per_epoch: int = 0
) -> List[EventWriter]:
    """Build the writers ``cfg.WRITERS`` names in ``WRITER_REGISTRY``, in that order.

    Args:
        cfg (CfgNode): the run's config; reads ``WRITERS`` and what each writer reads.
        output_dir (str): the directory of the file writers.
        max_iter (int, optional): total iterations, for the ETA on the console.
        iters_per_epoch (int): iterations per epoch (0: unknown). Default: 0.

    Returns:
        list[EventWriter]: the writers.

    Raises:
        ConfigError: for a name not in the registry (naming the closest ones), a name listed
            twice, or a tracker whose package is not installed (naming the extra).
        TypeError: if a registered callable returns something else than an EventWriter.
    """
    names = list(cfg.WRITERS)
    writers: List[EventWriter] = []
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                f"WRITERS: {name!r} is listed {names.count(name)} times; list it once."
            )
        writer = WRITER_REGISTRY.get_for_key("WRITERS", name)(
            cfg, output_dir, max_iter, iters_per_epoch
        )
        if not isinstance(writer, EventWriter):
            raise TypeError(
                f"WRITERS entry {name!r} built {type(writer).__name__}, not an EventWriter."
            )
        writers.append(writer)
    return writers


def tracker_writers(writers: List[EventWriter]) -> List[TrackerWriter]:
    """The writers among ``writers`` whose state (a tracker's run id) is checkpointed."""
    return [w for w in writers if isinstance(w, TrackerWriter)]
