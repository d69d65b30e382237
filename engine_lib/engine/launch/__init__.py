"""``launch()``: run a function on every process of a (multi-machine) job.

Three ways to start a job end up in the same place, a process group with a local group per
machine (``comm.get_local_rank/size`` work) around a call of ``main_func(*args)``:

- ``python train_net.py --num-gpus N``: ``launch`` spawns N processes on this machine.
- ``torchrun ...``, ``srun ...`` or ``mpirun ...`` (with ``--launcher mpi``): the launcher
  started every process; ``launch`` reads the layout from the environment and spawns nothing.
- one process in all: ``main_func(*args)`` runs right here, without a process group.

The package, one concept per module: :mod:`.backends` (which launcher started this process:
one file per launcher, tried in one ordered list), :mod:`.job` (the job's layout),
:mod:`.rendezvous` and :mod:`.process_group` (forming the group), :mod:`.spawn` (the
workers), :mod:`.failures` and :mod:`.signals` (what the launching process reports and
forwards), :mod:`.exit_codes` (preemption). See ``docs/distributed.md`` for command lines.
"""

import logging
import os
from datetime import timedelta
from typing import Any, Callable, Optional, Tuple

from .backends import backend_named, detect_dist_env
from .failures import WorkerFailedError
from .job import DEFAULT_TIMEOUT, job_from_flags, job_from_launcher
from .process_group import run_in_process_group
from .rendezvous import DistributedInitError, hosting_rendezvous
from .spawn import spawn

__all__ = ["launch", "DEFAULT_TIMEOUT", "WorkerFailedError", "DistributedInitError"]

logger = logging.getLogger(__name__)


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: Tuple[Any, ...] = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
    backend: Optional[str] = None,
    launcher: Optional[str] = None,
    local_rank: Optional[int] = None,
) -> None:
    """Run ``main_func(*args)`` on every process of a job, one process per GPU (or CPU worker).

    Under torchrun, ``srun`` or (``launcher="mpi"``) ``mpirun`` this process joins the job
    its environment describes. Otherwise one process in all runs here without a group, one
    per machine runs here, and more are spawned; if one fails, all are stopped within seconds.
    Each process sets its CUDA device (NCCL), joins the process group and its machine's
    group, and runs ``main_func`` (picklable, like ``args``).

    Args:
        main_func (callable): the function every process runs.
        num_gpus_per_machine (int): processes per machine (GPUs, or CPU workers).
        num_machines (int): number of machines. Default: 1.
        machine_rank (int): index of this machine, in ``[0, num_machines)``. Default: 0.
        dist_url (str, optional): ``tcp://HOST:PORT`` of machine 0, ``file://PATH``, or
            ``"auto"``: this process hosts the rendezvous on a free loopback port (one
            machine only). Default: None, ``"auto"`` on one machine.
        args (tuple): positional arguments of ``main_func``. Default: ``()``.
        timeout (timedelta): of the rendezvous and of each collective. Default: 30 minutes.
        backend (str, optional): ``"nccl"`` or ``"gloo"``. Default: NCCL when each process
            gets a GPU (under a launcher: when CUDA is available), else gloo.
        launcher (str, optional): a backend's name or ``--launcher`` value; ``"none"``
            ignores launchers. Default: None, detect torchrun and srun.
        local_rank (int, optional): ``--local-rank`` of ``torch.distributed.launch``.

    Raises:
        ConfigError: inconsistent arguments or launcher environment.
        DistributedInitError: the process group could not be formed (in this process).
        WorkerFailedError: a spawned worker failed; names its rank, shows its traceback.
    """
    started = detect_dist_env(os.environ, num_gpus_per_machine, launcher, local_rank, dist_url)
    if launcher is not None:
        backend_named(launcher).prepare(os.environ)
    if started is not None:  # torchrun, srun or mpirun started every process: spawn none
        job = job_from_launcher(started, main_func, args, timeout, backend)
    else:
        job = job_from_flags(
            os.environ, main_func, args, num_gpus_per_machine, num_machines, machine_rank,
            dist_url, timeout, backend, launcher,
        )  # fmt: skip
    if job.world_size == 1:
        main_func(*args)
        return
    with hosting_rendezvous(job) as job:
        if job.local_rank is None:
            spawn(job)
        else:
            run_in_process_group(job, job.local_rank)
