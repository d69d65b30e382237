"""Hangs end (issue 14): a stopped worker, an unreachable rendezvous, the loopback store.

Real processes through ``launch()`` with gloo and timeouts of a few seconds.
"""

import os
import signal
import socket
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist

from engine_lib.engine.launch import launch
from engine_lib.engine.launch.failures import WorkerStoppedError
from engine_lib.engine.launch.job import DEFAULT_RENDEZVOUS_TIMEOUT, DEFAULT_TIMEOUT, job_from_flags
from engine_lib.engine.launch.rendezvous import DistributedInitError, hosting_rendezvous
from engine_lib.utils.errors import ConfigError, UserError


def _stop_rank_1(pid_dir: str) -> None:
    """Rank 1 stops itself (as SIGSTOP or a deadlock would); rank 0 waits in a collective."""
    with open(os.path.join(pid_dir, str(dist.get_rank())), "w") as f:
        f.write(str(os.getpid()))
    if dist.get_rank() == 1:
        os.kill(os.getpid(), signal.SIGSTOP)
    dist.all_reduce(torch.ones(1))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone but unreaped


def test_stopped_worker_fails_at_the_collective_timeout_naming_its_rank(tmp_path):
    start = time.monotonic()
    with pytest.raises(WorkerStoppedError) as raised:
        launch(
            _stop_rank_1,
            2,
            dist_url="auto",
            args=(str(tmp_path),),
            timeout=timedelta(seconds=3),
            backend="gloo",
        )
    elapsed = time.monotonic() - start
    message = str(raised.value)
    pids = {int(name): int((tmp_path / name).read_text()) for name in os.listdir(tmp_path)}
    assert raised.value.rank == 1 and raised.value.pid == pids[1]
    assert isinstance(raised.value, UserError) and "\n" not in message
    assert message.startswith(f"Worker with rank 1 (pid {pids[1]}) was stopped")
    assert "rank 0 gave up waiting for it at the collective timeout" in message
    assert elapsed < 60, elapsed  # 3 s timeout, plus start-up and shutdown under contention
    assert not [pid for pid in pids.values() if _alive(pid)]  # no orphan, stopped or not


def test_one_machine_job_with_an_address_of_another_machine_fails_at_once():
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"192\.0\.2\.1 is not an address of this machine"):
        launch(_stop_rank_1, 2, dist_url="tcp://192.0.2.1:29555", args=("",), backend="gloo")
    assert time.monotonic() - start < 5


def test_unreachable_rendezvous_fails_in_one_line_without_cpp_warnings(capfd):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"  # closed again: nobody listens there
    start = time.monotonic()
    with pytest.raises(DistributedInitError) as raised:
        # Machine 1 of 2, one process: it runs here and waits for machine 0, which never answers.
        launch(
            print,
            1,
            num_machines=2,
            machine_rank=1,
            dist_url=f"tcp://{address}",
            timeout=timedelta(seconds=3),
            backend="gloo",
        )
    assert 3 <= time.monotonic() - start < 30
    message = str(raised.value)
    assert message.startswith("Process 1 of 2 gave up after 0:00:03") and "\n" not in message
    assert f"rendezvous server of rank 0 at {address}" in message
    err = capfd.readouterr().err  # the C++ store client writes to file descriptor 2
    assert "[c10d]" not in err and "TCPStore" not in err


def _listening_addresses(port: int):
    """Local addresses of the sockets listening on ``port`` (IPv4, from /proc/net/tcp)."""
    found = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            host, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(socket.inet_ntoa(bytes.fromhex(host)[::-1]))
    return found


def test_one_machine_tcp_rendezvous_listens_on_loopback_only():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    job = job_from_flags(
        {}, print, (), 2, 1, 0, f"tcp://127.0.0.1:{port}", DEFAULT_TIMEOUT, "gloo", "none"
    )
    assert job.rendezvous_timeout == DEFAULT_RENDEZVOUS_TIMEOUT
    with hosting_rendezvous(job) as hosted:
        assert hosted.store_in_parent and hosted.init_method == f"tcp://127.0.0.1:{port}"
        assert _listening_addresses(port) == {"127.0.0.1"}


def test_documented_short_defaults():
    assert DEFAULT_TIMEOUT == timedelta(minutes=5)
    assert DEFAULT_RENDEZVOUS_TIMEOUT == timedelta(seconds=60)


def test_dist_timeout_flag_is_checked(capsys):
    from engine_lib.engine import default_argument_parser

    parser = default_argument_parser()
    assert parser.parse_args([]).dist_timeout is None
    assert parser.parse_args(["--dist-timeout", "7.5"]).dist_timeout == 7.5
    with pytest.raises(SystemExit):
        parser.parse_args(["--dist-timeout", "0"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "error: --dist-timeout must be a number of seconds above 0, got 0.0."
