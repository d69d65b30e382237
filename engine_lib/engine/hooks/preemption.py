"""Stop training cleanly on a preemption signal: agree on an iteration, checkpoint, exit."""

import logging
import signal
import threading
from typing import Any, Dict, Optional, Sequence

from engine_lib.checkpoint import Checkpointer
from engine_lib.utils import comm
from engine_lib.utils.errors import ConfigError

from ..launch.exit_codes import PREEMPTED_EXIT_CODE, TrainingPreempted
from ..train_loop import HookBase
from ._checks import check_before_save

__all__ = ["PREEMPTED_EXIT_CODE", "TrainingPreempted", "PreemptionHandler", "parse_signals"]

logger = logging.getLogger(__name__)


def parse_signals(names: Sequence[str]) -> tuple:
    """Turn signal names (``"SIGTERM"``, ``"SIGUSR1"``) into ``signal.Signals``.

    Raises:
        ConfigError: for an unknown name, or SIGKILL/SIGSTOP (they cannot be caught).
    """
    result = []
    for name in names:
        sig = getattr(signal.Signals, str(name).upper(), None)
        if sig is None or sig in (signal.SIGKILL, signal.SIGSTOP):
            raise ConfigError(
                f"SOLVER.PREEMPT_SIGNALS: {name!r} is not a signal that can be caught; expected "
                "names like 'SIGTERM', 'SIGUSR1', 'SIGUSR2', 'SIGINT'"
            )
        result.append(sig)
    return tuple(result)


class PreemptionHandler(HookBase):
    """On a preemption signal, finish the step, save a checkpoint and exit on every rank.

    The signal handler only sets a flag. In ``after_step`` the flag is checked: on one process
    at every iteration (free); with several, only every ``check_period`` iterations, when the
    ranks exchange their flags (one tiny all-gather), so that all of them stop at the same
    iteration even if the signal reached them at different moments or only one of them.
    The latency between the signal and the exit is therefore at most ``check_period``
    iterations plus one checkpoint write (and the evaluation, if one is due at that
    iteration). The checkpoint is ``model_<iter>.pth`` (skipped if the periodic checkpointer
    just wrote it), then :class:`TrainingPreempted` (exit code :data:`PREEMPTED_EXIT_CODE`)
    is raised; ``--resume`` continues exactly from the next iteration.

    Register it last, so that everything the iteration does (evaluation, writing, periodic
    checkpoint) happens before the exit, as it would have without the signal. Handlers are
    installed in ``before_train`` (main thread only) and restored in ``after_train``; a
    signal that arrives before has its default effect.

    Args:
        checkpointer (Checkpointer): saves the checkpoint.
        signals (list[str]): names of the signals to handle. Default: SIGTERM and SIGUSR1.
        check_period (int): with several processes, agree every this many iterations (use the
            metric flush period, when the ranks synchronize anyway). Default: 20.
        checkpoint_period (int): the periodic checkpointer's period: the iterations it saves
            are not saved again (same file name). Default: 0 (none).
        file_prefix (str): prefix of the checkpoint file. Default: ``"model"``.
    """

    def __init__(
        self,
        checkpointer: Checkpointer,
        signals: Sequence[str] = ("SIGTERM", "SIGUSR1"),
        check_period: int = 20,
        checkpoint_period: int = 0,
        file_prefix: str = "model",
    ) -> None:
        if check_period < 1:
            raise ConfigError(f"PreemptionHandler check_period must be >= 1, got {check_period}")
        self._checkpointer = checkpointer
        self._signals = parse_signals(signals)
        self._check_period = check_period
        self._checkpoint_period = checkpoint_period
        self._file_prefix = file_prefix
        self._received: Optional[int] = None
        self._previous: Dict[int, Any] = {}

    @property
    def received(self) -> Optional[int]:
        """int or None: the number of the last preemption signal received by this process."""
        return self._received

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only a flag: the step in progress finishes, and the ranks then agree on stopping.
        self._received = signum

    def before_train(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            logger.warning("Not in the main thread: preemption signals are not handled.")
            return
        for sig in self._signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def after_train(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def _should_stop(self) -> bool:
        if comm.get_world_size() == 1:
            return self._received is not None
        if not self.every_n_iters(self._check_period):
            return False
        return any(comm.all_gather(self._received is not None))

    def after_step(self) -> None:
        # The last iteration saves model_final and ends by itself: nothing to gain.
        if self.is_last_iter() or not self._should_stop():
            return
        iteration = self.trainer.iter
        name = f"{self._file_prefix}_{iteration:07d}"
        what = signal.Signals(self._received).name if self._received else "another rank's signal"
        logger.warning("Preempted (%s): saving %s, exiting at iteration %d", what, name, iteration)
        check_before_save(self.trainer, self._checkpointer.model)
        if self.every_n_iters(self._checkpoint_period):
            logger.info("%s.pth was just saved by the periodic checkpointer.", name)
        else:
            self._checkpointer.save(name, iteration=iteration)
        # Nobody exits before the main process has written the file.
        comm.synchronize()
        raise TrainingPreempted(iteration)
