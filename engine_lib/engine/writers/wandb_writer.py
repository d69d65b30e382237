"""``WandbWriter``: a Weights & Biases run, offline by default."""

import logging
import os
import uuid
from typing import Any, Dict, Optional, Tuple

from .tracker import TrackerWriter, flatten_config, import_tracker

__all__ = ["WandbWriter"]

logger = logging.getLogger(__name__)


class WandbWriter(TrackerWriter):
    """Report a training run to Weights & Biases (``WRITERS: (..., "wandb")``).

    The same contract as :class:`MLflowWriter`: the flattened config as the run's config,
    every scalar at its iteration (``step``), ``config.yaml`` among the run's files, the run
    id checkpointed so that ``--resume`` continues the run. The mode is ``TRACKER.WANDB.MODE``,
    or the ``WANDB_MODE`` environment variable when that is "", else ``"offline"``: the run
    is written under ``OUTPUT_DIR/wandb/`` and uploaded later with
    ``wandb sync OUTPUT_DIR/wandb/offline-run-*``.

    Args:
        cfg (CfgNode): the run's config.
        project (str): the W&B project.
        entity (str): the W&B entity (user or team; "" = the default one).
        run_name (str): the run's display name ("" = W&B picks one).
        mode (str): "offline", "online" or "disabled"; "" = ``WANDB_MODE`` or "offline".
    """

    def __init__(
        self,
        cfg: Any,
        project: str = "engine_lib",
        entity: str = "",
        run_name: str = "",
        mode: str = "",
    ) -> None:
        super().__init__(cfg)
        self._wandb = import_tracker("wandb", "wandb", "wandb")
        self._project, self._entity, self._name = project, entity or None, run_name or None
        self._mode = mode or os.environ.get("WANDB_MODE") or "offline"
        self._run: Any = None  # wandb's Run, between _start and _finish

    @classmethod
    def from_config(cls, cfg: Any) -> "WandbWriter":
        """Build it from ``cfg.TRACKER.WANDB``."""
        w = cfg.TRACKER.WANDB
        return cls(cfg, w.PROJECT, w.ENTITY, w.RUN_NAME, w.MODE)

    def _start(self, resume_id: Optional[str]) -> Tuple[str, int]:
        output_dir = os.path.abspath(self._cfg.OUTPUT_DIR)
        os.makedirs(output_dir, exist_ok=True)
        self._run = run = self._wandb.init(
            project=self._project,
            entity=self._entity,
            name=self._name,
            dir=output_dir,
            mode=self._mode,
            id=resume_id or uuid.uuid4().hex[:8],
            resume="allow",
            config=flatten_config(self._cfg),
            # The training process's own logging and signal handling stay as they are.
            settings=self._wandb.Settings(console="off", silent=True),
        )
        # Files in the run's directory are part of the run (uploaded by `wandb sync`).
        with open(os.path.join(run.dir, "config.yaml"), "w") as f:
            f.write(self._cfg.dump())
        return run.id, -1

    def _log(self, by_iter: Dict[int, Dict[str, float]]) -> None:
        for itr, scalars in by_iter.items():
            self._run.log(dict(scalars), step=itr)

    def _finish(self) -> None:
        self._run.finish()
        self._run = None
