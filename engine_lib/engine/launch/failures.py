"""What the launching process reports when a spawned worker fails.

torch's ``ProcessRaisedException`` names the worker whose failure ``join`` noticed first,
which is often a peer that died of the real failure (its connection closed); its message
carries no rank. Here the earliest traceback is chosen as the cause and named by global
rank; "earliest" is when each worker raised (:func:`record_failure_time`, written before the
worker closes its connections), not when its traceback file was written. A
:class:`~engine_lib.utils.errors.UserError` in a worker (a bad config value) is
passed to the parent as a pickle, so that the user sees one line rather than a traceback:
torch's error files hold only the traceback text.
"""

import logging
import os
import pickle
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import torch.multiprocessing as mp

from engine_lib.utils.errors import UserError

__all__ = [
    "WorkerFailedError",
    "WorkerStoppedError",
    "describe_failure",
    "stopped_workers",
    "save_user_error",
    "load_user_error",
    "record_failure_time",
]

logger = logging.getLogger(__name__)


class WorkerFailedError(RuntimeError):
    """A process spawned by :func:`~engine_lib.engine.launch.launch` failed; the job was stopped.

    The message holds the failing worker's global rank and its traceback.

    Attributes:
        rank (int): global rank of the worker that failed first.
        pid (int): its process id.
        index (int): its local index among the processes spawned on this machine.
    """

    def __init__(self, message: str, rank: int, pid: int, index: int = 0) -> None:
        super().__init__(message)
        self.rank = rank
        self.pid = pid
        self.index = index


class WorkerStoppedError(WorkerFailedError, UserError):
    """A worker was stopped (SIGSTOP, a debugger) and its peers gave up waiting for it.

    One line naming the stopped worker's rank, where :class:`WorkerFailedError` would show the
    traceback of a healthy peer whose collective timed out.
    """


def save_user_error(error: UserError, path: str) -> None:
    """Write ``error`` for the launching process (a plain ``UserError`` if it won't load back).

    Args:
        error (UserError): the error a worker raised.
        path (str): a file in the directory the launching process created for the job.
    """
    try:
        data = pickle.dumps(error)
        pickle.loads(data)  # an exception with unusual arguments may not load back
    except Exception:
        data = pickle.dumps(UserError(str(error)))
    with open(path, "wb") as f:
        f.write(data)


def load_user_error(path: str) -> Optional[UserError]:
    """The error :func:`save_user_error` wrote at ``path``, or None if there is none."""
    # The file was written by a worker of this job, into a directory this process created.
    try:
        with open(path, "rb") as f:
            error = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None
    return error if isinstance(error, UserError) else None


def record_failure_time(directory: str, local_rank: int) -> None:
    """Note in ``directory`` that worker ``local_rank`` raised now (``<local_rank>.failed_at``).

    Call it where the error is caught, before the process group is destroyed: that closes
    the worker's connections, so a peer blocked in a collective raises too and may write its
    traceback file first, although it failed second.

    Args:
        directory (str): the job's directory for worker records (``Job.user_error_dir``);
            nothing is written when empty.
        local_rank (int): the worker's index on this machine.
    """
    if not directory:
        return
    try:
        with open(os.path.join(directory, f"{local_rank}.failed_at"), "w") as f:
            f.write(repr(time.time()))
    except OSError as e:  # the record only orders failures; the error itself matters more
        logger.warning("Could not record when worker %d failed: %s", local_rank, e)


def _failure_time(error_file: str, record_dir: str, index: int) -> float:
    """When worker ``index`` raised: its ``.failed_at`` record, else its error file's mtime."""
    try:
        with open(os.path.join(record_dir, f"{index}.failed_at")) as f:
            return float(f.read())
    except (OSError, ValueError):
        return os.path.getmtime(error_file)


def _tracebacks(error_files: List[str], record_dir: str = "") -> List[Tuple[float, int, str]]:
    """(time raised, local index, traceback) of every worker that raised, first raiser first."""
    raised = []
    for index, path in enumerate(error_files):
        try:
            with open(path, "rb") as f:
                traceback = pickle.load(f)
            raised.append((_failure_time(path, record_dir, index), index, traceback))
        except (OSError, EOFError, pickle.UnpicklingError):
            continue
    return sorted(raised)


def describe_failure(
    context: Any,
    error: Union[mp.ProcessRaisedException, mp.ProcessExitedException],
    rank_of: Callable[[int], int],
    stopped: Sequence[int] = (),
    record_dir: str = "",
) -> WorkerFailedError:
    """Describe the worker that failed first, from the traceback files the workers wrote.

    Args:
        context (ProcessContext): what ``torch.multiprocessing.start_processes`` returned.
        error (Exception): the ``ProcessRaisedException`` or ``ProcessExitedException``.
        rank_of (callable): the global rank of a local worker index.
        stopped (sequence of int): local indices of the workers :func:`stopped_workers` last
            found stopped; such a worker is the cause. Default: none.
        record_dir (str): where the workers' :func:`record_failure_time` records are;
            without one, the traceback files' times order the failures. Default: none.

    Returns:
        WorkerFailedError: naming the first failure, then those that followed it.
    """
    raised = _tracebacks(context.error_files, record_dir)
    if stopped:
        return _stopped_failure(context, stopped, raised, rank_of)
    first = error.error_index
    if raised and any(index == first for _, index, _ in raised):
        # A worker that dies closes its connections, so its peers often raise too, a moment
        # later; the earliest traceback is the cause, the others its consequence.
        first = raised[0][1]
    pid = context.processes[first].pid
    worker = f"Worker with rank {rank_of(first)} (pid {pid})"
    if raised and raised[0][1] == first:
        message = (
            f"{worker} raised an exception; all workers were stopped. Its traceback:"
            f"\n\n{raised[0][2]}"
        )
    elif isinstance(error, mp.ProcessExitedException):
        how = (
            f"was killed by {error.signal_name} (out of memory?)"
            if error.signal_name
            else f"exited with code {error.exit_code}"
        )
        message = f"{worker} {how}; all workers were stopped."
    else:
        message = f"{worker} failed:{error}"
    others = [(rank_of(index), tb) for _, index, tb in raised if index != first]
    if others:
        message += "\nAlso failed afterwards, probably as a consequence:\n" + "\n".join(
            f"  rank {rank}: {tb.strip().splitlines()[-1]}" for rank, tb in others
        )
    return WorkerFailedError(message, rank=rank_of(first), pid=pid, index=first)


def stopped_workers(processes: Sequence[Any]) -> List[int]:
    """Local indices of the live workers that are stopped (SIGSTOP, a debugger); Linux only.

    The launching process polls this while it waits: once a worker fails, the others are
    killed, and a stopped one can no longer be told from the rest.
    """
    return [i for i, p in enumerate(processes) if p.is_alive() and _is_stopped(p.pid)]


def _is_stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (state T: SIGSTOP, or t: traced); Linux only."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The state follows the command name, which is in parentheses and may hold spaces.
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except (OSError, IndexError):
        return False


def _stopped_failure(
    context: Any, stopped: Sequence[int], raised: List[Tuple[float, int, str]], rank_of: Callable
) -> WorkerStoppedError:
    index = stopped[0]
    pid = context.processes[index].pid
    waiting = sorted({rank_of(i) for _, i, _ in raised})
    who = f"rank {waiting[0]}" if len(waiting) == 1 else f"ranks {waiting}"
    if not waiting:
        who = "its peers"
    message = (
        f"Worker with rank {rank_of(index)} (pid {pid}) was stopped (SIGSTOP, a debugger?) and "
        f"{who} gave up waiting for it at the collective timeout; all workers were stopped."
    )
    return WorkerStoppedError(message, rank=rank_of(index), pid=pid, index=index)
