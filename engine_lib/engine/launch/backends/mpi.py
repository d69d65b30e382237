"""Open MPI's ``mpirun``: selected with ``--launcher mpi`` only.

mpirun also runs programs that are not distributed, so its variables alone do not make a
job distributed. Open MPI sets no rendezvous address: it comes from ``MASTER_ADDR`` and
``MASTER_PORT`` (``mpirun -x``) or from ``--dist-url``.
"""

import logging
from typing import Mapping, Optional, Tuple
from urllib.parse import urlparse

from engine_lib.utils.errors import ConfigError

from .base import DistEnv, LauncherBackend, int_var, is_local_host

__all__ = ["MpiLauncher"]

logger = logging.getLogger(__name__)

# Variables Open MPI's mpirun sets in every process it starts.
_REQUIRED = (
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_LOCAL_SIZE",
)


class MpiLauncher(LauncherBackend):
    """Reads ``OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE}``."""

    name = "mpi"
    started_by = "Open MPI's mpirun"
    job_title = "the mpirun job"
    rank_variable = "OMPI_COMM_WORLD_RANK"
    markers = tuple((name,) for name in _REQUIRED)
    required = (_REQUIRED,)
    auto_detect = False

    @classmethod
    def read(cls, env: Mapping[str, str], dist_url: Optional[str]) -> DistEnv:
        """Read the layout; the rendezvous is ``MASTER_ADDR:MASTER_PORT`` or ``dist_url``."""
        world_size = int_var(env, "OMPI_COMM_WORLD_SIZE")
        local_world_size = int_var(env, "OMPI_COMM_WORLD_LOCAL_SIZE")
        if env.get("MASTER_ADDR") or env.get("MASTER_PORT"):
            missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
            if missing:
                raise ConfigError(
                    f"--launcher {cls.cli_flag()} needs the environment variables set by "
                    f"you (mpirun -x NAME=VALUE), but {missing[0]} is not set."
                )
            master_addr, master_port = env["MASTER_ADDR"], int_var(env, "MASTER_PORT")
        else:
            master_addr, master_port = _rendezvous_from_url(dist_url, world_size > local_world_size)
        dist_env = DistEnv(
            launcher=cls.name,
            rank=int_var(env, "OMPI_COMM_WORLD_RANK"),
            world_size=world_size,
            local_rank=int_var(env, "OMPI_COMM_WORLD_LOCAL_RANK"),
            local_world_size=local_world_size,
            master_addr=master_addr,
            master_port=master_port,
        )
        return cls.checked(dist_env, hint="mpirun --map-by ppr:N:node")


def _rendezvous_from_url(dist_url: Optional[str], several_machines: bool) -> Tuple[str, int]:
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
