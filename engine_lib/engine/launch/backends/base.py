"""The interface of a launcher backend, and the layout every backend reads: :class:`DistEnv`.

A backend recognises one external launcher (torchrun, SLURM's ``srun``, Open MPI's
``mpirun``) from the environment variables it sets in every process it starts, and reads
where this process sits in the job. Backends are pure functions of an environment mapping,
so each rule can be unit-tested with a fake ``dict``; :mod:`engine_lib.engine.launch.backends`
tries them in one ordered list.
"""

import logging
from dataclasses import dataclass
from typing import ClassVar, Mapping, MutableMapping, Optional, Sequence, Tuple

from engine_lib.utils.errors import ConfigError

__all__ = ["DistEnv", "LauncherBackend", "is_local_host", "int_var", "first_int_var"]

logger = logging.getLogger(__name__)

_LOCAL_HOSTS = ("localhost", "::1", "0.0.0.0")


def is_local_host(host: Optional[str]) -> bool:
    """Whether ``host`` (of a ``--dist-url``) names this machine only: loopback or any."""
    return host is not None and (host in _LOCAL_HOSTS or host.startswith("127."))


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a job started by an external launcher.

    Ranks are laid out machine after machine: machine ``m`` holds ranks
    ``[m * local_world_size, (m + 1) * local_world_size)``.

    Attributes:
        launcher (str): the :attr:`LauncherBackend.name` of the launcher: ``"torchrun"``,
            ``"slurm"`` or ``"mpi"``.
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
    def tcp_url(self) -> str:
        """``tcp://MASTER_ADDR:MASTER_PORT`` (an IPv6 address in brackets)."""
        host = f"[{self.master_addr}]" if ":" in self.master_addr else self.master_addr
        return f"tcp://{host}:{self.master_port}"

    @property
    def init_method(self) -> str:
        """The ``init_method`` of ``init_process_group``, as the launcher's backend chooses it.

        See :meth:`LauncherBackend.init_method`.
        """
        # Imported here: the list of backends imports this module.
        from engine_lib.engine.launch.backends import backend_named

        return backend_named(self.launcher).init_method(self)


class LauncherBackend:
    """One external launcher, recognised by the variables it sets (Lightning's "environments").

    Subclasses set the class attributes and implement :meth:`read`; the rest has defaults.
    A backend holds no state: its methods are class methods, and all but :meth:`prepare`
    are pure functions of the environment mapping they are given.

    Attributes:
        name (str): the one name of the launcher in the code, the logs and ``DistEnv.launcher``.
        flag (str): its value of ``--launcher`` (the spelling mmengine's users type); defaults
            to ``name``.
        started_by (str): who sets the variables, for error messages.
        job_title (str): how messages name a job of this launcher (``"the SLURM step"``).
        rank_variable (str): the variable holding a process's global rank, for messages.
        markers (tuple): groups of variable names this launcher sets in every process it
            starts: :meth:`detect` recognises it when one name of each group is set.
        required (tuple): groups of variables ``--launcher FLAG`` requires: every name of the
            first group, and one name of each later group.
        auto_detect (bool): whether the launcher is recognised without ``--launcher``.
        tasks_can_be_machines (bool): whether a job of one process per machine, asked for
            several processes per machine, means that each process is a machine that spawns
            its workers (``srun --ntasks-per-node 1 ... --num-gpus 8``).
    """

    name: ClassVar[str] = ""
    flag: ClassVar[str] = ""
    started_by: ClassVar[str] = ""
    job_title: ClassVar[str] = ""
    rank_variable: ClassVar[str] = ""
    markers: ClassVar[Tuple[Tuple[str, ...], ...]] = ()
    required: ClassVar[Tuple[Tuple[str, ...], ...]] = ()
    auto_detect: ClassVar[bool] = True
    tasks_can_be_machines: ClassVar[bool] = False

    @classmethod
    def cli_flag(cls) -> str:
        """The value of ``--launcher`` that selects this backend."""
        return cls.flag or cls.name

    @classmethod
    def detect(cls, env: Mapping[str, str], dist_url: Optional[str] = None) -> Optional[DistEnv]:
        """Read the layout if ``env`` shows this launcher, else return None.

        Args:
            env (Mapping[str, str]): the environment, usually ``os.environ``.
            dist_url (str, optional): the ``--dist-url`` given, for launchers that set no
                rendezvous address. Default: None.

        Returns:
            DistEnv or None: the layout, or None when the launcher's markers are not set.

        Raises:
            ConfigError: the markers are set but the variables are incomplete, not integers
                or inconsistent (the message names the variable).
        """
        if not cls.markers:
            return None
        if not all(any(name in env for name in group) for group in cls.markers):
            return None
        return cls.read(env, dist_url)

    @classmethod
    def read(cls, env: Mapping[str, str], dist_url: Optional[str]) -> DistEnv:
        """Read the layout from an environment in which the markers are set."""
        raise NotImplementedError

    @classmethod
    def require(cls, env: Mapping[str, str]) -> None:
        """Fail naming what is missing for ``--launcher FLAG``: see :attr:`required`.

        Raises:
            ConfigError: ``--launcher pytorch needs the environment variables set by
                torchrun, but WORLD_SIZE is not set.``
        """
        groups: Sequence[Sequence[str]] = cls.required
        if not groups:
            return
        missing = [name for name in groups[0] if not env.get(name)]
        for alternatives in groups[1:]:
            if not any(env.get(name) for name in alternatives):
                missing.append(" or ".join(alternatives))
        if missing:
            raise ConfigError(
                f"--launcher {cls.cli_flag()} needs the environment variables set by "
                f"{cls.started_by}, but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set."
            )

    @classmethod
    def prepare(cls, environ: MutableMapping[str, str]) -> None:
        """Adjust this process's environment when ``--launcher`` selects this backend.

        Called in the launching process before any process group or worker exists.
        Default: nothing.
        """

    @classmethod
    def init_method(cls, dist_env: DistEnv) -> str:
        """The ``init_method`` of ``init_process_group``: by default ``tcp://ADDR:PORT``."""
        return dist_env.tcp_url

    @classmethod
    def checked(cls, dist_env: DistEnv, hint: str) -> DistEnv:
        """Return ``dist_env`` if the local process groups can represent it, else raise.

        Args:
            dist_env (DistEnv): the layout read from the environment.
            hint (str): where the user sets the layout, e.g. ``srun --ntasks-per-node``.

        Raises:
            ConfigError: a rank out of range, machines of different sizes, ranks not laid
                out machine after machine, or a port out of range.
        """
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
            # Ranks must be laid out machine after machine (SLURM's default "block" layout).
            problem = (
                f"rank {d.rank} with local rank {d.local_rank} and {d.local_world_size} "
                "processes per machine: ranks are not consecutive on each machine "
                "(use srun --distribution=block)"
            )
        elif not 0 < d.master_port < 65536:
            problem = f"master port {d.master_port} is not in [1, 65535]"
        if problem is not None:
            raise ConfigError(f"Inconsistent {d.launcher} environment: {problem} (see {hint}).")
        return dist_env


def int_var(env: Mapping[str, str], name: str) -> int:
    """``int(env[name])``, or a ConfigError naming the variable and its value."""
    try:
        return int(env[name])
    except ValueError:
        raise ConfigError(
            f"Environment variable {name}={env[name]!r} must be an integer."
        ) from None


def first_int_var(env: Mapping[str, str], names: Sequence[str], launcher: str) -> int:
    """The first of ``names`` that is set, as an integer; a ConfigError if none is."""
    for name in names:
        if env.get(name):
            return int_var(env, name)
    raise ConfigError(
        f"{launcher} job without any of the environment variables {', '.join(names)}."
    )
