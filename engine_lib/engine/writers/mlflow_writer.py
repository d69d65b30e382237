"""``MLflowWriter``: metrics, parameters and ``config.yaml`` of a run in MLflow."""

import logging
import os
import time
from typing import Any, Dict, List, Optional, Tuple

from .tracker import TrackerWriter, flatten_config, import_tracker

__all__ = ["MLflowWriter"]

logger = logging.getLogger(__name__)

# MLflow's limits on one log_batch call, and on a parameter's value.
_MAX_PARAMS, _MAX_METRICS, _MAX_PARAM_LEN = 100, 1000, 6000


def default_tracking_uri(output_dir: str) -> str:
    """The local store of a run: ``file:<OUTPUT_DIR>/mlruns`` (offline, nothing to start)."""
    return "file:" + os.path.join(os.path.abspath(output_dir), "mlruns")


class MLflowWriter(TrackerWriter):
    """Report a training run to MLflow (``WRITERS: (..., "mlflow")``).

    Parameters: the flattened config (``SOLVER.BASE_LR``...); metrics: every scalar of the
    storage at its iteration (the evaluation results included); artifact: ``config.yaml``.
    Uses ``MlflowClient`` with an explicit run id, so it leaves MLflow's global "active run"
    alone and works from a background thread.

    Args:
        cfg (CfgNode): the run's config.
        tracking_uri (str): the tracking store; "" = ``file:<OUTPUT_DIR>/mlruns``.
        experiment_name (str): the experiment, created if missing.
        run_name (str): the run's name ("" = MLflow picks one).
    """

    def __init__(
        self,
        cfg: Any,
        tracking_uri: str = "",
        experiment_name: str = "engine_lib",
        run_name: str = "",
    ) -> None:
        super().__init__(cfg)
        self._mlflow = import_tracker("mlflow", "mlflow", "mlflow")
        self._uri = tracking_uri or default_tracking_uri(cfg.OUTPUT_DIR)
        if self._uri.startswith("file:"):
            # MLflow 3 accepts its file store only when asked: it is the store that works
            # offline with mlflow-skinny (sqlite needs the full mlflow with SQLAlchemy).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self._experiment = experiment_name
        self._run_name = run_name or None
        self._client: Any = None  # an MlflowClient, from _start on

    @classmethod
    def from_config(cls, cfg: Any) -> "MLflowWriter":
        """Build it from ``cfg.TRACKER.MLFLOW``."""
        m = cfg.TRACKER.MLFLOW
        return cls(cfg, m.TRACKING_URI, m.EXPERIMENT_NAME, m.RUN_NAME)

    def _start(self, resume_id: Optional[str]) -> Tuple[str, int]:
        from mlflow.tracking import MlflowClient

        self._client = client = MlflowClient(tracking_uri=self._uri)
        if resume_id is not None:
            client.update_run(resume_id, status="RUNNING")
            return resume_id, self._last_logged_step(resume_id)
        experiment = client.get_experiment_by_name(self._experiment)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(self._experiment)
        )
        run_id = client.create_run(experiment_id, run_name=self._run_name).info.run_id
        self._log_params(run_id)
        client.log_text(run_id, self._cfg.dump(), "config.yaml")
        return run_id, -1

    def _log_params(self, run_id: str) -> None:
        from mlflow.entities import Param

        params = [
            Param(k, str(v)[:_MAX_PARAM_LEN]) for k, v in sorted(flatten_config(self._cfg).items())
        ]
        for i in range(0, len(params), _MAX_PARAMS):
            self._client.log_batch(run_id, params=params[i : i + _MAX_PARAMS])

    def _last_logged_step(self, run_id: str) -> int:
        run = self._client.get_run(run_id)
        steps = [
            m.step for key in run.data.metrics for m in self._client.get_metric_history(run_id, key)
        ]
        return max(steps, default=-1)

    def _log(self, by_iter: Dict[int, Dict[str, float]]) -> None:
        from mlflow.entities import Metric

        # One timestamp per write is enough: MLflow orders a metric's history by step.
        now = int(time.time() * 1000)
        metrics: List[Any] = [
            Metric(_metric_name(name), float(value), now, itr)
            for itr, scalars in by_iter.items()
            for name, value in scalars.items()
        ]
        for i in range(0, len(metrics), _MAX_METRICS):
            self._client.log_batch(self.run_id, metrics=metrics[i : i + _MAX_METRICS])

    def _finish(self) -> None:
        self._client.set_terminated(self.run_id)


def _metric_name(name: str) -> str:
    # MLflow allows letters, digits and "_-. /"; anything else becomes "_".
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)
