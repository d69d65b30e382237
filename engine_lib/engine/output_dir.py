"""One job per ``OUTPUT_DIR``, and no finished run lost: the directory lock and the fresh-run rule.

Two jobs writing one ``OUTPUT_DIR`` interleave their logs and leave the second job's
checkpoints under the first job's results. So a job holds an exclusive OS lock
(``fcntl.flock``) on ``OUTPUT_DIR/.engine_lib.lock`` for its whole life; the file also holds
a record of the holder (pid, host, start time, command) so that a second job can say who
holds it. Only the main process takes the lock; the others learn the outcome through a
collective, so every rank of the job stops with the same one line.

The OS releases a lock when its process dies, even on ``kill -9``; only the record stays.
A record whose lock is free is a stale lock: reported (with whether its process is gone) and
taken over with a warning.

A fresh run (neither ``--resume`` nor ``--eval-only``) in a directory holding a previous
run's checkpoints or ``metrics.json`` is refused unless ``--overwrite`` is given: see
:func:`check_fresh_run`.
"""

import atexit
import datetime
import fcntl
import glob
import json
import logging
import os
import shlex
import socket
import sys
from typing import Dict, List, Optional

from engine_lib.utils import comm
from engine_lib.utils.errors import UserError

__all__ = [
    "LOCK_FILE",
    "OutputDirInUseError",
    "PreviousRunError",
    "check_fresh_run",
    "lock_output_dir",
    "previous_run_files",
    "release_output_dir",
]

logger = logging.getLogger(__name__)

#: The lock file, inside ``OUTPUT_DIR``; removed when the job ends.
LOCK_FILE = ".engine_lib.lock"

# Open lock files of this process, by absolute OUTPUT_DIR: taking a lock this process already
# holds is a no-op (tests and notebooks call default_setup many times).
_HELD: Dict[str, int] = {}


class OutputDirInUseError(UserError):
    """Another job holds the lock on ``OUTPUT_DIR``."""


class PreviousRunError(UserError):
    """A fresh run would replace the files of a previous run in ``OUTPUT_DIR``."""


def _holder_record() -> Dict[str, object]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
    }


def _read_record(path: str) -> Dict[str, object]:
    try:
        with open(path) as f:
            record = json.load(f)
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(record: Dict[str, object]) -> str:
    if not record:
        return "a job that has not written its record yet"
    return (
        f"pid {record.get('pid')} on host {record.get('host')}, started "
        f"{record.get('started')}, command: {record.get('command')}"
    )


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _report_stale(record: Dict[str, object], path: str) -> None:
    if not record:
        return
    same_host = record.get("host") == socket.gethostname()
    if same_host and not _pid_alive(record.get("pid")):
        why = "its process is gone"
    elif same_host:
        why = "its process id now belongs to another process"
    else:
        why = "its lock was released"
    logger.warning(
        "Taking over the stale lock %s of a job that ended without releasing it (%s; %s)",
        path,
        _describe(record),
        why,
    )


def _try_lock(output_dir: str) -> Optional[str]:
    """Take the lock in this process; return None, or the one-line reason it is held."""
    path = os.path.join(output_dir, LOCK_FILE)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _describe(_read_record(path))
            return (
                f"OUTPUT_DIR {output_dir!r} is in use by another job ({holder}); wait for it "
                "to end, or give this job another OUTPUT_DIR"
            )
        # The holder before us may have removed the file between our open and our lock:
        # then we locked a file nobody else sees, so start again on the new one.
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    _report_stale(_read_record(path), path)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(_holder_record()).encode())
    _HELD[os.path.abspath(output_dir)] = fd
    return None


def lock_output_dir(output_dir: str, if_exists: bool = False) -> None:
    """Hold the job's exclusive lock on ``output_dir`` until :func:`release_output_dir` or exit.

    Collective when distributed: the main process takes the lock and every process raises
    the same error if it could not. ``output_dir`` must exist (an empty one does nothing).

    Args:
        output_dir (str): the job's ``OUTPUT_DIR``.
        if_exists (bool): do nothing if the main process does not see the directory (it is
            locked when it is created). Every process must pass the same. Default: False.

    Raises:
        OutputDirInUseError: another job holds the lock; the message names its pid, host,
            start time and command.
    """
    if not output_dir:
        return
    error = None
    if comm.is_main_process() and os.path.abspath(output_dir) not in _HELD:
        if not if_exists or os.path.isdir(output_dir):
            error = _try_lock(output_dir)
    if comm.get_world_size() > 1:
        error = comm.all_gather(error)[0]
    if error is not None:
        raise OutputDirInUseError(error)


def release_output_dir(output_dir: Optional[str] = None) -> None:
    """Remove the lock file and release the lock on ``output_dir`` (all held ones if None)."""
    dirs = list(_HELD) if output_dir is None else [os.path.abspath(output_dir)]
    for key in dirs:
        fd = _HELD.pop(key, None)
        if fd is None:
            continue
        try:
            # Removed while still locked, so a job waiting on it never sees a file of ours.
            os.unlink(os.path.join(key, LOCK_FILE))
        except OSError:
            pass
        os.close(fd)


atexit.register(release_output_dir)


def previous_run_files(output_dir: str) -> List[str]:
    """The files of ``output_dir`` that belong to a finished or started run (sorted names)."""
    if not output_dir or not os.path.isdir(output_dir):
        return []
    names = [os.path.basename(p) for p in glob.glob(os.path.join(output_dir, "model_*.pth"))]
    names += [
        n
        for n in ("last_checkpoint", "metrics.json")
        if os.path.exists(os.path.join(output_dir, n))
    ]
    return sorted(names)


def check_fresh_run(output_dir: str, resume: object, eval_only: bool, overwrite: bool) -> None:
    """Refuse to start a fresh run over a previous run's checkpoints or ``metrics.json``.

    Collective when distributed (the main process looks, every process raises). Call it once
    the inputs are known to be good, just before the run writes ``OUTPUT_DIR``: with
    ``overwrite`` the previous run's checkpoints, ``last_checkpoint`` and ``metrics.json`` are
    removed here, so that a later ``--resume`` can never continue the old run by mistake.

    Args:
        output_dir (str): the job's ``OUTPUT_DIR``.
        resume (bool or str): ``args.resume``; a resumed run continues the previous one.
        eval_only (bool): ``args.eval_only``; evaluation writes its own files only.
        overwrite (bool): ``args.overwrite``: the user accepts that the files are replaced.

    Raises:
        PreviousRunError: naming the directory, the files and the three ways out.
    """
    if resume or eval_only:
        return
    error = None
    if comm.is_main_process():
        error = _check_or_clear(output_dir, overwrite)
    if comm.get_world_size() > 1:
        error = comm.all_gather(error)[0]
    if error is not None:
        raise PreviousRunError(error)


def _check_or_clear(output_dir: str, overwrite: bool) -> Optional[str]:
    found = previous_run_files(output_dir)
    if not found:
        return None
    if not overwrite:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        return (
            f"OUTPUT_DIR {output_dir!r} holds a previous run ({shown}); add --resume to "
            "continue it, give another OUTPUT_DIR, or add --overwrite to replace it"
        )
    logger.warning("--overwrite: removing the previous run's %s", ", ".join(found))
    for name in found:
        os.remove(os.path.join(output_dir, name))
    return None
