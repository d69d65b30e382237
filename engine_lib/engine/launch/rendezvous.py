"""Rendezvous: how the processes of a job find each other and form the process group.

torch's ``init_process_group`` does the work. Added here: ``--dist-url auto`` (the
launching process hosts the store on a loopback port the OS picked, where torch's
``tcp://`` store would listen on every interface, and torchrun's standalone mode would need
torchrun); the same loopback store for a one-machine job with a loopback ``tcp://`` URL (the
default ``--dist-url``); a rendezvous with its own, shorter timeout that waits for an
unreachable address quietly (torch's store client logs a C++ warning per retry); and a
:class:`DistributedInitError` that says which address did not answer and what to check,
where torch reports a timeout or ``EADDRINUSE``. A one-machine job removes the stale file
of a ``file://`` rendezvous an earlier job left behind.
"""

import contextlib
import dataclasses
import ipaddress
import logging
import os
import socket
import time
from datetime import timedelta
from typing import Iterator, Optional, Tuple
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
    _remove_stale_file_store(job)
    port = _loopback_port(job)
    if port is None:
        yield job
        return
    try:
        store = _loopback_store(job.world_size, _rendezvous_timeout(job), port)
    except OSError as e:
        raise DistributedInitError(_init_error_message(e, job, 0)) from e
    url = f"tcp://127.0.0.1:{store.port}"
    try:
        yield dataclasses.replace(
            job, init_method=url, address=urlparse(url).netloc, store_in_parent=True
        )
    finally:
        del store  # kept alive until the workers are done with it


def _remove_stale_file_store(job: Job) -> None:
    """Remove the file of a ``file://`` rendezvous left by an earlier job on this machine.

    torch's ``FileStore`` keeps its file when a job ends badly, and a new job that meets in
    it reads the old job's keys and gives up (at the full timeout, "gave up after 0:30:00").
    Only a one-machine job spawned from here may remove it: no process of this job has
    opened the file yet, and no other machine can be using it for this job.
    """
    parsed = urlparse(job.init_method)
    one_machine = job.world_size == job.local_world_size and job.local_rank is None
    if not (one_machine and parsed.scheme == "file"):
        return
    path = parsed.path
    if os.path.exists(path):
        try:
            os.remove(path)
        except OSError as e:
            raise DistributedInitError(
                f"The rendezvous file {path} of --dist-url {job.init_method} is left from an "
                f"earlier job and cannot be removed ({e}); remove it, or use another path."
            ) from e
        logger.warning("Removed the rendezvous file %s, left by an earlier job.", path)


def _loopback_port(job: Job) -> Optional[int]:
    """The port to host a loopback store on for ``job`` (0: any), or None to host none."""
    if job.init_method == "auto":
        return 0
    parsed = urlparse(job.init_method)
    one_machine = job.world_size == job.local_world_size and job.local_rank is None
    if one_machine and parsed.scheme == "tcp" and _is_loopback(parsed.hostname):
        # torch's tcp:// store would listen on every interface, unauthenticated.
        return parsed.port
    return None


def _is_loopback(host: Optional[str]) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _rendezvous_timeout(job: Job) -> timedelta:
    return job.rendezvous_timeout or job.timeout


def _loopback_store(world_size: int, timeout: timedelta, port: int = 0) -> dist.TCPStore:
    # Port 0: the OS binds a free port atomically, so there is no pick-then-bind race. The
    # socket is bound here because TCPStore itself listens on every interface: the store
    # has no authentication, so it must not be reachable from the network.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # As TCPStore does: a fixed port whose last job's connections linger in TIME_WAIT is
        # free to bind again (a port another process listens on is still refused).
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
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
    parsed = urlparse(job.init_method)
    address = _tcp_address(job.init_method) if parsed.scheme == "tcp" else None
    try:
        if address is not None:
            store: dist.Store = _tcp_store(job, rank, *address)
            dist.init_process_group(
                job.backend, store=store, rank=rank, world_size=job.world_size, timeout=job.timeout
            )
        elif os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            # torchrun --max-restarts keeps its agent's store across restarts: a restarted
            # group reading it through env:// would find the previous attempt's stale gloo
            # addresses. A prefix per attempt gives each attempt a clean namespace.
            store = dist.PrefixStore(
                f"attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}",
                dist.TCPStore(
                    os.environ["MASTER_ADDR"],
                    int(os.environ["MASTER_PORT"]),
                    job.world_size,
                    is_master=False,
                    timeout=job.timeout,
                ),
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
    except (RuntimeError, ValueError, OSError) as e:
        raise DistributedInitError(_init_error_message(e, job, rank)) from e


def _tcp_address(url: str) -> Tuple[str, int]:
    # launch()'s dist_url is not checked as the command line's --dist-url is; without this,
    # a missing port reached TCPStore as None (a TypeError naming neither URL nor fix).
    parsed = urlparse(url)
    try:
        port = parsed.port
    except ValueError:  # not a number, or out of range
        port = None
    if not parsed.hostname or port is None:
        raise DistributedInitError(f"dist_url {url!r} is not valid: expected tcp://HOST:PORT")
    return parsed.hostname, port


def _tcp_store(job: Job, rank: int, host: str, port: int) -> dist.TCPStore:
    timeout = _rendezvous_timeout(job)
    if rank == 0 and not job.store_in_parent:
        return dist.TCPStore(host, port, job.world_size, is_master=True, timeout=timeout)
    _wait_until_reachable(host, port, timeout)
    return dist.TCPStore(host, port, job.world_size, is_master=False, timeout=timeout)


def _wait_until_reachable(host: str, port: int, timeout: timedelta) -> None:
    """Wait quietly until ``host:port`` accepts a connection; TimeoutError if it never does."""
    deadline = time.monotonic() + timeout.total_seconds()
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(left, 5.0))):
                return
        except OSError as e:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{host}:{port} did not accept a connection ({e})") from e
            time.sleep(min(0.5, left))


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
        f"Process {rank} of {job.world_size} gave up after {_rendezvous_timeout(job)} "
        f"waiting {waited} "
        f"({reason}). Check that: the machine with --machine-rank 0 is running and reachable "
        "at that address from every machine (host name or IP, a firewall blocking the port); "
        "every machine was started with the same --dist-url and --num-machines and its own "
        "--machine-rank; all machines were started within the timeout."
    )
