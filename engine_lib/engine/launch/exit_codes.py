"""How a run stopped by preemption ends: a distinct exit code, raised as ``SystemExit``.

The preemption hook raises :class:`TrainingPreempted` after saving its checkpoint; the
launcher recognises the exit code in its workers and ends the job the same way. Both import
it from here, so the launcher depends on no hook.
"""

import logging

__all__ = ["PREEMPTED_EXIT_CODE", "TrainingPreempted"]

logger = logging.getLogger(__name__)

#: Exit code of a run stopped by a preemption signal after saving its checkpoint. 75 is
#: ``EX_TEMPFAIL`` of sysexits.h ("temporary failure, retry later"): distinct from a crash (1),
#: a user error (2) and a death by signal (128 + N in a shell), so a job script can requeue
#: exactly these runs, with ``--resume``.
PREEMPTED_EXIT_CODE = 75


class TrainingPreempted(SystemExit):
    """Raised on every rank after the preemption checkpoint is saved.

    A ``SystemExit`` (code :data:`PREEMPTED_EXIT_CODE`), so that it ends the process with that
    code without being logged as a training failure; catch it to stay in the process.

    Args:
        iteration (int): the iteration the checkpoint was saved at (-1 in the launching
            process, which saw the workers exit).
    """

    def __init__(self, iteration: int) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.iteration = iteration
