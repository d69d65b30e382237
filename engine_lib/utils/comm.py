"""Rank, world size and small collectives that also work in a plain single process.

Every function here works whether or not ``torch.distributed`` has been initialized: without a
process group the job is treated as world size 1, rank 0, and the collectives return at once.
This lets the same training code run under ``python train_net.py`` and under ``launch()``.
"""

import logging
import os
from typing import Any, Dict, List, Optional, cast

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "get_world_size",
    "get_rank",
    "get_local_rank",
    "get_local_size",
    "is_main_process",
    "synchronize",
    "all_gather",
    "gather",
    "reduce_dict",
    "shared_random_seed",
    "create_local_process_group",
    "release_process_groups",
]

logger = logging.getLogger(__name__)

# Groups are only valid for the default process group they were created under: a test or a
# notebook may destroy and re-create it in one process. Each cache therefore remembers that
# default group (``dist.group.WORLD``) and is ignored once it changed.
_LOCAL_GROUP: Optional[tuple] = None  # (WORLD it belongs to, this machine's group)
_OBJECT_GROUP: Optional[tuple] = None  # (WORLD it belongs to, gloo group for python objects)


def _is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def _valid_group(cache: Optional[tuple]) -> Optional[dist.ProcessGroup]:
    if cache is None or not _is_initialized() or cache[0] is not dist.group.WORLD:
        return None
    return cache[1]


def _is_nccl() -> bool:
    # A default group made with ``device_id`` reports e.g. "cpu:gloo,cuda:nccl".
    return "nccl" in str(dist.get_backend())


def get_world_size() -> int:
    """Return the number of processes in the job (1 without a process group)."""
    if not _is_initialized():
        return 1
    return dist.get_world_size()


def get_rank() -> int:
    """Return the global rank of this process (0 without a process group)."""
    if not _is_initialized():
        return 0
    return dist.get_rank()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def get_local_rank() -> int:
    """Return the rank of this process among the processes of its machine.

    Uses the group made by :func:`create_local_process_group`; without one, the
    ``LOCAL_RANK`` environment variable (set by torchrun), else 0.
    """
    group = _valid_group(_LOCAL_GROUP)
    if group is not None:
        return dist.get_rank(group=group)
    return _env_int("LOCAL_RANK", 0)


def get_local_size() -> int:
    """Return the number of processes on this machine.

    Uses the group made by :func:`create_local_process_group`; without one, the
    ``LOCAL_WORLD_SIZE`` environment variable (set by torchrun), else 1.
    """
    group = _valid_group(_LOCAL_GROUP)
    if group is not None:
        return dist.get_world_size(group=group)
    return _env_int("LOCAL_WORLD_SIZE", 1)


def is_main_process() -> bool:
    """Return True on global rank 0, the process that writes logs, metrics and checkpoints."""
    return get_rank() == 0


def create_local_process_group(num_workers_per_machine: int) -> None:
    """Create the group of processes of this machine, used by ``get_local_rank/size``.

    Collective: every rank must call it with the same value. Ranks are assumed to be laid
    out machine after machine (ranks ``[m * n, (m + 1) * n)`` on machine ``m``), as
    ``launch()`` and torchrun do.

    Args:
        num_workers_per_machine (int): processes per machine; must divide the world size.

    Raises:
        RuntimeError: if no process group is initialized.
        ValueError: if ``num_workers_per_machine`` does not divide the world size.
    """
    global _LOCAL_GROUP
    if not _is_initialized():
        raise RuntimeError(
            "create_local_process_group() needs an initialized process group; "
            "call torch.distributed.init_process_group() first."
        )
    world_size = dist.get_world_size()
    if num_workers_per_machine < 1 or world_size % num_workers_per_machine != 0:
        raise ValueError(
            f"num_workers_per_machine={num_workers_per_machine} must be a positive divisor "
            f"of the world size {world_size}."
        )
    machine = dist.get_rank() // num_workers_per_machine
    for i in range(world_size // num_workers_per_machine):
        ranks = list(range(i * num_workers_per_machine, (i + 1) * num_workers_per_machine))
        # new_group is collective over the whole world, so every rank creates every group.
        group = dist.new_group(ranks)
        if i == machine:
            _LOCAL_GROUP = (dist.group.WORLD, group)


def release_process_groups() -> None:
    """Drop this module's references to the groups it created (local group, object group).

    Call it right after ``torch.distributed.destroy_process_group()`` (``launch()`` does).
    A cached group keeps its gloo worker threads running after the destroy, until the
    interpreter exits, and tearing them down during interpreter finalization can abort the
    process ("terminate called without an active exception", SIGABRT).
    """
    global _LOCAL_GROUP, _OBJECT_GROUP
    _LOCAL_GROUP = None
    _OBJECT_GROUP = None


def synchronize() -> None:
    """Block until every process reaches this call (a no-op in a single process)."""
    if get_world_size() == 1:
        return
    if dist.get_backend() == dist.Backend.NCCL:
        # Without device_ids NCCL guesses the device from the rank, which is wrong when a
        # process does not use the GPU of the same index, and then hangs.
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def _object_group() -> Optional[dist.ProcessGroup]:
    """Return the group used to exchange python objects: gloo, so they stay on the CPU."""
    global _OBJECT_GROUP
    if not _is_nccl():
        return dist.group.WORLD
    group = _valid_group(_OBJECT_GROUP)
    if group is None:
        # Pickled objects through NCCL would be copied to the GPU and back; a gloo group keeps
        # them in host memory. Created once (a collective) on the first object exchange.
        # A group of every rank: new_group's "not a member" sentinel cannot come back.
        group = cast(dist.ProcessGroup, dist.new_group(backend="gloo"))
        _OBJECT_GROUP = (dist.group.WORLD, group)
    return group


def all_gather(data: Any, group: Optional[dist.ProcessGroup] = None) -> List[Any]:
    """Gather a picklable object from every rank of a group, on every rank.

    Tensors are pickled with their device: move them to the CPU first if the receiving ranks
    may not see that device.

    Args:
        data (Any): any picklable object, tensors included.
        group (ProcessGroup, optional): the group to gather from; default: all ranks (through
            a gloo group when the default backend is NCCL).

    Returns:
        list: one object per rank of the group, in rank order.
    """
    if get_world_size() == 1:
        return [data]
    if group is None:
        group = _object_group()
    world_size = dist.get_world_size(group=group)
    if world_size == 1:
        return [data]
    output: List[Any] = [None] * world_size
    dist.all_gather_object(output, data, group=group)
    return output


def gather(data: Any, dst: int = 0, group: Optional[dist.ProcessGroup] = None) -> List[Any]:
    """Gather a picklable object from every rank of a group onto rank ``dst``.

    Args:
        data (Any): any picklable object, tensors included.
        dst (int): the global rank that receives the objects. Default: 0.
        group (ProcessGroup, optional): as in :func:`all_gather`.

    Returns:
        list: on ``dst``, one object per rank of the group in rank order; elsewhere ``[]``.
    """
    if get_world_size() == 1:
        return [data]
    if group is None:
        group = _object_group()
    world_size = dist.get_world_size(group=group)
    if world_size == 1:
        return [data]
    if dist.get_rank() == dst:
        output: List[Any] = [None] * world_size
        dist.gather_object(data, output, dst=dst, group=group)
        return output
    dist.gather_object(data, None, dst=dst, group=group)
    return []


def reduce_dict(
    input_dict: Dict[str, torch.Tensor], average: bool = True
) -> Dict[str, torch.Tensor]:
    """Sum (or average) a dict of same-shaped tensors over all ranks; every rank gets the result.

    All-reduce rather than reduce-to-rank-0, so that every rank sees the same values (e.g. all
    ranks agree that a loss is not finite). Every rank must pass the same keys; the tensors must
    be on the device of the backend (CUDA for NCCL).

    Args:
        input_dict (dict[str, Tensor]): tensors to reduce, typically scalar losses.
        average (bool): divide the sum by the world size. Default: True.

    Returns:
        dict[str, Tensor]: the same keys with the reduced values (the input dict itself in a
        single process).
    """
    world_size = get_world_size()
    if world_size == 1 or not input_dict:
        return input_dict
    names = sorted(input_dict)  # the same order on every rank
    with torch.no_grad():
        values = torch.stack([input_dict[k] for k in names])
        dist.all_reduce(values)
        if average:
            values /= world_size
    return dict(zip(names, values))


def shared_random_seed() -> int:
    """Return a random integer in ``[0, 2**31)`` that is the same on every rank.

    Drawn from numpy's global generator on each rank, then rank 0's value is used by all;
    collective: every rank must call it.
    """
    # The global generator on purpose: its state is seeded and checkpointed, so the seed
    # sequence repeats on an exact resume.
    seed = int(np.random.randint(2**31))  # noqa: NPY002
    return int(all_gather(seed)[0])
