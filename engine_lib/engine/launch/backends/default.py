"""The default: no external launcher; :func:`~engine_lib.engine.launch.launch` spawns.

Last in the list of backends: it recognises no environment, so a process that no launcher
before it claims is one that ``launch`` starts the job from (``--num-gpus``,
``--num-machines``, ``--machine-rank``, ``--dist-url``).
"""

import logging
from typing import Mapping, MutableMapping, Optional

from .base import DistEnv, LauncherBackend

__all__ = ["SpawnLauncher"]

logger = logging.getLogger(__name__)

# What torch's env:// and comm.get_local_rank/size read; torchrun sets them.
_TORCH_ENV_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK")


class SpawnLauncher(LauncherBackend):
    """``--launcher none``: ignore every launcher's variables and spawn as asked."""

    name = "none"
    started_by = "nobody"

    @classmethod
    def read(cls, env: Mapping[str, str], dist_url: Optional[str]) -> DistEnv:
        """Never called: this backend has no markers, so :meth:`detect` returns None."""
        raise AssertionError("SpawnLauncher has no environment to read")

    @classmethod
    def prepare(cls, environ: MutableMapping[str, str]) -> None:
        """Remove torchrun's variables from the environment of this process.

        torch's ``env://`` and :func:`~engine_lib.utils.comm.get_local_rank` read them: a
        job that ignores its launcher must not half-follow it, nor hand the variables down
        to the workers it spawns.
        """
        ignored = [name for name in _TORCH_ENV_VARIABLES if name in environ]
        for name in ignored:
            del environ[name]
        if ignored:
            logger.info("--launcher none: ignoring %s.", ", ".join(ignored))
