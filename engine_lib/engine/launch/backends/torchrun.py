"""torchrun (``torch.distributed.run``, and the legacy ``torch.distributed.launch``).

torchrun's agent starts every worker, restarts a failed group and stops the others on a
failure: :func:`~engine_lib.engine.launch.launch` then only joins the group it describes.
"""

import logging
from typing import Mapping, Optional

from engine_lib.utils.errors import ConfigError

from .base import DistEnv, LauncherBackend, int_var

__all__ = ["TorchrunLauncher"]

logger = logging.getLogger(__name__)

# Variables torchrun sets in every worker.
_REQUIRED = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class TorchrunLauncher(LauncherBackend):
    """Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and ``MASTER_*``.

    Recognised by ``RANK`` and ``WORLD_SIZE`` (also when set by hand); ``LOCAL_RANK``,
    ``MASTER_ADDR`` and ``MASTER_PORT`` are then required, and ``LOCAL_WORLD_SIZE``
    defaults to ``WORLD_SIZE`` (one machine). ``--launcher pytorch`` selects it.
    """

    name = "torchrun"
    flag = "pytorch"
    started_by = "torchrun"
    job_title = "the torchrun job"
    rank_variable = "RANK"
    markers = (("RANK",), ("WORLD_SIZE",))
    required = (_REQUIRED,)

    @classmethod
    def read(cls, env: Mapping[str, str], dist_url: Optional[str]) -> DistEnv:
        """Read the layout torchrun describes; see the class docstring."""
        missing = [name for name in _REQUIRED if not env.get(name)]
        if missing:
            raise ConfigError(
                f"RANK and WORLD_SIZE are set, as by torchrun, but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not: set all of "
                f"{', '.join(_REQUIRED)} (and LOCAL_WORLD_SIZE on several machines), "
                "or unset RANK and WORLD_SIZE to let launch() start the processes."
            )
        world_size = int_var(env, "WORLD_SIZE")
        local_world_size = (
            int_var(env, "LOCAL_WORLD_SIZE") if env.get("LOCAL_WORLD_SIZE") else world_size
        )
        dist_env = DistEnv(
            launcher=cls.name,
            rank=int_var(env, "RANK"),
            world_size=world_size,
            local_rank=int_var(env, "LOCAL_RANK"),
            local_world_size=local_world_size,
            master_addr=env["MASTER_ADDR"],
            master_port=int_var(env, "MASTER_PORT"),
        )
        return cls.checked(dist_env, hint="LOCAL_WORLD_SIZE")

    @classmethod
    def init_method(cls, dist_env: DistEnv) -> str:
        """``env://``: the agent may already host the store at ``MASTER_PORT``.

        With ``TORCHELASTIC_USE_AGENT_STORE``, torch's ``env://`` joins the agent's store
        instead of binding the port a second time, which ``tcp://`` would do.
        """
        return "env://"
