"""Save checkpoints periodically during training."""

import logging
from typing import Any, Callable, Optional

from engine_lib.checkpoint import PeriodicCheckpointer as _PeriodicCheckpointer

from ..train_loop import HookBase
from ._checks import check_before_save

__all__ = ["PeriodicCheckpointer"]

logger = logging.getLogger(__name__)


class PeriodicCheckpointer(_PeriodicCheckpointer, HookBase):
    """Save ``<file_prefix>_<iter>.pth`` every ``period`` iterations and ``_final`` at the end.

    The hook form of :class:`engine_lib.checkpoint.PeriodicCheckpointer` (same arguments);
    ``max_iter`` is taken from the trainer when training starts. What a checkpoint holds is
    what the checkpointer tracks: to resume exactly, build it with the trainer as a
    checkpointable, which carries the iteration, the hooks' states and the grad scaler::

        checkpointer = Checkpointer(model, out_dir, optimizer=opt, scheduler=sched,
                                    trainer=trainer)
        trainer.register_hooks([PeriodicCheckpointer(checkpointer, period=1000)])

    Before each save the trainer's metrics are flushed and the weights checked, so a
    non-finite loss or weight raises ``FloatingPointError`` instead of being saved. Must run
    on every rank (the flush is collective); the checkpointer writes on the main process.

    Args:
        checkpointer (Checkpointer): saves the files.
        period (int): save every this many iterations.
        max_iter (int, optional): ignored: the trainer's ``max_iter`` is used.
        max_to_keep (int, optional): keep at most this many periodic files; None or <= 0
            keeps all. Default: None.
        file_prefix (str): prefix of the file names. Default: ``"model"``.
    """

    _poll: Optional[Callable[[], Any]] = None  # the checkpointer's, bound in before_train

    def before_train(self) -> None:
        self.max_iter = self.trainer.max_iter
        # Looked up once per train(): after_step runs at every iteration.
        self._poll = getattr(self.checkpointer, "poll", None)

    def after_step(self) -> None:
        # The same condition as step()'s: it saves at exactly these iterations.
        if self.every_n_iters_or_last(self.period):
            check_before_save(self.trainer, self.checkpointer.model)
            self.step(self.trainer.iter)
        # An asynchronous (DCP) save whose writes are done is made the resume point here, on
        # the training thread, as soon as it is durable; any checkpointer may be passed.
        if self._poll is not None:
            self._poll()

    def after_train(self) -> None:
        # A run killed while writing model_final resumes from the checkpoint of the last
        # iteration and has no iteration left to run, so after_step never saves the final
        # file: save it here (identical to what the last iteration would have saved).
        trainer = self.trainer
        if self.training_completed() and trainer.start_iter >= trainer.max_iter:
            check_before_save(trainer, self.checkpointer.model)
            self.checkpointer.save(f"{self.file_prefix}_final", iteration=trainer.max_iter - 1)
        # The job does not end with a save in flight: it completes, and becomes the resume
        # point, before the process may exit.
        wait = getattr(self.checkpointer, "wait", None)
        if wait is not None:
            wait()
