"""``launch()``: run a function on every process of a (multi-machine) job.

Three ways to start a job end up in the same place, a process group with a local group per
machine (``comm.get_local_rank/size`` work) around a call of ``main_func(*args)``:

- ``python train_net.py --num-gpus N``: ``launch`` spawns N processes on this machine.
- ``torchrun ...``, ``srun ...`` or ``mpirun ...`` (with ``--launcher mpi``): the launcher
  started every process; ``launch`` reads the layout from the environment
  (:mod:`engine_lib.engine.dist_env`) and spawns nothing.
- one process in all: ``main_func(*args)`` runs right here, without a process group.

See ``docs/distributed.md`` for command lines.
"""

import dataclasses
import logging
import os
import pickle
import signal
import socket
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, List, Optional, Tuple
from urllib.parse import urlparse

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from engine_lib.engine.dist_env import (
    DistEnv,
    detect_dist_env,
    is_local_host,
    slurm_spawn_layout,
)
from engine_lib.engine.hooks.preemption import PREEMPTED_EXIT_CODE, TrainingPreempted
from engine_lib.utils import comm
from engine_lib.utils.errors import ConfigError, UserError

__all__ = ["launch", "DEFAULT_TIMEOUT", "WorkerFailedError", "DistributedInitError"]

logger = logging.getLogger(__name__)

#: How long a collective or the rendezvous waits for the other processes before failing.
DEFAULT_TIMEOUT = timedelta(minutes=30)

# After a worker fails: how long the others get to exit by themselves, then (after SIGTERM)
# before SIGKILL. Short, because a survivor blocked in a collective never returns by itself,
# and one with a SIGTERM handler (preemption) only runs it once that collective returns.
_SHUTDOWN_GRACE_S = 3.0

# Signals the launching process passes on to its workers instead of dying of them: a
# scheduler may signal only the process it started, and the workers must see it to save a
# checkpoint (SOLVER.PREEMPT_SIGNALS; a worker without a handler for one dies of it).
_FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

# What torchrun sets for its workers and launch(launcher="none") removes.
_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK")


class WorkerFailedError(RuntimeError):
    """A process spawned by :func:`launch` failed; the job was stopped.

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
        self.index = index  # local index of the worker on this machine


class DistributedInitError(UserError, RuntimeError):
    """The process group could not be formed (master unreachable, port in use, ...)."""


@dataclass(frozen=True)
class _Job:
    """What every worker needs to join the job; pickled to spawned processes."""

    main_func: Callable[..., Any]
    args: Tuple[Any, ...]
    backend: str
    world_size: int
    local_world_size: int
    machine_rank: int
    init_method: str
    address: str  # host:port of the rendezvous server, for error messages
    timeout: timedelta
    store_in_parent: bool  # the launching process hosts the TCPStore ("auto" URL)
    # Where spawned workers leave a UserError for the parent to re-raise ("" = not spawned).
    user_error_dir: str = ""


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

    - Started by torchrun, ``srun`` or (with ``launcher="mpi"``) ``mpirun``, see
      :func:`~engine_lib.engine.dist_env.detect_dist_env`: no process is spawned; this
      process joins the job described by the environment, and ``num_gpus_per_machine``,
      ``num_machines`` and ``machine_rank`` are ignored (``dist_url`` too, except as the
      rendezvous of an mpirun job without ``MASTER_ADDR``).
    - World size 1: ``main_func(*args)`` is called in this process, without a process group.
    - One process per machine: it runs in this process (nothing to spawn).
    - Otherwise ``num_gpus_per_machine`` processes are spawned. If one of them fails, the
      others are stopped within seconds and :class:`WorkerFailedError` is raised here with
      the failing worker's rank and traceback.

    Each process sets its CUDA device to its local rank (when the backend uses CUDA), joins
    the process group, creates the per-machine group, runs ``main_func(*args)`` and destroys
    the group. ``main_func`` and ``args`` must be picklable (a module-level function).

    Args:
        main_func (callable): the function every process runs.
        num_gpus_per_machine (int): processes per machine, one per GPU. On CPU, the number of
            CPU worker processes.
        num_machines (int): number of machines. Default: 1.
        machine_rank (int): index of this machine, in ``[0, num_machines)``. Default: 0.
        dist_url (str, optional): ``tcp://HOST:PORT`` of machine 0 (the same on every
            machine), ``file://PATH`` on a shared file system, or ``"auto"``: a free port on
            localhost, single machine only. None: ``"auto"`` on one machine (an error on
            several). With ``"auto"`` this process holds the rendezvous server on a port the
            OS picked, so no other program can take the port between picking and binding.
        args (tuple): positional arguments of ``main_func``. Default: ``()``.
        timeout (timedelta): how long the rendezvous and each collective wait for the other
            processes. Default: :data:`DEFAULT_TIMEOUT` (30 minutes).
        backend (str, optional): ``"nccl"`` or ``"gloo"``. None: NCCL when CUDA is available
            and has at least ``num_gpus_per_machine`` devices, else gloo. A CPU job on a
            machine with GPUs must pass ``"gloo"`` (``tools/train_net.py`` does so when
            ``MODEL.DEVICE`` is ``cpu``). Under torchrun/srun, None means NCCL if CUDA is
            available.
        launcher (str, optional): ``--launcher``: ``"none"`` ignores the variables of
            external launchers (and removes torchrun's from this process's environment),
            ``"pytorch"``, ``"slurm"`` or ``"mpi"`` require theirs. None: detect torchrun and
            srun. Default: None.
        local_rank (int, optional): ``--local-rank`` of the legacy
            ``torch.distributed.launch``: stands in for a missing ``LOCAL_RANK``. Default: None.

    Raises:
        ConfigError: inconsistent arguments (e.g. ``machine_rank >= num_machines``) or
            launcher environment.
        DistributedInitError: the process group could not be formed (in this process).
        WorkerFailedError: a spawned worker failed.

    Example:
        >>> launch(main, args.num_gpus, num_machines=args.num_machines,
        ...        machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
    """
    dist_env = detect_dist_env(
        os.environ,
        num_gpus_per_machine,
        launcher=launcher,
        local_rank=local_rank,
        dist_url=dist_url,
    )
    if launcher == "none":
        _forget_torchrun_variables()
    if dist_env is not None:
        _launch_from_env(main_func, args, dist_env, timeout, backend)
        return
    machines = slurm_spawn_layout(os.environ, num_gpus_per_machine, launcher)
    if machines is not None and machines.world_size > 1:
        num_machines, machine_rank, dist_url = _slurm_machines(
            machines, num_machines, machine_rank, dist_url
        )
    _check_layout(num_gpus_per_machine, num_machines, machine_rank)
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:
        main_func(*args)
        return
    if backend is None:
        backend = _default_backend(num_gpus_per_machine)
    if dist_url is None:
        if num_machines > 1:
            raise ConfigError(
                f"num_machines={num_machines} needs dist_url: the tcp://HOST:PORT of machine 0."
            )
        dist_url = "auto"

    store = None  # a local, so that it lives until the workers are done with it
    if dist_url == "auto":
        if num_machines > 1:
            raise ConfigError(
                'dist_url="auto" picks a port on localhost and works on one machine only; '
                f"with num_machines={num_machines} pass the tcp://HOST:PORT of machine 0."
            )
        store = _host_rendezvous_store(world_size, timeout)
        dist_url = f"tcp://127.0.0.1:{store.port}"
    job = _Job(
        main_func=main_func,
        args=tuple(args),
        backend=backend,
        world_size=world_size,
        local_world_size=num_gpus_per_machine,
        machine_rank=machine_rank,
        init_method=dist_url,
        address=_address_of(dist_url),
        timeout=timeout,
        store_in_parent=store is not None,
    )
    if num_gpus_per_machine == 1:
        _run_in_process_group(job, rank=machine_rank, local_rank=0)
    else:
        _spawn(job)


def _slurm_machines(
    machines: DistEnv, num_machines: int, machine_rank: int, dist_url: Optional[str]
) -> Tuple[int, int, str]:
    """Take the machines of an srun step with one task per machine (each spawning workers).

    Without this, every machine would run a one-machine job of its own. Flags the user gave
    (``--num-machines`` > 1, a ``--dist-url`` off this host) must agree or win.
    """
    if num_machines not in (1, machines.world_size):
        raise ConfigError(
            f"--num-machines {num_machines} contradicts the SLURM step, which runs one task on "
            f"each of {machines.world_size} machines."
        )
    if num_machines > 1 and machine_rank != machines.rank:
        raise ConfigError(
            f"--machine-rank {machine_rank} contradicts SLURM_PROCID={machines.rank} (one task "
            "per machine)."
        )
    # The default --dist-url is on this host: no rendezvous for other machines.
    if dist_url in (None, "auto") or is_local_host(urlparse(dist_url).hostname):
        dist_url = machines.init_method
    logger.info(
        "SLURM step with one task per machine: machine %d of %d, rendezvous %s",
        machines.rank,
        machines.world_size,
        dist_url,
    )
    return machines.world_size, machines.rank, dist_url


def _forget_torchrun_variables() -> None:
    # comm.get_local_rank() and torch's env:// read them: a job that ignores its launcher must
    # not half-follow it, nor hand the variables down to the workers it spawns.
    ignored = [name for name in _TORCHRUN_VARIABLES if name in os.environ]
    for name in ignored:
        del os.environ[name]
    if ignored:
        logger.info("--launcher none: ignoring %s.", ", ".join(ignored))


def _check_layout(num_gpus_per_machine: int, num_machines: int, machine_rank: int) -> None:
    if num_gpus_per_machine < 1:
        raise ConfigError(f"num_gpus_per_machine must be >= 1, got {num_gpus_per_machine}.")
    if num_machines < 1:
        raise ConfigError(f"num_machines must be >= 1, got {num_machines}.")
    if not 0 <= machine_rank < num_machines:
        raise ConfigError(
            f"machine_rank={machine_rank} must be in [0, num_machines={num_machines})."
        )


def _default_backend(num_gpus_per_machine: int) -> str:
    if torch.cuda.is_available() and num_gpus_per_machine <= torch.cuda.device_count():
        return "nccl"
    return "gloo"


def _uses_cuda(backend: str) -> bool:
    return "nccl" in backend


def _address_of(url: str) -> str:
    parsed = urlparse(url)
    return parsed.netloc or url


def _host_rendezvous_store(world_size: int, timeout: timedelta) -> dist.TCPStore:
    # Port 0: the OS binds a free port atomically, so there is no pick-then-bind race. The
    # socket is bound here because TCPStore itself listens on every interface: the store
    # has no authentication, so it must not be reachable from the network.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
    except OSError:
        listener.close()
        raise
    return dist.TCPStore(
        "127.0.0.1",
        port,
        world_size,
        is_master=True,
        timeout=timeout,
        wait_for_workers=False,
        master_listen_fd=listener.detach(),  # the store owns the socket from now on
    )


def _launch_from_env(
    main_func: Callable[..., Any],
    args: Tuple[Any, ...],
    dist_env: DistEnv,
    timeout: timedelta,
    backend: Optional[str],
) -> None:
    logger.info(
        "Started by %s: rank %d of %d, local rank %d of %d; not spawning processes.",
        dist_env.launcher,
        dist_env.rank,
        dist_env.world_size,
        dist_env.local_rank,
        dist_env.local_world_size,
    )
    if dist_env.world_size == 1:
        main_func(*args)
        return
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    job = _Job(
        main_func=main_func,
        args=tuple(args),
        backend=backend,
        world_size=dist_env.world_size,
        local_world_size=dist_env.local_world_size,
        machine_rank=dist_env.machine_rank,
        init_method=dist_env.init_method,
        address=f"{dist_env.master_addr}:{dist_env.master_port}",
        timeout=timeout,
        store_in_parent=False,
    )
    _run_in_process_group(job, rank=dist_env.rank, local_rank=dist_env.local_rank)


def _distributed_worker(local_rank: int, job: _Job) -> None:
    """Entry point of a spawned process (module level, so that spawn can pickle it)."""
    if "OMP_NUM_THREADS" not in os.environ:
        # Like torchrun: share the cores between the processes instead of oversubscribing.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // job.local_world_size))
    rank = job.machine_rank * job.local_world_size + local_rank
    try:
        _run_in_process_group(job, rank=rank, local_rank=local_rank)
    except UserError as e:
        # A mistake in the user's input, not a bug: the parent re-raises it as it is, so that
        # the user sees one line instead of a worker's traceback.
        if job.user_error_dir:
            _save_user_error(e, os.path.join(job.user_error_dir, f"{local_rank}.pkl"))
        raise


def _save_user_error(error: UserError, path: str) -> None:
    try:
        data = pickle.dumps(error)
        pickle.loads(data)  # an exception with unusual arguments may not load back
    except Exception:
        data = pickle.dumps(UserError(str(error)))
    with open(path, "wb") as f:
        f.write(data)


def _load_user_error(path: str) -> Optional[UserError]:
    # The file was written by a worker of this job, into a directory this process created.
    try:
        with open(path, "rb") as f:
            error = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None
    return error if isinstance(error, UserError) else None


def _run_in_process_group(job: _Job, rank: int, local_rank: int) -> None:
    if _uses_cuda(job.backend):
        # Before the group exists, so that NCCL binds this process to its own GPU.
        _set_cuda_device(local_rank)
    _init_process_group(job, rank)
    succeeded = False
    try:
        comm.create_local_process_group(job.local_world_size)
        comm.synchronize()
        job.main_func(*job.args)
        succeeded = True
    finally:
        # After a failure peers may still wait in a collective, and NCCL's teardown can then
        # block: leave it to process exit. Gloo's is immediate, and lets a caller that catches
        # the error (a notebook, a test) form a new group in this process.
        if dist.is_initialized() and (succeeded or not _uses_cuda(job.backend)):
            dist.destroy_process_group()
            # Also free the groups comm caches: their threads must stop now, not while the
            # interpreter shuts down, where that can abort the process.
            comm.release_process_groups()


def _set_cuda_device(local_rank: int) -> None:
    count = torch.cuda.device_count()
    if local_rank < count:
        torch.cuda.set_device(local_rank)
    elif count == 1:
        # srun --gpus-per-task / --gpu-bind: each task sees only its own GPU.
        torch.cuda.set_device(0)
    else:
        raise ConfigError(
            f"Process with local rank {local_rank} needs a GPU, but only {count} are visible "
            "(CUDA_VISIBLE_DEVICES); use fewer processes per machine, or backend 'gloo' on CPU."
        )


def _init_process_group(job: _Job, rank: int) -> None:
    try:
        if job.store_in_parent:
            parsed = urlparse(job.init_method)
            store = dist.TCPStore(
                parsed.hostname, parsed.port, job.world_size, is_master=False, timeout=job.timeout
            )
            dist.init_process_group(
                job.backend, store=store, rank=rank, world_size=job.world_size, timeout=job.timeout
            )
        else:
            dist.init_process_group(
                job.backend,
                init_method=job.init_method,
                rank=rank,
                world_size=job.world_size,
                timeout=job.timeout,
            )
    except (RuntimeError, ValueError) as e:
        raise DistributedInitError(_init_error_message(e, job, rank)) from e


def _init_error_message(error: Exception, job: _Job, rank: int) -> str:
    text = str(error).strip()
    reason = f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
    if "EADDRINUSE" in text or "address already in use" in text.lower():
        return (
            f"Rank 0 could not start the rendezvous server at {job.address}: the port is in use "
            "(another job on this machine?). On one machine pass --dist-url auto; otherwise "
            f"choose another free port in --dist-url tcp://HOST:PORT. ({reason})"
        )
    if rank == 0:
        waited = f"for the other {job.world_size - 1} processes to join at {job.address}"
    else:
        waited = f"to reach the rendezvous server of rank 0 at {job.address}"
    return (
        f"Process {rank} of {job.world_size} gave up after {job.timeout} waiting {waited} "
        f"({reason}). Check that: the machine with --machine-rank 0 is running and reachable "
        "at that address from every machine (host name or IP, a firewall blocking the port); "
        "every machine was started with the same --dist-url and --num-machines and its own "
        "--machine-rank; all machines were started within the timeout."
    )


def _spawn(job: _Job) -> None:
    with tempfile.TemporaryDirectory(prefix="engine_lib_launch_") as user_error_dir:
        job = dataclasses.replace(job, user_error_dir=user_error_dir)
        context = mp.start_processes(
            _distributed_worker,
            args=(job,),
            nprocs=job.local_world_size,
            join=False,
            start_method="spawn",
        )
        previous_handlers = _forward_signals(context.processes)
        try:
            # join() returns False while workers run; on the first failure it stops the
            # others (grace period, SIGTERM, grace period, SIGKILL) and raises.
            while not context.join(grace_period=_SHUTDOWN_GRACE_S):
                pass
        except mp.ProcessExitedException as e:
            if e.exit_code != PREEMPTED_EXIT_CODE:
                raise _worker_failure(context, e, job) from None
            # The ranks saved and exited at the same iteration (they synchronize first), so
            # the others are gone or about to be: the job as a whole was preempted.
            for process in context.processes:
                process.join(_SHUTDOWN_GRACE_S)
            logger.warning("The workers were preempted and saved a checkpoint; exiting.")
            raise TrainingPreempted(-1) from None
        except mp.ProcessRaisedException as e:
            failure = _worker_failure(context, e, job)
            user_error = _load_user_error(os.path.join(user_error_dir, f"{failure.index}.pkl"))
            if user_error is not None:
                raise user_error from None
            raise failure from None
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            # Also reached on KeyboardInterrupt in this process: never leave a worker behind.
            _stop(context.processes)
            for path in context.error_files:
                if os.path.exists(path):
                    os.remove(path)


def _forward_signals(processes: List[Any]) -> dict:
    """Pass the preemption signals this process receives on to the workers.

    Returns:
        dict: the previous handlers, by signal, to restore.
    """

    def forward(signum: int, frame: Any) -> None:
        for process in processes:
            if process.is_alive():
                try:
                    os.kill(process.pid, signum)
                except ProcessLookupError:
                    pass

    previous = {}
    for sig in _FORWARDED_SIGNALS:
        try:
            previous[sig] = signal.signal(sig, forward)
        except ValueError:  # not the main thread: signals cannot be handled here
            break
    return previous


def _stop(processes: List[Any]) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(_SHUTDOWN_GRACE_S)
        if process.is_alive():
            process.kill()
            process.join()


def _worker_failure(context: Any, error: Exception, job: _Job) -> WorkerFailedError:
    """Describe the worker that failed first, from the traceback files the workers wrote."""

    def rank_of(index: int) -> int:
        return job.machine_rank * job.local_world_size + index

    raised = []  # (time written, local index, traceback) of every worker that raised
    for index, path in enumerate(context.error_files):
        try:
            with open(path, "rb") as f:
                raised.append((os.path.getmtime(path), index, pickle.load(f)))
        except (OSError, EOFError, pickle.UnpicklingError):
            continue
    raised.sort()
    first = error.error_index
    if raised and any(index == first for _, index, _ in raised):
        # A worker that dies closes its connections, so its peers often raise too, a moment
        # later; the earliest traceback is the cause, the others its consequence.
        first = raised[0][1]
    pid = context.processes[first].pid
    if raised and raised[0][1] == first:
        message = (
            f"Worker with rank {rank_of(first)} (pid {pid}) raised an exception; all workers "
            f"were stopped. Its traceback:\n\n{raised[0][2]}"
        )
    elif isinstance(error, mp.ProcessExitedException):
        how = (
            f"was killed by {error.signal_name} (out of memory?)"
            if error.signal_name
            else f"exited with code {error.exit_code}"
        )
        message = f"Worker with rank {rank_of(first)} (pid {pid}) {how}; all workers were stopped."
    else:
        message = f"Worker with rank {rank_of(first)} (pid {pid}) failed:{error}"
    others = [(rank_of(index), tb) for _, index, tb in raised if index != first]
    if others:
        message += "\nAlso failed afterwards, probably as a consequence:\n" + "\n".join(
            f"  rank {rank}: {tb.strip().splitlines()[-1]}" for rank, tb in others
        )
    return WorkerFailedError(message, rank=rank_of(first), pid=pid, index=first)
