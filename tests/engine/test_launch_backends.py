"""Launcher backends: each one's detect() on a fake environment, and the one list of them."""

from typing import Mapping, Optional

import pytest

from engine_lib.engine.arguments import default_argument_parser
from engine_lib.engine.launch import backends
from engine_lib.engine.launch.backends import (
    DistEnv,
    LauncherBackend,
    MpiLauncher,
    SlurmLauncher,
    SpawnLauncher,
    TorchrunLauncher,
    backend_named,
    detect_dist_env,
    launcher_flags,
    spawning_machines,
)
from engine_lib.engine.launch.backends.base import int_var
from engine_lib.utils.errors import ConfigError

TORCHRUN = {
    "RANK": "3",
    "WORLD_SIZE": "4",
    "LOCAL_RANK": "1",
    "LOCAL_WORLD_SIZE": "2",
    "MASTER_ADDR": "10.0.0.1",
    "MASTER_PORT": "29400",
}
SRUN = {
    "SLURM_JOB_ID": "77",
    "SLURM_STEP_ID": "0",
    "SLURM_PROCID": "2",
    "SLURM_LOCALID": "0",
    "SLURM_STEP_NUM_TASKS": "4",
    "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
    "SLURM_STEP_NODELIST": "n[1-2]",
}
MPI = {
    "OMPI_COMM_WORLD_RANK": "1",
    "OMPI_COMM_WORLD_SIZE": "2",
    "OMPI_COMM_WORLD_LOCAL_RANK": "1",
    "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
    "MASTER_ADDR": "10.0.0.9",
    "MASTER_PORT": "1234",
}


class FakeLauncher(LauncherBackend):
    """A launcher that sets FAKE_RANK / FAKE_SIZE, on one machine."""

    name = "fake"
    flag = "fake-cli"
    started_by = "the fake launcher"
    markers = (("FAKE_RANK",), ("FAKE_SIZE",))
    required = (("FAKE_RANK", "FAKE_SIZE", "FAKE_ADDR"),)

    @classmethod
    def read(cls, env: Mapping[str, str], dist_url: Optional[str]) -> DistEnv:
        rank, size = int_var(env, "FAKE_RANK"), int_var(env, "FAKE_SIZE")
        dist_env = DistEnv(cls.name, rank, size, rank, size, env["FAKE_ADDR"], 4321)
        return cls.checked(dist_env, hint="the fake launcher's flags")

    @classmethod
    def init_method(cls, dist_env: DistEnv) -> str:
        return f"file:///tmp/fake-{dist_env.master_port}"


@pytest.fixture
def with_fake(monkeypatch):
    # One registration line: the fake goes first in the one list of backends.
    monkeypatch.setattr(backends, "BACKENDS", (FakeLauncher, *backends.BACKENDS))


def test_each_backend_detects_its_own_environment_only():
    envs = {TorchrunLauncher: TORCHRUN, SlurmLauncher: SRUN, MpiLauncher: MPI}
    expected = {
        TorchrunLauncher: DistEnv("torchrun", 3, 4, 1, 2, "10.0.0.1", 29400),
        SlurmLauncher: DistEnv("slurm", 2, 4, 0, 2, "n1", 15077),
        MpiLauncher: DistEnv("mpi", 1, 2, 1, 2, "10.0.0.9", 1234),
    }
    for backend, env in envs.items():
        assert backend.detect(env) == expected[backend]
        for other, other_env in envs.items():
            if other is not backend:
                assert backend.detect(other_env) is None, (backend, other)
        assert backend.detect({}) is None
    assert SpawnLauncher.detect({**TORCHRUN, **SRUN, **MPI}) is None


def test_init_method_is_the_backend_s_choice():
    assert TorchrunLauncher.detect(TORCHRUN).init_method == "env://"
    assert SlurmLauncher.detect(SRUN).init_method == "tcp://n1:15077"
    assert MpiLauncher.detect(dict(MPI, MASTER_ADDR="::1")).init_method == "tcp://[::1]:1234"


def test_one_name_per_launcher_and_the_cli_spelling_maps_to_it():
    assert [backend.name for backend in backends.BACKENDS] == ["torchrun", "slurm", "mpi", "none"]
    assert launcher_flags() == ("none", "pytorch", "slurm", "mpi")
    assert backend_named("pytorch") is backend_named("torchrun") is TorchrunLauncher
    assert default_argument_parser().parse_args(["--launcher", "pytorch"]).launcher == "torchrun"
    with pytest.raises(ConfigError, match="Unknown launcher 'srun': expected one of none, "):
        backend_named("srun")


def test_spawn_default_forgets_torch_s_variables():
    environ = {**TORCHRUN, "HOME": "/root"}
    SpawnLauncher.prepare(environ)
    assert environ == {"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29400", "HOME": "/root"}
    TorchrunLauncher.prepare(environ)  # other backends leave the environment alone
    assert "MASTER_ADDR" in environ


def test_a_registered_backend_is_detected_chosen_and_named(with_fake):
    env = {"FAKE_RANK": "1", "FAKE_SIZE": "2", "FAKE_ADDR": "h"}
    found = detect_dist_env({**env, **TORCHRUN})  # tried first: it wins over torchrun
    assert found == DistEnv("fake", 1, 2, 1, 2, "h", 4321)
    assert found.init_method == "file:///tmp/fake-4321"
    assert detect_dist_env(env, launcher="none") is None
    assert detect_dist_env(env, launcher="fake-cli") == found
    with pytest.raises(ConfigError, match="--launcher fake-cli needs .* set by the fake launcher"):
        detect_dist_env({"FAKE_RANK": "0"}, launcher="fake")
    with pytest.raises(ConfigError, match=r"Inconsistent fake environment: rank 3 is not in"):
        detect_dist_env(dict(env, FAKE_RANK="3"))
    assert "fake-cli" in launcher_flags()
    args = default_argument_parser().parse_args(["--launcher", "fake-cli"])
    assert args.launcher == "fake"


def test_a_backend_whose_tasks_can_be_machines(with_fake, monkeypatch):
    monkeypatch.setattr(FakeLauncher, "tasks_can_be_machines", True)
    machines = {"FAKE_RANK": "1", "FAKE_SIZE": "2", "FAKE_ADDR": "h"}
    monkeypatch.setattr(FakeLauncher, "read", classmethod(_one_task_per_machine))
    # One task per machine asked for 4 processes: it spawns them, as a machine of the job.
    assert detect_dist_env(machines, num_gpus_per_machine=4) is None
    assert spawning_machines(machines, 4).world_size == 2
    assert spawning_machines(machines, 1) is None
    assert spawning_machines(machines, 4, launcher="mpi") is None


def _one_task_per_machine(cls, env: Mapping[str, str], dist_url: Optional[str]) -> DistEnv:
    rank, size = int_var(env, "FAKE_RANK"), int_var(env, "FAKE_SIZE")
    return DistEnv(cls.name, rank, size, 0, 1, env["FAKE_ADDR"], 4321)
