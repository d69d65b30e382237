"""Recognise a job whose processes were started by torchrun, SLURM's ``srun`` or ``mpirun``.

Such a launcher starts every process itself, so :func:`~engine_lib.engine.launch.launch`
must not spawn more: it only reads where this process sits in the job from the environment.
torchrun and srun are recognised by their variables; Open MPI's only when asked for
(``--launcher mpi``), and ``--launcher`` can force or forbid any of them.
:func:`detect_dist_env` is a pure function of an environment mapping so that each rule can be
unit-tested with a fake ``dict``.
"""

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlparse

from engine_lib.utils.errors import ConfigError

__all__ = [
    "LAUNCHERS",
    "DistEnv",
    "detect_dist_env",
    "is_local_host",
    "parse_slurm_nodelist",
    "parse_slurm_tasks_per_node",
    "slurm_master_port",
    "slurm_spawn_layout",
]

logger = logging.getLogger(__name__)

# Variables torchrun (torch.distributed.run) sets in every worker; RANK + WORLD_SIZE mark one.
_TORCHRUN_REQUIRED = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

#: The values of ``--launcher``: ``none`` ignores launcher variables, the others require them.
LAUNCHERS = ("none", "pytorch", "slurm", "mpi")

# Variables Open MPI's mpirun sets in every process it starts.
_MPI_REQUIRED = (
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_LOCAL_SIZE",
)
_LOCAL_HOSTS = ("localhost", "::1", "0.0.0.0")


def is_local_host(host: Optional[str]) -> bool:
    """Whether ``host`` (of a ``--dist-url``) names this machine only: loopback or any."""
    return bool(host) and (host in _LOCAL_HOSTS or host.startswith("127."))


# Ports derived from a SLURM job id fall in [_SLURM_PORT_BASE, _SLURM_PORT_BASE + _SLURM_PORT_SPAN):
# below Linux's ephemeral range (32768+), so an outgoing connection cannot already hold them.
_SLURM_PORT_BASE = 15000
_SLURM_PORT_SPAN = 15000


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a job started by an external launcher.

    Ranks are laid out machine after machine: machine ``m`` holds ranks
    ``[m * local_world_size, (m + 1) * local_world_size)``.

    Attributes:
        launcher (str): ``"torchrun"``, ``"slurm"`` or ``"mpi"``.
        rank (int): global rank of this process.
        world_size (int): number of processes in the job.
        local_rank (int): rank among the processes of this machine (its GPU index).
        local_world_size (int): number of processes on each machine.
        master_addr (str): host of the rendezvous server (rank 0's machine).
        master_port (int): port of the rendezvous server.
    """

    launcher: str
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int

    @property
    def machine_rank(self) -> int:
        """Index of this machine in the job."""
        return self.rank // self.local_world_size

    @property
    def num_machines(self) -> int:
        """Number of machines in the job."""
        return self.world_size // self.local_world_size

    @property
    def init_method(self) -> str:
        """The ``init_method`` of ``init_process_group``.

        ``env://`` under torchrun: its agent may already host the store at ``MASTER_PORT``
        (``TORCHELASTIC_USE_AGENT_STORE``), which torch's ``env://`` joins instead of
        binding the port a second time. ``tcp://MASTER_ADDR:MASTER_PORT`` under SLURM and
        Open MPI.
        """
        if self.launcher == "torchrun":
            return "env://"
        host = f"[{self.master_addr}]" if ":" in self.master_addr else self.master_addr
        return f"tcp://{host}:{self.master_port}"


def detect_dist_env(
    env: Mapping[str, str],
    num_gpus_per_machine: int = 1,
    launcher: Optional[str] = None,
    local_rank: Optional[int] = None,
    dist_url: Optional[str] = None,
) -> Optional[DistEnv]:
    """Read the job layout set by torchrun, srun or mpirun from environment variables.

    ``launcher`` (``--launcher``) overrides the rules below: ``"none"`` ignores every
    launcher variable (None: spawn), ``"pytorch"`` applies rule 1 and ``"slurm"`` rule 2,
    failing when their variables are missing, and ``"mpi"`` reads Open MPI's
    ``OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE}`` and takes the rendezvous from
    ``MASTER_ADDR`` and ``MASTER_PORT`` or, without them, from ``dist_url``.

    Without ``launcher``, the rules, in order:

    1. ``RANK`` and ``WORLD_SIZE`` set: a torchrun job (or the same variables set by hand).
       ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` are then required;
       ``LOCAL_WORLD_SIZE`` defaults to ``WORLD_SIZE`` (one machine).
    2. ``SLURM_PROCID`` and ``SLURM_STEP_ID`` (or ``SLURM_STEPID``) set: a task of an ``srun``
       step (a batch script alone has no step id), used when it has one task per GPU. If
       this machine runs a single task and ``num_gpus_per_machine > 1``, the task is meant
       to spawn its workers itself (``srun --ntasks-per-node 1 ... --num-gpus 8``): None.
       The master address is ``MASTER_ADDR`` or the first host of the step's node list; the
       port is ``MASTER_PORT`` or one derived from ``SLURM_JOB_ID``.
    3. Otherwise None: :func:`launch` spawns the processes itself.

    ``local_rank`` (``--local-rank``, passed by the legacy ``torch.distributed.launch``)
    stands in for a missing ``LOCAL_RANK`` and must agree with the launcher's local rank.

    Args:
        env (Mapping[str, str]): the environment, usually ``os.environ``.
        num_gpus_per_machine (int): what the user asked ``launch`` for. Default: 1.
        launcher (str, optional): one of :data:`LAUNCHERS`; None: detect. Default: None.
        local_rank (int, optional): the local rank given on the command line. Default: None.
        dist_url (str, optional): ``tcp://HOST:PORT`` of rank 0, for ``"mpi"`` without
            ``MASTER_ADDR``. Default: None.

    Returns:
        DistEnv or None: the layout, or None when no external launcher started this process.

    Raises:
        ConfigError: a launcher's variables are incomplete, not integers or inconsistent
            (the message names the variable), the forced launcher's variables are missing,
            or ``local_rank`` contradicts the environment.
    """
    if launcher is not None and launcher not in LAUNCHERS:
        raise ConfigError(f"Unknown launcher {launcher!r}: expected one of {', '.join(LAUNCHERS)}.")
    if local_rank is not None:
        if launcher == "none":
            raise ConfigError(
                f"--local-rank {local_rank} is set by an external launcher, but --launcher none "
                "ignores launchers: drop one of them."
            )
        env = {**env, "LOCAL_RANK": env.get("LOCAL_RANK") or str(local_rank)}
    dist_env = _detect(env, num_gpus_per_machine, launcher, dist_url)
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


def _detect(
    env: Mapping[str, str],
    num_gpus_per_machine: int,
    launcher: Optional[str],
    dist_url: Optional[str],
) -> Optional[DistEnv]:
    if launcher == "none":
        return None
    if launcher == "mpi":
        return _mpi_env(env, dist_url)
    if launcher == "pytorch":
        _require(env, (_TORCHRUN_REQUIRED,), "pytorch", "torchrun")
    if launcher == "pytorch" or (launcher is None and "RANK" in env and "WORLD_SIZE" in env):
        return _torchrun_env(env)
    if launcher == "slurm":
        _require(
            env,
            (("SLURM_PROCID", "SLURM_LOCALID"), ("SLURM_STEP_ID", "SLURM_STEPID")),
            "slurm",
            "srun (in a batch script, start the training with srun)",
        )
    if launcher == "slurm" or (
        "SLURM_PROCID" in env and ("SLURM_STEP_ID" in env or "SLURM_STEPID" in env)
    ):
        dist_env = _slurm_env(env)
        if dist_env.local_world_size == 1 and num_gpus_per_machine > 1:
            return None
        return dist_env
    return None


def slurm_spawn_layout(
    env: Mapping[str, str], num_gpus_per_machine: int, launcher: Optional[str] = None
) -> Optional[DistEnv]:
    """The machines of an ``srun`` step with one task per machine that spawns its own workers.

    ``srun --ntasks-per-node 1 train_net.py --num-gpus 8`` starts one task per machine; each
    spawns 8 workers (rule 2 of :func:`detect_dist_env` hands it back to :func:`launch`).
    The tasks then are the machines: ``world_size`` is the number of machines, ``rank`` this
    machine's rank, and ``init_method`` the rendezvous of machine 0.

    Args:
        env (Mapping[str, str]): the environment, usually ``os.environ``.
        num_gpus_per_machine (int): the workers each task spawns.
        launcher (str, optional): ``--launcher``; only None and ``"slurm"`` read SLURM.

    Returns:
        DistEnv or None: the layout of the machines, or None outside such a step.
    """
    if launcher not in (None, "slurm") or num_gpus_per_machine <= 1:
        return None
    if "SLURM_PROCID" not in env or not ("SLURM_STEP_ID" in env or "SLURM_STEPID" in env):
        return None
    machines = _slurm_env(env)
    return machines if machines.local_world_size == 1 else None


def _require(
    env: Mapping[str, str], groups: Sequence[Sequence[str]], launcher: str, started_by: str
) -> None:
    """Fail naming what is missing. ``groups[0]``: all required; later groups: one of each."""
    missing = [name for name in groups[0] if not env.get(name)]
    for alternatives in groups[1:]:
        if not any(env.get(name) for name in alternatives):
            missing.append(" or ".join(alternatives))
    if missing:
        raise ConfigError(
            f"--launcher {launcher} needs the environment variables set by {started_by}, "
            f"but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set."
        )


def _int_var(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ConfigError(
            f"Environment variable {name}={env[name]!r} must be an integer."
        ) from None


def _first_int_var(env: Mapping[str, str], names: tuple) -> int:
    for name in names:
        if env.get(name):
            return _int_var(env, name)
    raise ConfigError(f"SLURM job without any of the environment variables {', '.join(names)}.")


def _torchrun_env(env: Mapping[str, str]) -> DistEnv:
    missing = [name for name in _TORCHRUN_REQUIRED if not env.get(name)]
    if missing:
        raise ConfigError(
            f"RANK and WORLD_SIZE are set, as by torchrun, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not: set all of "
            f"{', '.join(_TORCHRUN_REQUIRED)} (and LOCAL_WORLD_SIZE on several machines), "
            "or unset RANK and WORLD_SIZE to let launch() start the processes."
        )
    world_size = _int_var(env, "WORLD_SIZE")
    local_world_size = (
        _int_var(env, "LOCAL_WORLD_SIZE") if env.get("LOCAL_WORLD_SIZE") else world_size
    )
    return _checked(
        DistEnv(
            launcher="torchrun",
            rank=_int_var(env, "RANK"),
            world_size=world_size,
            local_rank=_int_var(env, "LOCAL_RANK"),
            local_world_size=local_world_size,
            master_addr=env["MASTER_ADDR"],
            master_port=_int_var(env, "MASTER_PORT"),
        ),
        hint="LOCAL_WORLD_SIZE",
    )


def _mpi_env(env: Mapping[str, str], dist_url: Optional[str]) -> DistEnv:
    _require(env, (_MPI_REQUIRED,), "mpi", "Open MPI's mpirun")
    world_size = _int_var(env, "OMPI_COMM_WORLD_SIZE")
    local_world_size = _int_var(env, "OMPI_COMM_WORLD_LOCAL_SIZE")
    if env.get("MASTER_ADDR") or env.get("MASTER_PORT"):
        _require(env, (("MASTER_ADDR", "MASTER_PORT"),), "mpi", "you (mpirun -x NAME=VALUE)")
        master_addr, master_port = env["MASTER_ADDR"], _int_var(env, "MASTER_PORT")
    else:
        master_addr, master_port = _mpi_rendezvous_from_url(dist_url, world_size > local_world_size)
    return _checked(
        DistEnv(
            launcher="mpi",
            rank=_int_var(env, "OMPI_COMM_WORLD_RANK"),
            world_size=world_size,
            local_rank=_int_var(env, "OMPI_COMM_WORLD_LOCAL_RANK"),
            local_world_size=local_world_size,
            master_addr=master_addr,
            master_port=master_port,
        ),
        hint="mpirun --map-by ppr:N:node",
    )


def _mpi_rendezvous_from_url(dist_url: Optional[str], several_machines: bool) -> Tuple[str, int]:
    expected = (
        "--launcher mpi needs the address of rank 0: set MASTER_ADDR and MASTER_PORT "
        "(mpirun -x MASTER_ADDR=HOST -x MASTER_PORT=PORT) or pass --dist-url tcp://HOST:PORT"
    )
    parsed = urlparse(dist_url or "")
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme != "tcp" or not parsed.hostname or port is None:
        raise ConfigError(f"{expected}; got --dist-url {dist_url!r}.")
    host = parsed.hostname
    if several_machines and is_local_host(host):
        raise ConfigError(
            f"{expected}, reachable from every machine; --dist-url {dist_url} points to the "
            "local machine, but the mpirun job spans several machines."
        )
    return host, port


def _slurm_env(env: Mapping[str, str]) -> DistEnv:
    world_size = _first_int_var(env, ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS"))
    return _checked(
        DistEnv(
            launcher="slurm",
            rank=_int_var(env, "SLURM_PROCID"),
            world_size=world_size,
            local_rank=_first_int_var(env, ("SLURM_LOCALID",)),
            local_world_size=_slurm_tasks_per_node(env, world_size),
            master_addr=env.get("MASTER_ADDR") or _slurm_master_addr(env),
            master_port=(
                _int_var(env, "MASTER_PORT")
                if env.get("MASTER_PORT")
                else slurm_master_port(env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID"))
            ),
        ),
        hint="srun --ntasks-per-node",
    )


def _slurm_tasks_per_node(env: Mapping[str, str], world_size: int) -> int:
    # The step's own layout first: inside an allocation, srun may use fewer tasks per node.
    for name in ("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"):
        if env.get(name):
            counts = parse_slurm_tasks_per_node(env[name])
            if len(set(counts)) != 1:
                raise ConfigError(
                    f"{name}={env[name]!r}: the machines run different numbers of tasks; "
                    "use the same number on every machine (srun --ntasks-per-node N)."
                )
            return counts[0]
    if env.get("SLURM_NTASKS_PER_NODE"):
        return _int_var(env, "SLURM_NTASKS_PER_NODE")
    return world_size


def _slurm_master_addr(env: Mapping[str, str]) -> str:
    for name in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"):
        if env.get(name):
            return _first_host(env[name], name)
    raise ConfigError(
        "SLURM job without SLURM_STEP_NODELIST, SLURM_JOB_NODELIST or SLURM_NODELIST: "
        "set MASTER_ADDR to the host of the task with rank 0."
    )


def _first_host(nodelist: str, name: str) -> str:
    try:
        return parse_slurm_nodelist(nodelist)[0]
    except ValueError as e:
        # Our parser covers the usual forms; SLURM's own tool knows every one.
        scontrol = shutil.which("scontrol")
        if scontrol is not None:
            result = subprocess.run(
                [scontrol, "show", "hostnames", nodelist], capture_output=True, text=True
            )
            hosts = result.stdout.split()
            if result.returncode == 0 and hosts:
                return hosts[0]
        raise ConfigError(f"{name}={nodelist!r}: {e}; set MASTER_ADDR instead.") from e


def _checked(dist_env: DistEnv, hint: str) -> DistEnv:
    """Reject layouts the local process groups cannot represent."""
    d = dist_env
    problem = None
    if d.world_size < 1 or not 0 <= d.rank < d.world_size:
        problem = f"rank {d.rank} is not in [0, world size {d.world_size})"
    elif d.local_world_size < 1 or d.world_size % d.local_world_size != 0:
        problem = (
            f"{d.local_world_size} processes per machine do not divide "
            f"the world size {d.world_size}"
        )
    elif not 0 <= d.local_rank < d.local_world_size:
        problem = f"local rank {d.local_rank} is not in [0, {d.local_world_size})"
    elif d.rank % d.local_world_size != d.local_rank:
        # Ranks must be laid out machine after machine (SLURM's default "block" distribution).
        problem = (
            f"rank {d.rank} with local rank {d.local_rank} and {d.local_world_size} processes "
            "per machine: ranks are not consecutive on each machine (use srun --distribution=block)"
        )
    elif not 0 < d.master_port < 65536:
        problem = f"master port {d.master_port} is not in [1, 65535]"
    if problem is not None:
        raise ConfigError(f"Inconsistent {d.launcher} environment: {problem} (see {hint}).")
    return dist_env


def slurm_master_port(job_id: Optional[str]) -> int:
    """Return the rendezvous port of a SLURM job: the same on all its tasks, distinct per job.

    Args:
        job_id (str, optional): ``SLURM_JOB_ID``.

    Returns:
        int: a port in ``[15000, 30000)``.

    Raises:
        ConfigError: if ``job_id`` is missing or not an integer.
    """
    if not job_id or not job_id.isdigit():
        raise ConfigError(
            f"Cannot derive a rendezvous port from SLURM_JOB_ID={job_id!r}: set MASTER_PORT."
        )
    return _SLURM_PORT_BASE + int(job_id) % _SLURM_PORT_SPAN


def parse_slurm_tasks_per_node(value: str) -> List[int]:
    """Expand SLURM's compressed task counts, e.g. ``"2(x3),1"`` -> ``[2, 2, 2, 1]``.

    Args:
        value (str): ``SLURM_TASKS_PER_NODE`` or ``SLURM_STEP_TASKS_PER_NODE``.

    Returns:
        list[int]: the number of tasks of each machine, in node-list order.

    Raises:
        ConfigError: if ``value`` is malformed.
    """
    counts: List[int] = []
    for part in value.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if match is None:
            raise ConfigError(
                f"Malformed SLURM task count {value!r}: expected e.g. '4' or '2(x3),1'."
            )
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


def parse_slurm_nodelist(nodelist: str) -> List[str]:
    """Expand a SLURM host list, e.g. ``"node[01-03,07],gpu5"``.

    Supports ranges with zero padding (``[08-10]`` -> ``08, 09, 10``), several bracket groups
    in one name (``rack[1-2]-n[1-2]``) and text after a bracket (``n[1-2]-ib``).

    Args:
        nodelist (str): ``SLURM_STEP_NODELIST``, ``SLURM_JOB_NODELIST`` or ``SLURM_NODELIST``.

    Returns:
        list[str]: the host names, in order.

    Raises:
        ValueError: for unbalanced brackets, empty names or malformed ranges.

    Example:
        >>> parse_slurm_nodelist("node[01-03,07],gpu5")
        ['node01', 'node02', 'node03', 'node07', 'gpu5']
    """
    hosts: List[str] = []
    for pattern in _split_top_level(nodelist):
        hosts.extend(_expand_pattern(pattern))
    return hosts


def _split_top_level(nodelist: str) -> List[str]:
    """Split at the commas that are outside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(nodelist):
        if char == "[":
            depth += 1
            if depth > 1:
                raise ValueError("nested brackets")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError("']' without '['")
        elif char == "," and depth == 0:
            parts.append(nodelist[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError("'[' without ']'")
    parts.append(nodelist[start:])
    if any(not part.strip() for part in parts):
        raise ValueError("empty host name")
    return [part.strip() for part in parts]


def _expand_pattern(pattern: str) -> List[str]:
    """Expand the first bracket group of ``pattern``, then the rest recursively."""
    match = re.search(r"\[([^\[\]]*)\]", pattern)
    if match is None:
        return [pattern]
    prefix, suffix = pattern[: match.start()], pattern[match.end() :]
    hosts: List[str] = []
    for index in _expand_ranges(match.group(1)):
        hosts.extend(_expand_pattern(prefix + index + suffix))
    return hosts


def _expand_ranges(ranges: str) -> List[str]:
    """``"01-03,7"`` -> ``["01", "02", "03", "7"]`` (the width of a range's start is kept)."""
    indices: List[str] = []
    for part in ranges.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if match is None:
            raise ValueError(f"malformed range {part!r}")
        low, high = match.group(1), match.group(2) or match.group(1)
        if int(high) < int(low):
            raise ValueError(f"decreasing range {part!r}")
        indices.extend(str(i).zfill(len(low)) for i in range(int(low), int(high) + 1))
    return indices
