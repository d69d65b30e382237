"""detect_dist_env and the SLURM parsers, with fake environment dicts."""

import pytest

from engine_lib.engine.launch.backends import (
    DistEnv,
    detect_dist_env,
    parse_slurm_nodelist,
    parse_slurm_tasks_per_node,
    slurm_master_port,
)
from engine_lib.utils.errors import ConfigError

TORCHRUN = {
    "RANK": "5",
    "WORLD_SIZE": "8",
    "LOCAL_RANK": "1",
    "LOCAL_WORLD_SIZE": "4",
    "MASTER_ADDR": "10.0.0.1",
    "MASTER_PORT": "29400",
}

# srun --nodes 2 --ntasks-per-node 4, task 6 (node 1, local task 2).
SRUN = {
    "SLURM_JOB_ID": "123456",
    "SLURM_STEP_ID": "0",
    "SLURM_PROCID": "6",
    "SLURM_LOCALID": "2",
    "SLURM_NODEID": "1",
    "SLURM_NTASKS": "8",
    "SLURM_STEP_NUM_TASKS": "8",
    "SLURM_STEP_TASKS_PER_NODE": "4(x2)",
    "SLURM_TASKS_PER_NODE": "4(x2)",
    "SLURM_STEP_NODELIST": "gpu-node[07-08]",
    "SLURM_JOB_NODELIST": "gpu-node[07-08]",
}


def test_no_launcher_means_none():
    assert detect_dist_env({}) is None
    assert detect_dist_env({"HOME": "/root", "LOCAL_RANK": "0"}) is None


def test_torchrun_env():
    env = detect_dist_env(TORCHRUN)
    assert env == DistEnv("torchrun", 5, 8, 1, 4, "10.0.0.1", 29400)
    assert (env.machine_rank, env.num_machines) == (1, 2)
    # env:// lets torch join the store torchrun's agent may already host at MASTER_PORT.
    assert env.init_method == "env://"


def test_torchrun_env_without_local_world_size_is_one_machine():
    env = dict(TORCHRUN, RANK="1", LOCAL_RANK="1")
    del env["LOCAL_WORLD_SIZE"]
    assert detect_dist_env(env).local_world_size == 8


def test_torchrun_env_wins_over_slurm():
    assert detect_dist_env({**SRUN, **TORCHRUN}).launcher == "torchrun"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"MASTER_PORT": None}, "MASTER_PORT is not"),
        ({"LOCAL_RANK": None, "MASTER_ADDR": None}, "LOCAL_RANK, MASTER_ADDR are not"),
        ({"RANK": "five"}, "RANK='five' must be an integer"),
        ({"RANK": "8"}, r"rank 8 is not in \[0, world size 8\)"),
        ({"LOCAL_WORLD_SIZE": "3"}, "3 processes per machine do not divide the world size 8"),
        ({"LOCAL_RANK": "2"}, "ranks are not consecutive on each machine"),
    ],
)
def test_bad_torchrun_env_is_a_clear_error(change, message):
    env = dict(TORCHRUN)
    for name, value in change.items():
        if value is None:
            del env[name]
        else:
            env[name] = value
    with pytest.raises(ConfigError, match=message):
        detect_dist_env(env)


def test_srun_task():
    env = detect_dist_env(SRUN)
    assert env == DistEnv("slurm", 6, 8, 2, 4, "gpu-node07", slurm_master_port("123456"))
    assert env.machine_rank == 1
    assert env.init_method == f"tcp://gpu-node07:{env.master_port}"


def test_srun_master_address_and_port_can_be_given():
    env = detect_dist_env({**SRUN, "MASTER_ADDR": "10.1.1.1", "MASTER_PORT": "23456"})
    assert (env.master_addr, env.master_port) == ("10.1.1.1", 23456)


def test_srun_falls_back_to_job_variables():
    env = {
        k: v
        for k, v in SRUN.items()
        if k not in ("SLURM_STEP_NUM_TASKS", "SLURM_STEP_TASKS_PER_NODE", "SLURM_STEP_NODELIST")
    }
    env = dict(env, SLURM_STEPID=env.pop("SLURM_STEP_ID"), SLURM_JOB_NODELIST="a1,b2")
    result = detect_dist_env(env)
    assert (result.world_size, result.local_world_size, result.master_addr) == (8, 4, "a1")


def test_srun_with_ntasks_per_node_only():
    env = {k: v for k, v in SRUN.items() if "TASKS_PER_NODE" not in k}
    assert detect_dist_env(dict(env, SLURM_NTASKS_PER_NODE="4")).local_world_size == 4


def test_batch_script_without_srun_step_spawns():
    # sbatch sets SLURM_PROCID=0 in the batch script itself, but no step id.
    env = {k: v for k, v in SRUN.items() if k != "SLURM_STEP_ID"}
    assert detect_dist_env(env) is None


def test_one_srun_task_per_machine_that_asks_for_several_gpus_spawns():
    one_per_node = dict(
        SRUN,
        SLURM_PROCID="1",
        SLURM_LOCALID="0",
        SLURM_NTASKS="2",
        SLURM_STEP_NUM_TASKS="2",
        SLURM_STEP_TASKS_PER_NODE="1(x2)",
    )
    assert detect_dist_env(one_per_node, num_gpus_per_machine=8) is None
    assert detect_dist_env(one_per_node, num_gpus_per_machine=1).world_size == 2


def test_uneven_tasks_per_node_is_a_clear_error():
    with pytest.raises(ConfigError, match="different numbers of tasks"):
        detect_dist_env(dict(SRUN, SLURM_STEP_TASKS_PER_NODE="4,3"))


def test_cyclic_task_distribution_is_a_clear_error():
    # --distribution=cyclic on 2 nodes puts ranks 0, 2, 4, 6 on node 0: rank 2 is local 1.
    with pytest.raises(ConfigError, match="distribution=block"):
        detect_dist_env(dict(SRUN, SLURM_PROCID="2", SLURM_LOCALID="1"))


def test_srun_without_job_id_or_master_port_is_a_clear_error():
    env = {k: v for k, v in SRUN.items() if k != "SLURM_JOB_ID"}
    with pytest.raises(ConfigError, match="set MASTER_PORT"):
        detect_dist_env(env)


@pytest.mark.parametrize(
    "nodelist, hosts",
    [
        ("node1", ["node1"]),
        ("node[01-03,07],gpu5", ["node01", "node02", "node03", "node07", "gpu5"]),
        ("n[8-10]", ["n8", "n9", "n10"]),
        ("n[08-10]", ["n08", "n09", "n10"]),
        ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
        ("n[1-2]-ib, m3", ["n1-ib", "n2-ib", "m3"]),
        ("10.0.0.1,10.0.0.2", ["10.0.0.1", "10.0.0.2"]),
    ],
)
def test_parse_slurm_nodelist(nodelist, hosts):
    assert parse_slurm_nodelist(nodelist) == hosts


@pytest.mark.parametrize("nodelist", ["n[1-2", "n]1", "n[3-1]", "n[a-b]", "n[[1]]", "a,,b", ""])
def test_parse_slurm_nodelist_rejects_malformed_lists(nodelist):
    with pytest.raises(ValueError):
        parse_slurm_nodelist(nodelist)


def test_malformed_nodelist_without_scontrol_asks_for_master_addr(monkeypatch):
    monkeypatch.setenv("PATH", "")  # no scontrol to fall back on
    with pytest.raises(ConfigError, match="SLURM_STEP_NODELIST='n\\[1-2'.*set MASTER_ADDR"):
        detect_dist_env(dict(SRUN, SLURM_STEP_NODELIST="n[1-2"))


def test_parse_slurm_tasks_per_node():
    assert parse_slurm_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert parse_slurm_tasks_per_node("8") == [8]
    with pytest.raises(ConfigError, match="Malformed SLURM task count"):
        parse_slurm_tasks_per_node("2x3")


def test_slurm_master_port_is_stable_per_job_and_differs_between_jobs():
    assert slurm_master_port("42") == slurm_master_port("42")
    assert slurm_master_port("42") != slurm_master_port("43")
    assert all(15000 <= slurm_master_port(str(j)) < 30000 for j in (0, 14999, 15000, 10**9))
