"""Rendezvous: how the processes of a job find each other and form the process group.

torch's ``init_process_group`` does the work. Two things are added here: ``--dist-url
auto`` (the launching process hosts the store on a loopback port the OS picked, where
torch's ``tcp://`` store would listen on every interface, and torchrun's standalone mode
would need torchrun), and a :class:`DistributedInitError` that says which address did not
answer and what to check, where torch reports a timeout or ``EADDRINUSE``.
"""

import contextlib
import dataclasses
import logging
import socket
from datetime import timedelta
from typing import Iterator
from urllib.parse import urlparse

import torch.distributed as dist

from engine_lib.utils.errors import UserError

from .job import Job

__all__ = ["DistributedInitError", "hosting_rendezvous", "init_process_group"]

logger = logging.getLogger(__name__)


class DistributedInitError(UserError, RuntimeError):
    """The process group could not be formed (master unreachable, port in use, ...)."""


@contextlib.contextmanager
def hosting_rendezvous(job: Job) -> Iterator[Job]:
    """Host the rendezvous of a job whose ``init_method`` is ``"auto"``, while in the block.

    Yields:
        Job: ``job`` with the ``tcp://127.0.0.1:PORT`` of the store this process hosts (the
        job itself when its ``init_method`` is not ``"auto"``).
    """
    if job.init_method != "auto":
        yield job
        return
    store = _loopback_store(job.world_size, job.timeout)
    url = f"tcp://127.0.0.1:{store.port}"
    try:
        yield dataclasses.replace(
            job, init_method=url, address=urlparse(url).netloc, store_in_parent=True
        )
    finally:
        del store  # kept alive until the workers are done with it


def _loopback_store(world_size: int, timeout: timedelta) -> dist.TCPStore:
    # Port 0: the OS binds a free port atomically, so there is no pick-then-bind race. The
    # socket is bound here because TCPStore itself listens on every interface: the store
    # has no authentication, so it must not be reachable from the network.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
    except OSError:
        listener.close()
        raise
    return dist.TCPStore(
        "127.0.0.1",
        port,
        world_size,
        is_master=True,
        timeout=timeout,
        wait_for_workers=False,
        master_listen_fd=listener.detach(),  # the store owns the socket from now on
    )


def init_process_group(job: Job, rank: int) -> None:
    """Join the job's default process group as ``rank``.

    Raises:
        DistributedInitError: the group could not be formed; the message names the address
            and what to check.
    """
    try:
        if job.store_in_parent:
            parsed = urlparse(job.init_method)
            store = dist.TCPStore(
                parsed.hostname, parsed.port, job.world_size, is_master=False, timeout=job.timeout
            )
            dist.init_process_group(
                job.backend, store=store, rank=rank, world_size=job.world_size, timeout=job.timeout
            )
        else:
            dist.init_process_group(
                job.backend,
                init_method=job.init_method,
                rank=rank,
                world_size=job.world_size,
                timeout=job.timeout,
            )
    except (RuntimeError, ValueError) as e:
        raise DistributedInitError(_init_error_message(e, job, rank)) from e


def _init_error_message(error: Exception, job: Job, rank: int) -> str:
    text = str(error).strip()
    reason = f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
    if "EADDRINUSE" in text or "address already in use" in text.lower():
        return (
            f"Rank 0 could not start the rendezvous server at {job.address}: the port is in use "
            "(another job on this machine?). On one machine pass --dist-url auto; otherwise "
            f"choose another free port in --dist-url tcp://HOST:PORT. ({reason})"
        )
    if rank == 0:
        waited = f"for the other {job.world_size - 1} processes to join at {job.address}"
    else:
        waited = f"to reach the rendezvous server of rank 0 at {job.address}"
    return (
        f"Process {rank} of {job.world_size} gave up after {job.timeout} waiting {waited} "
        f"({reason}). Check that: the machine with --machine-rank 0 is running and reachable "
        "at that address from every machine (host name or IP, a firewall blocking the port); "
        "every machine was started with the same --dist-url and --num-machines and its own "
        "--machine-rank; all machines were started within the timeout."
    )
