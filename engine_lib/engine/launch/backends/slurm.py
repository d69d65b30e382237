"""SLURM's ``srun``: a task per GPU, or a task per machine that spawns its GPUs' workers.

A batch script alone (``sbatch``) sets ``SLURM_PROCID`` but no step id: only the tasks of
an ``srun`` step are recognised.
"""

import logging
import shutil
import subprocess
from typing import Mapping, Optional

from engine_lib.utils.errors import ConfigError

from .base import DistEnv, LauncherBackend, first_int_var, int_var
from .slurm_hostlist import parse_slurm_nodelist, parse_slurm_tasks_per_node

__all__ = ["SlurmLauncher", "slurm_master_port"]

logger = logging.getLogger(__name__)

# Ports derived from a SLURM job id fall in [_PORT_BASE, _PORT_BASE + _PORT_SPAN): below
# Linux's ephemeral range (32768+), so an outgoing connection cannot already hold them.
_PORT_BASE = 15000
_PORT_SPAN = 15000

_STEP_ID = ("SLURM_STEP_ID", "SLURM_STEPID")


class SlurmLauncher(LauncherBackend):
    """Reads ``SLURM_PROCID``, ``SLURM_LOCALID``, the step's task counts and node list.

    The master address is ``MASTER_ADDR`` or the first host of the step's node list; the
    port is ``MASTER_PORT`` or one derived from ``SLURM_JOB_ID`` (:func:`slurm_master_port`).
    A step with one task per machine, whose task asks ``launch`` for several processes, is
    a job of machines that spawn their workers (:attr:`tasks_can_be_machines`).
    """

    name = "slurm"
    started_by = "srun (in a batch script, start the training with srun)"
    job_title = "the SLURM step"
    rank_variable = "SLURM_PROCID"
    markers = (("SLURM_PROCID",), _STEP_ID)
    required = (("SLURM_PROCID", "SLURM_LOCALID"), _STEP_ID)
    tasks_can_be_machines = True

    @classmethod
    def read(cls, env: Mapping[str, str], dist_url: Optional[str]) -> DistEnv:
        """Read the layout of the ``srun`` step; see the class docstring."""
        world_size = first_int_var(
            env, ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS"), "SLURM"
        )
        dist_env = DistEnv(
            launcher=cls.name,
            rank=int_var(env, "SLURM_PROCID"),
            world_size=world_size,
            local_rank=first_int_var(env, ("SLURM_LOCALID",), "SLURM"),
            local_world_size=_tasks_per_node(env, world_size),
            master_addr=env.get("MASTER_ADDR") or _master_addr(env),
            master_port=_master_port(env),
        )
        return cls.checked(dist_env, hint="srun --ntasks-per-node")


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
    return _PORT_BASE + int(job_id) % _PORT_SPAN


def _tasks_per_node(env: Mapping[str, str], world_size: int) -> int:
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
        return int_var(env, "SLURM_NTASKS_PER_NODE")
    return world_size


def _master_port(env: Mapping[str, str]) -> int:
    if env.get("MASTER_PORT"):
        return int_var(env, "MASTER_PORT")
    return slurm_master_port(env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID"))


def _master_addr(env: Mapping[str, str]) -> str:
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
