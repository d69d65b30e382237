"""The description of a job every process needs to join it: :class:`Job`, and how it is made.

A job comes either from an external launcher's environment (:func:`job_from_launcher`) or
from ``launch``'s arguments (:func:`job_from_flags`), where a SLURM step of one task per
machine may supply the machines.
"""

import logging
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Mapping, Optional, Tuple
from urllib.parse import urlparse

import torch

from engine_lib.utils.errors import ConfigError

from .backends import DistEnv, backend_named, is_local_host, spawning_machines

__all__ = [
    "DEFAULT_RENDEZVOUS_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "Job",
    "job_from_flags",
    "job_from_launcher",
]

logger = logging.getLogger(__name__)

#: How long a collective waits for the other processes before failing (torch's is 30
#: minutes: a stopped or deadlocked worker would hold every other one that long).
DEFAULT_TIMEOUT = timedelta(minutes=5)
#: How long the processes of a one-machine job wait for each other to form the group. A job
#: of several machines started by hand waits the collective timeout instead.
DEFAULT_RENDEZVOUS_TIMEOUT = timedelta(seconds=60)


@dataclass(frozen=True)
class Job:
    """What every process needs to join the job; pickled to spawned processes.

    Attributes:
        main_func (callable): what every process runs, with ``args``.
        args (tuple): its positional arguments.
        backend (str): ``"nccl"`` or ``"gloo"``.
        world_size (int): number of processes.
        local_world_size (int): processes per machine.
        machine_rank (int): index of this machine.
        init_method (str): ``tcp://``, ``file://``, ``env://``, or ``"auto"`` until this
            process hosts the rendezvous (:func:`~.rendezvous.hosting_rendezvous`).
        address (str): ``host:port`` of the rendezvous, for error messages.
        timeout (timedelta): of every collective.
        local_rank (int, optional): this process's local rank when it is a worker of the
            job itself; None when it spawns the machine's ``local_world_size`` workers.
        store_in_parent (bool): the launching process hosts the TCPStore.
        user_error_dir (str): where spawned workers leave a ``UserError`` for the launching
            process ("" when nothing is spawned).
        rendezvous_timeout (timedelta, optional): of forming the group; None: ``timeout``.
    """

    main_func: Callable[..., Any]
    args: Tuple[Any, ...]
    backend: str
    world_size: int
    local_world_size: int
    machine_rank: int
    init_method: str
    address: str
    timeout: timedelta
    local_rank: Optional[int] = None
    store_in_parent: bool = False
    user_error_dir: str = ""
    rendezvous_timeout: Optional[timedelta] = None

    def rank_of(self, local_rank: int) -> int:
        """The global rank of the process with ``local_rank`` on this machine."""
        return self.machine_rank * self.local_world_size + local_rank


def job_from_launcher(
    dist_env: DistEnv,
    main_func: Callable[..., Any],
    args: Tuple[Any, ...],
    timeout: timedelta,
    backend: Optional[str],
) -> Job:
    """The job an external launcher started, as this process (one of its workers) sees it.

    ``backend`` None: NCCL if CUDA is available, else gloo.
    """
    logger.info(
        "Started by %s: rank %d of %d, local rank %d of %d; not spawning processes.",
        dist_env.launcher,
        dist_env.rank,
        dist_env.world_size,
        dist_env.local_rank,
        dist_env.local_world_size,
    )
    return Job(
        main_func=main_func,
        args=tuple(args),
        backend=backend or ("nccl" if torch.cuda.is_available() else "gloo"),
        world_size=dist_env.world_size,
        local_world_size=dist_env.local_world_size,
        machine_rank=dist_env.machine_rank,
        init_method=dist_env.init_method,
        address=f"{dist_env.master_addr}:{dist_env.master_port}",
        timeout=timeout,
        local_rank=dist_env.local_rank,
    )


def job_from_flags(
    env: Mapping[str, str],
    main_func: Callable[..., Any],
    args: Tuple[Any, ...],
    num_gpus_per_machine: int,
    num_machines: int,
    machine_rank: int,
    dist_url: Optional[str],
    timeout: timedelta,
    backend: Optional[str],
    launcher: Optional[str],
) -> Job:
    """The job ``launch``'s arguments describe; see :func:`~engine_lib.engine.launch.launch`.

    Raises:
        ConfigError: inconsistent arguments, or arguments that contradict a SLURM step.
    """
    machines = spawning_machines(env, num_gpus_per_machine, launcher)
    if machines is not None and machines.world_size > 1:
        num_machines, machine_rank, dist_url = _take_machines(
            machines, num_machines, machine_rank, dist_url
        )
    _check_layout(num_gpus_per_machine, num_machines, machine_rank)
    if dist_url is None:
        if num_machines > 1:
            raise ConfigError(
                f"num_machines={num_machines} needs dist_url: the tcp://HOST:PORT of machine 0."
            )
        dist_url = "auto"
    if dist_url == "auto" and num_machines > 1:
        raise ConfigError(
            'dist_url="auto" picks a port on localhost and works on one machine only; '
            f"with num_machines={num_machines} pass the tcp://HOST:PORT of machine 0."
        )
    if num_machines == 1 and num_gpus_per_machine > 1:
        _check_on_this_machine(dist_url)
    return Job(
        main_func=main_func,
        args=tuple(args),
        backend=backend or _default_backend(num_gpus_per_machine),
        world_size=num_machines * num_gpus_per_machine,
        local_world_size=num_gpus_per_machine,
        machine_rank=machine_rank,
        init_method=dist_url,
        address=urlparse(dist_url).netloc or dist_url,
        timeout=timeout,
        # One process per machine runs here; otherwise this process spawns the workers.
        local_rank=0 if num_gpus_per_machine == 1 else None,
        # The processes of one machine start together; machines are often started by hand.
        rendezvous_timeout=min(timeout, DEFAULT_RENDEZVOUS_TIMEOUT) if num_machines == 1 else None,
    )


def _take_machines(
    machines: DistEnv, num_machines: int, machine_rank: int, dist_url: Optional[str]
) -> Tuple[int, int, str]:
    """Take the machines of a launcher's job with one task per machine (each spawning).

    Without this, every machine would run a one-machine job of its own. Flags the user gave
    (``--num-machines`` > 1, a ``--dist-url`` off this host) must agree or win.
    """
    launcher = backend_named(machines.launcher)
    if num_machines not in (1, machines.world_size):
        raise ConfigError(
            f"--num-machines {num_machines} contradicts {launcher.job_title}, which runs one "
            f"task on each of {machines.world_size} machines."
        )
    if num_machines > 1 and machine_rank != machines.rank:
        raise ConfigError(
            f"--machine-rank {machine_rank} contradicts {launcher.rank_variable}={machines.rank} "
            "(one task per machine)."
        )
    # The default --dist-url is on this host: no rendezvous for other machines.
    if dist_url in (None, "auto") or is_local_host(urlparse(dist_url).hostname):
        dist_url = machines.init_method
    logger.info(
        "%s with one task per machine: machine %d of %d, rendezvous %s",
        launcher.job_title,
        machines.rank,
        machines.world_size,
        dist_url,
    )
    return machines.world_size, machines.rank, dist_url


def _check_on_this_machine(dist_url: str) -> None:
    """A one-machine job's rendezvous must be on this machine: fail now, not after a timeout."""
    parsed = urlparse(dist_url)
    if parsed.scheme != "tcp" or is_local_host(parsed.hostname):
        return
    try:
        addresses = socket.getaddrinfo(parsed.hostname, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise ConfigError(
            f"--dist-url {dist_url}: cannot resolve the host {parsed.hostname!r} ({e}); on one "
            "machine leave --dist-url at its default or pass auto."
        ) from e
    for family, _, _, _, address in addresses:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((address[0], 0))
                return
            except OSError:
                continue
    raise ConfigError(
        f"--dist-url {dist_url}: {parsed.hostname} is not an address of this machine, but the "
        "job runs on this machine only (--num-machines 1), so no process would ever answer "
        "there; leave --dist-url at its default, pass auto, or tcp://127.0.0.1:PORT."
    )


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
    # NCCL needs one GPU per process; a CPU job on a machine with GPUs passes "gloo".
    if torch.cuda.is_available() and num_gpus_per_machine <= torch.cuda.device_count():
        return "nccl"
    return "gloo"
