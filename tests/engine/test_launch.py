"""launch() in this process: one process, argument checks, and init failures with clear errors.

The multi-process paths are in test_launch_multiprocess.py, test_ddp.py and
tests/utils/test_comm_distributed.py.
"""

import os
import socket
import time
from datetime import timedelta

import pytest
import torch.distributed as dist

from engine_lib.engine.launch import DistributedInitError, launch
from engine_lib.utils.errors import ConfigError, UserError
from tests.engine.dist_helpers import free_port

LAUNCHER_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "SLURM_PROCID",
    "SLURM_STEP_ID",
    "SLURM_STEPID",
)


@pytest.fixture(autouse=True)
def no_launcher_env(monkeypatch):
    for name in LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)


def _record(calls, *args):
    calls.append((os.getpid(), dist.is_initialized(), args))


def test_world_size_one_calls_main_here_without_a_process_group():
    calls = []
    launch(_record, 1, args=(calls, "a", 2))
    assert calls == [(os.getpid(), False, ("a", 2))]


def test_torchrun_env_of_one_process_runs_here(monkeypatch):
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    calls = []
    # num_gpus_per_machine is ignored under torchrun: nothing is spawned.
    launch(_record, 4, args=(calls,))
    assert calls == [(os.getpid(), False, ())]


def test_incomplete_torchrun_env_names_the_missing_variables(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="LOCAL_RANK, MASTER_ADDR, MASTER_PORT"):
        launch(_record, 1, args=([],))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_gpus_per_machine": 0}, "num_gpus_per_machine must be >= 1"),
        ({"num_gpus_per_machine": 1, "num_machines": 0}, "num_machines must be >= 1"),
        (
            {"num_gpus_per_machine": 1, "num_machines": 2, "machine_rank": 2},
            r"machine_rank=2 must be in \[0, num_machines=2\)",
        ),
        (
            {"num_gpus_per_machine": 1, "num_machines": 2, "machine_rank": 1},
            "needs dist_url",
        ),
        (
            {"num_gpus_per_machine": 1, "num_machines": 2, "dist_url": "auto"},
            "works on one machine only",
        ),
    ],
)
def test_inconsistent_arguments_are_user_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        launch(_record, args=([],), **kwargs)


def test_unreachable_master_fails_after_the_timeout_naming_the_address():
    address = f"127.0.0.1:{free_port()}"  # nobody listens there
    start = time.time()
    with pytest.raises(DistributedInitError) as info:
        # Machine 1 of 2, one process: it runs here and tries to reach machine 0.
        launch(
            _record,
            1,
            num_machines=2,
            machine_rank=1,
            dist_url=f"tcp://{address}",
            args=([],),
            timeout=timedelta(seconds=1),
            backend="gloo",
        )
    assert time.time() - start < 20
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert f"to reach the rendezvous server of rank 0 at {address}" in message
    assert "firewall" in message and "--machine-rank" in message and "--dist-url" in message
    assert not dist.is_initialized()


@pytest.mark.parametrize("url", ["tcp://127.0.0.1", "tcp://127.0.0.1:http", "tcp://:29500"])
def test_tcp_url_without_host_or_port_is_refused_naming_it(url):
    with pytest.raises(DistributedInitError, match="expected tcp://HOST:PORT") as info:
        launch(
            _record,
            1,
            num_machines=2,
            machine_rank=1,
            dist_url=url,
            args=([],),
            timeout=timedelta(seconds=1),  # were the URL not refused, this would fail fast
            backend="gloo",
        )
    assert repr(url) in str(info.value)
    assert not dist.is_initialized()


def test_port_in_use_suggests_another_url():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DistributedInitError, match=f"127.0.0.1:{port}: the port is in use"):
            launch(
                _record,
                1,
                num_machines=2,
                machine_rank=0,
                dist_url=f"tcp://127.0.0.1:{port}",
                args=([],),
                timeout=timedelta(seconds=1),
                backend="gloo",
            )
    assert not dist.is_initialized()
