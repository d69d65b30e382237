"""Launcher backends: which external launcher, if any, started this process.

:data:`BACKENDS` is the one place backends are chosen. They are tried in its order, and the
first whose variables are set describes the job; ``--launcher`` picks one instead. Adding a
launcher is one new file with a :class:`LauncherBackend` subclass plus one entry here.
"""

import logging
from typing import Mapping, Optional, Tuple, Type

from engine_lib.utils.errors import ConfigError

from .base import DistEnv, LauncherBackend, is_local_host
from .default import SpawnLauncher
from .mpi import MpiLauncher
from .slurm import SlurmLauncher, slurm_master_port
from .slurm_hostlist import parse_slurm_nodelist, parse_slurm_tasks_per_node
from .torchrun import TorchrunLauncher

__all__ = [
    "BACKENDS",
    "DistEnv",
    "LauncherBackend",
    "MpiLauncher",
    "SlurmLauncher",
    "SpawnLauncher",
    "TorchrunLauncher",
    "backend_named",
    "detect_dist_env",
    "is_local_host",
    "launcher_flags",
    "parse_slurm_nodelist",
    "parse_slurm_tasks_per_node",
    "slurm_master_port",
    "spawning_machines",
]

logger = logging.getLogger(__name__)

#: The backends, in the order they are tried. torchrun comes before SLURM: ``srun torchrun
#: ...`` sets both, and torchrun's variables describe the workers. Open MPI is only chosen
#: with ``--launcher mpi``. The default (spawn, ``--launcher none``) matches no
#: environment and stays last.
BACKENDS: Tuple[Type[LauncherBackend], ...] = (
    TorchrunLauncher,
    SlurmLauncher,
    MpiLauncher,
    SpawnLauncher,
)


def launcher_flags() -> Tuple[str, ...]:
    """The values ``--launcher`` accepts, the default (``none``) first."""
    flags = [backend.cli_flag() for backend in BACKENDS]
    return (flags[-1], *flags[:-1])


def backend_named(launcher: str) -> Type[LauncherBackend]:
    """The backend called ``launcher``: its name (``"torchrun"``) or ``--launcher`` value.

    This is where the spelling users type (``pytorch``, mmengine's) maps to the name
    (``torchrun``) used everywhere else.

    Raises:
        ConfigError: no backend has that name.
    """
    for backend in BACKENDS:
        if launcher in (backend.name, backend.cli_flag()):
            return backend
    raise ConfigError(
        f"Unknown launcher {launcher!r}: expected one of {', '.join(launcher_flags())}."
    )


def _find(
    env: Mapping[str, str], launcher: Optional[str], dist_url: Optional[str]
) -> Tuple[Optional[Type[LauncherBackend]], Optional[DistEnv]]:
    """The first backend in :data:`BACKENDS` (or the one named) whose variables are set."""
    if launcher is not None:
        forced = backend_named(launcher)
        forced.require(env)
        return forced, forced.detect(env, dist_url)
    for backend in BACKENDS:
        if backend.auto_detect:
            dist_env = backend.detect(env, dist_url)
            if dist_env is not None:
                return backend, dist_env
    return None, None


def detect_dist_env(
    env: Mapping[str, str],
    num_gpus_per_machine: int = 1,
    launcher: Optional[str] = None,
    local_rank: Optional[int] = None,
    dist_url: Optional[str] = None,
) -> Optional[DistEnv]:
    """Read the layout of the job that an external launcher started, from its variables.

    Without ``launcher``, the backends of :data:`BACKENDS` that detect themselves are tried
    in order (torchrun: ``RANK`` and ``WORLD_SIZE``; SLURM: ``SLURM_PROCID`` and a step id).
    ``launcher`` (``--launcher``) picks one instead and fails naming its missing variables;
    ``"none"`` ignores them all. A process with no launcher gets None: ``launch`` spawns.

    When each machine runs a single task of a backend whose tasks can be machines (SLURM)
    and ``num_gpus_per_machine > 1``, the task spawns its workers: None, and
    :func:`spawning_machines` gives the machines.

    ``local_rank`` (``--local-rank``, passed by the legacy ``torch.distributed.launch``)
    stands in for a missing ``LOCAL_RANK`` and must agree with the launcher's local rank.

    Args:
        env (Mapping[str, str]): the environment, usually ``os.environ``.
        num_gpus_per_machine (int): what the user asked ``launch`` for. Default: 1.
        launcher (str, optional): a backend's name or ``--launcher`` value; None: detect.
        local_rank (int, optional): the local rank given on the command line. Default: None.
        dist_url (str, optional): ``--dist-url``, the rendezvous of launchers that set none
            (``mpi`` without ``MASTER_ADDR``). Default: None.

    Returns:
        DistEnv or None: the layout, or None when no external launcher started this process.

    Raises:
        ConfigError: a launcher's variables are incomplete, not integers or inconsistent
            (the message names the variable), the chosen launcher's variables are missing,
            or ``local_rank`` contradicts the environment.
    """
    if local_rank is not None:
        if launcher is not None and backend_named(launcher) is SpawnLauncher:
            raise ConfigError(
                f"--local-rank {local_rank} is set by an external launcher, but --launcher none "
                "ignores launchers: drop one of them."
            )
        env = {**env, "LOCAL_RANK": env.get("LOCAL_RANK") or str(local_rank)}
    backend, dist_env = _find(env, launcher, dist_url)
    if dist_env is not None and _spawns_per_machine(backend, dist_env, num_gpus_per_machine):
        dist_env = None
    if local_rank is not None:
        if dist_env is None:
            raise ConfigError(
                f"--local-rank {local_rank} is given, but no launcher started this process "
                "(no RANK and WORLD_SIZE, as set by torch.distributed.launch or torchrun)."
            )
        if dist_env.local_rank != local_rank:
            raise ConfigError(
                f"--local-rank {local_rank} contradicts the {dist_env.launcher} environment, "
                f"where this process has local rank {dist_env.local_rank}."
            )
    return dist_env


def spawning_machines(
    env: Mapping[str, str], num_gpus_per_machine: int, launcher: Optional[str] = None
) -> Optional[DistEnv]:
    """The machines of a job with one task per machine, each spawning its own workers.

    ``srun --ntasks-per-node 1 train_net.py --num-gpus 8`` starts one task per machine; each
    spawns 8 workers (:func:`detect_dist_env` hands it back to ``launch``). The tasks then
    are the machines: ``world_size`` is the number of machines, ``rank`` this machine's
    rank, and ``init_method`` the rendezvous of machine 0.

    Args:
        env (Mapping[str, str]): the environment, usually ``os.environ``.
        num_gpus_per_machine (int): the workers each task spawns.
        launcher (str, optional): ``--launcher``; None: detect. Default: None.

    Returns:
        DistEnv or None: the layout of the machines, or None outside such a job.
    """
    if num_gpus_per_machine <= 1:
        return None
    if launcher is not None:
        candidates: Tuple[Type[LauncherBackend], ...] = (backend_named(launcher),)
    else:
        candidates = tuple(backend for backend in BACKENDS if backend.auto_detect)
    for backend in candidates:
        machines = backend.detect(env) if backend.tasks_can_be_machines else None
        if machines is not None and _spawns_per_machine(backend, machines, num_gpus_per_machine):
            return machines
    return None


def _spawns_per_machine(
    backend: Optional[Type[LauncherBackend]], dist_env: DistEnv, num_gpus_per_machine: int
) -> bool:
    return (
        backend is not None
        and backend.tasks_can_be_machines
        and dist_env.local_world_size == 1
        and num_gpus_per_machine > 1
    )
