"""``PeriodicCheckpointer``: save every ``period`` iterations and at the end; keep the newest."""

import logging
import os
import shutil
from typing import TYPE_CHECKING, Any, Optional

from fvcore.common.checkpoint import PeriodicCheckpointer as _FvcorePeriodicCheckpointer

from engine_lib.utils.periodic import every_n_iters

from .resume import checkpoints_by_iteration

if TYPE_CHECKING:
    from .checkpointer import Checkpointer

__all__ = ["PeriodicCheckpointer"]

logger = logging.getLogger(__name__)


class PeriodicCheckpointer(_FvcorePeriodicCheckpointer):
    """Save a checkpoint every ``period`` iterations and at the last one; keep the newest few.

    ``step(iteration)`` writes ``<file_prefix>_<iteration:07d>.pth`` when ``iteration + 1``
    is a multiple of ``period`` and ``<file_prefix>_final.pth`` at ``max_iter - 1``.

    Unlike fvcore's, which remembers only the files it wrote itself (so files from before a
    resume are never deleted) and deletes from every rank, old periodic files are found on
    disk and deleted by the process that saves. ``model_final``, ``model_best`` and the file
    ``last_checkpoint`` names are never deleted, nor files of iterations after the current
    one (left by an abandoned run).

    Args:
        checkpointer (Checkpointer): saves the files.
        period (int): save every this many iterations.
        max_iter (int | None): the number of iterations; the final checkpoint is saved at
            ``max_iter - 1``. Default: None (no final checkpoint).
        max_to_keep (int | None): keep at most this many periodic files; None or <= 0 keeps
            all (as ``SOLVER.MAX_TO_KEEP``). Default: None.
        file_prefix (str): prefix of the file names. Default: "model".
    """

    def __init__(
        self,
        checkpointer: "Checkpointer",
        period: int,
        max_iter: Optional[int] = None,
        max_to_keep: Optional[int] = None,
        file_prefix: str = "model",
    ) -> None:
        if max_to_keep is not None and max_to_keep <= 0:
            max_to_keep = None  # fvcore asserts > 0; our config spells "keep all" as 0
        super().__init__(checkpointer, period, max_iter, max_to_keep, file_prefix)

    def step(self, iteration: int, **kwargs: Any) -> None:
        """Save if ``iteration`` is due, then delete periodic files beyond ``max_to_keep``.

        Args:
            iteration (int): the iteration just finished, in ``[0, max_iter - 1]``.
            **kwargs: extra data to save; ``iteration`` is added.
        """
        iteration = int(iteration)
        data = {"iteration": iteration, **kwargs}
        poll = getattr(self.checkpointer, "poll", None)
        if poll is not None:
            poll()  # finish an asynchronous save whose writes are done
        if every_n_iters(iteration, self.period):
            self.checkpointer.save(f"{self.file_prefix}_{iteration:07d}", **data)
        if self.max_iter is not None and iteration >= self.max_iter - 1:
            self.checkpointer.save(f"{self.file_prefix}_final", **data)
            wait = getattr(self.checkpointer, "wait", None)
            if wait is not None:
                wait()  # the run ends with its final checkpoint complete
        # Counts complete checkpoints only: an asynchronous one is deleted a save later.
        self._delete_old(iteration)

    def _delete_old(self, iteration: int) -> None:
        checkpointer = self.checkpointer
        if self.max_to_keep is None or not checkpointer.save_to_disk or not checkpointer.save_dir:
            return
        periodic = checkpoints_by_iteration(
            checkpointer.get_all_checkpoint_files(), self.file_prefix
        )
        past = [path for it, path in periodic if it <= iteration]
        protected = checkpointer.get_checkpoint_file()
        for path in past[: -self.max_to_keep]:
            if path == protected:
                continue
            try:
                if os.path.isdir(path):  # a sharded checkpoint
                    shutil.rmtree(path)
                else:
                    self.path_manager.rm(path)
            except OSError as e:
                logger.warning("Could not delete old checkpoint %s: %s", path, e)
