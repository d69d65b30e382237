"""The common part of the experiment-tracker writers: a run id that resumes, and no repeats."""

import importlib
import logging
import threading
from typing import Any, Dict, Optional

from engine_lib.utils.errors import ConfigError
from engine_lib.utils.events import EventWriter, ScalarsSinceLastWrite, get_event_storage

__all__ = ["TrackerWriter", "flatten_config", "import_tracker"]

logger = logging.getLogger(__name__)


def import_tracker(module: str, writer: str, extra: str) -> Any:
    """Import a tracker's package, or fail with one line naming the extra to install.

    Args:
        module (str): the package, e.g. ``"mlflow"``.
        writer (str): the ``WRITERS`` name that needs it.
        extra (str): the engine_lib extra that installs it.

    Raises:
        ConfigError: the package is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"WRITERS: {writer!r} needs the {module} package, which is not installed: "
            f'pip install -e ".[{extra}]"'
        ) from None


def flatten_config(cfg: Any, prefix: str = "") -> Dict[str, Any]:
    """``{"SOLVER.BASE_LR": 0.1, ...}``: every leaf of a (nested) config, by dotted key.

    Args:
        cfg (Mapping): the config (a ``CfgNode`` or a dict).
        prefix (str): prepended to every key (used by the recursion).
    """
    flat: Dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_config(value, name + "."))
        else:
            flat[name] = value
    return flat


class TrackerWriter(EventWriter):
    """An :class:`EventWriter` reporting to an experiment tracker's run.

    The run starts on the first :meth:`write` that has a metric (so a run that fails while
    being set up creates nothing), with the flattened config as its parameters. Its id is
    the writer's :meth:`state_dict`, which the trainer checkpoints
    (:class:`~engine_lib.engine.writers.WriterState`): a resumed training continues the same
    run, and iterations the run already has are not logged again. ``write`` and ``close``
    may be called from another thread than the training loop's (one at a time).

    Subclasses implement :meth:`_start` (open or resume the run, return its id and the last
    step it holds), :meth:`_log` and :meth:`_finish`.

    Args:
        cfg (CfgNode): the run's config (its parameters, and ``config.yaml``).
        window_size (int): the median window of smoothed scalars. Default: 20.
    """

    # A tracker's log call may wait on its server: off the training thread by default.
    background = True

    def __init__(self, cfg: Any, window_size: int = 20) -> None:
        self._cfg = cfg
        self._new = ScalarsSinceLastWrite(window_size)
        self.run_id: Optional[str] = None
        self._last_step = -1
        self._started = False
        self._lock = threading.Lock()

    def _start(self, resume_id: Optional[str]) -> "tuple[str, int]":
        raise NotImplementedError

    def _log(self, by_iter: Dict[int, Dict[str, float]]) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def write(self) -> None:
        """Log the scalars put since the last write, each at its iteration."""
        with self._lock:
            by_iter = self._new.take(get_event_storage())
            if not self._started:
                if not by_iter:
                    return
                resume_id = self.run_id
                self.run_id, last = self._start(resume_id)
                self._last_step = max(self._last_step, last)
                self._started = True
                logger.info(
                    "%s: %s run %s",
                    type(self).__name__,
                    "resumed" if resume_id else "new",
                    self.run_id,
                )
            # Iterations a resumed run logged before (after its last checkpoint) stay once.
            new = {itr: v for itr, v in by_iter.items() if itr > self._last_step}
            if new:
                self._log(new)
                self._last_step = max(new)

    def close(self) -> None:
        """End the run (it stays resumable)."""
        with self._lock:
            if self._started:
                self._finish()
                self._started = False

    def state_dict(self) -> Dict[str, Any]:
        """Return ``{"run_id", "last_step"}``: what a resumed training continues."""
        return {"run_id": self.run_id, "last_step": self._last_step}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue the run of ``state`` on the first write."""
        self.run_id = state.get("run_id")
        self._last_step = int(state.get("last_step", -1))
