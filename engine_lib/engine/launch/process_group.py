"""Run ``main_func`` in one process of the job: CUDA device, process groups, teardown.

torch's ``init_process_group`` forms the group (see :mod:`.rendezvous`); around it this adds
what every entry point would otherwise repeat: the CUDA device chosen before NCCL starts,
the per-machine group behind ``comm.get_local_rank/size`` (torch's launchers only export
``LOCAL_RANK``), and a teardown that does not hang after a failure.
"""

import logging

import torch
import torch.distributed as dist

from engine_lib.utils import comm
from engine_lib.utils.errors import ConfigError

from .failures import record_failure_time
from .job import Job
from .rendezvous import init_process_group

__all__ = ["run_in_process_group"]

logger = logging.getLogger(__name__)


def run_in_process_group(job: Job, local_rank: int) -> None:
    """Join the job as the process with ``local_rank`` on this machine and run its function.

    Sets the CUDA device (NCCL), joins the process group, creates the per-machine group
    (``comm.get_local_rank/size``), runs ``job.main_func(*job.args)`` and destroys the groups.

    Raises:
        DistributedInitError: the process group could not be formed.
        ConfigError: the process has no GPU of its own.
    """
    uses_cuda = "nccl" in job.backend
    if uses_cuda:
        # Before the group exists, so that NCCL binds this process to its own GPU.
        _set_cuda_device(local_rank)
    init_process_group(job, job.rank_of(local_rank))
    succeeded = False
    try:
        comm.create_local_process_group(job.local_world_size)
        comm.synchronize()
        job.main_func(*job.args)
        succeeded = True
    except Exception:
        # Now, before the group is destroyed below: that wakes peers blocked in a collective
        # with errors of their own, which must not pass for the cause.
        record_failure_time(job.user_error_dir, local_rank)
        raise
    finally:
        # After a failure peers may still wait in a collective, and NCCL's teardown can then
        # block: leave it to process exit. Gloo's is immediate, and lets a caller that catches
        # the error (a notebook, a test) form a new group in this process.
        if dist.is_initialized() and (succeeded or not uses_cuda):
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
