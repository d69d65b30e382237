"""Start the workers of this machine and watch them until they end, or one fails.

The processes are started by ``torch.multiprocessing.start_processes``, which also writes
each worker's traceback to an error file. Its blocking ``spawn(join=True)`` does not serve:
it forwards no signal (:mod:`.signals`), treats the preemption exit code as a crash,
names the worker ``join`` noticed first rather than the first to fail, and gives a user
error as a traceback (:mod:`.failures`). torch's elastic agent (what torchrun runs) is not
used to spawn either: it reports every failure, a user error or a preemption included, as
a ``ChildFailedError`` summary, ends the group as failed on SIGTERM, and its c10d store
listens on every interface. Under torchrun the agent does this job and nothing is spawned.
"""

import dataclasses
import logging
import os
import tempfile
from typing import Any, List

import torch
import torch.multiprocessing as mp

from engine_lib.utils.errors import UserError

from .exit_codes import PREEMPTED_EXIT_CODE, TrainingPreempted
from .failures import describe_failure, load_user_error, save_user_error, stopped_workers
from .job import Job
from .process_group import run_in_process_group
from .signals import forwarding_signals

__all__ = ["spawn"]

logger = logging.getLogger(__name__)

# After a worker fails: how long the others get to exit by themselves, then (after SIGTERM)
# before SIGKILL. Short, because a survivor blocked in a collective never returns by itself,
# and one with a SIGTERM handler (preemption) only runs it once that collective returns.
_SHUTDOWN_GRACE_S = 3.0
# How often the launching process looks for stopped workers while it waits.
_POLL_S = 1.0


def spawn(job: Job) -> None:
    """Run ``job.local_world_size`` workers of ``job`` on this machine; return when all end.

    Raises:
        WorkerFailedError: a worker failed; every worker was stopped.
        UserError: the error a worker raised for bad input, as it was raised.
        TrainingPreempted: the workers saved a checkpoint after a preemption signal.
    """
    with tempfile.TemporaryDirectory(prefix="engine_lib_launch_") as user_error_dir:
        job = dataclasses.replace(job, user_error_dir=user_error_dir)
        context = mp.start_processes(
            _worker,
            args=(job,),
            nprocs=job.local_world_size,
            join=False,
            start_method="spawn",
        )
        stopped: List[int] = []
        with forwarding_signals(context.processes):
            try:
                # join() returns False while workers run; on the first failure it stops the
                # others (grace period, SIGTERM, grace period, SIGKILL) and raises. Between
                # calls, note the stopped workers: one is the cause when a peer times out.
                while not context.join(timeout=_POLL_S, grace_period=_SHUTDOWN_GRACE_S):
                    stopped = stopped_workers(context.processes)
            except mp.ProcessExitedException as e:
                if e.exit_code != PREEMPTED_EXIT_CODE:
                    raise describe_failure(
                        context, e, job.rank_of, stopped, user_error_dir
                    ) from None
                # The ranks saved and exited at the same iteration (they synchronize first),
                # so the others are gone or about to be: the job as a whole was preempted.
                for process in context.processes:
                    process.join(_SHUTDOWN_GRACE_S)
                logger.warning("The workers were preempted and saved a checkpoint; exiting.")
                raise TrainingPreempted(-1) from None
            except mp.ProcessRaisedException as e:
                failure = describe_failure(context, e, job.rank_of, stopped, user_error_dir)
                user_error = load_user_error(os.path.join(user_error_dir, f"{failure.index}.pkl"))
                raise (user_error or failure) from None
            finally:
                # Also reached on KeyboardInterrupt in this process: leave no worker behind.
                _stop(context.processes)
                for path in context.error_files:
                    if os.path.exists(path):
                        os.remove(path)


def _worker(local_rank: int, job: Job) -> None:
    """Entry point of a spawned process (module level, so that spawn can pickle it)."""
    if "OMP_NUM_THREADS" not in os.environ:
        # Like torchrun: share the cores between the processes instead of oversubscribing.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // job.local_world_size))
    try:
        run_in_process_group(job, local_rank)
    except UserError as e:
        # A mistake in the user's input, not a bug: the parent re-raises it as it is, so that
        # the user sees one line instead of a worker's traceback.
        save_user_error(e, os.path.join(job.user_error_dir, f"{local_rank}.pkl"))
        raise


def _stop(processes: List[Any]) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(_SHUTDOWN_GRACE_S)
        if process.is_alive():
            process.kill()
            process.join()
