"""--launcher, --local-rank, --work-dir and --cfg-options: mmdetection's command-line habits.

The ``pytorch`` and ``mpi`` launchers are checked with two real processes on gloo, started
by the test with the variables torchrun / mpirun would set.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine_lib.config import get_cfg
from engine_lib.engine import launch, launch_from_args
from engine_lib.engine.arguments import default_argument_parser, fold_config_flags
from engine_lib.engine.launch.backends import (
    DistEnv,
    detect_dist_env,
    slurm_master_port,
    spawning_machines,
)
from engine_lib.utils.errors import ConfigError, ConfigKeyError
from tests.engine.dist_helpers import free_port
from tests.engine.launcher_compat_helpers import build_cfg, report

REPO_ROOT = Path(__file__).resolve().parents[2]
HELPER = "tests.engine.launcher_compat_helpers"
_LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR")
_LAUNCHER_VARS += ("MASTER_PORT", "GROUP_RANK")

MPI = {
    "OMPI_COMM_WORLD_RANK": "3",
    "OMPI_COMM_WORLD_SIZE": "4",
    "OMPI_COMM_WORLD_LOCAL_RANK": "1",
    "OMPI_COMM_WORLD_LOCAL_SIZE": "2",
}
TORCHRUN = {
    "RANK": "1",
    "WORLD_SIZE": "2",
    "LOCAL_RANK": "1",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29999",
}


def parse(*argv):
    return default_argument_parser().parse_args(list(argv))


def parse_error(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        parse(*argv)
    assert info.value.code == 2
    return capsys.readouterr().err


# ----------------------------------------------------------------------------- parsing


def test_new_flags_default_to_today_s_behaviour():
    args = parse()
    assert args.launcher is None and args.local_rank is None
    assert args.work_dir is None and args.deterministic is False and args.cfg_options == []
    assert args.opts == []


@pytest.mark.parametrize("argv", [["--local_rank", "3"], ["--local-rank=3"], ["--local_rank=3"]])
def test_both_spellings_of_local_rank(argv):
    assert parse(*argv).local_rank == 3


def test_config_flags_fold_into_the_overrides():
    args = parse(
        "--work-dir", "runs/a", "--deterministic",
        "--cfg-options", "SOLVER.BASE_LR=0.5", "INPUT.SIZE_TRAIN=[8, 8]", "MODEL.DEVICE=cpu",
        "--", "SEED", "3",
    )  # fmt: skip
    assert args.opts == [
        "OUTPUT_DIR", "runs/a", "DETERMINISTIC", "True", "SOLVER.BASE_LR", "0.5",
        "INPUT.SIZE_TRAIN", "[8, 8]", "MODEL.DEVICE", "cpu", "SEED", "3",
    ]  # fmt: skip
    cfg = build_cfg(args)
    assert cfg.OUTPUT_DIR == "runs/a" and cfg.DETERMINISTIC is True and cfg.SEED == 3
    # Values are read like trailing pairs: literals become numbers and lists.
    assert cfg.SOLVER.BASE_LR == 0.5 and list(cfg.INPUT.SIZE_TRAIN) == [8, 8]
    fold_config_flags(args)  # a second fold adds nothing
    assert args.opts.count("OUTPUT_DIR") == 1


def test_cfg_options_after_trailing_pairs():
    args = parse("SEED", "3", "--cfg-options", "SOLVER.BASE_LR=0.5", "OUTPUT_DIR=a=b")
    assert args.opts == ["SOLVER.BASE_LR", "0.5", "OUTPUT_DIR", "a=b", "SEED", "3"]


def test_work_dir_equal_to_output_dir_is_fine():
    assert parse("--work-dir", "out/x", "OUTPUT_DIR", "out/x/").opts == ["OUTPUT_DIR", "out/x/"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--cfg-options", "SOLVER.BASE_LR"],
            "--cfg-options item 'SOLVER.BASE_LR' is not KEY=VALUE",
        ),
        (["--cfg-options", "A=1", "SEED", "3"], "--cfg-options item 'SEED' is not KEY=VALUE"),
        (["--cfg-options", "=3"], "--cfg-options item '=3' is not KEY=VALUE"),
        (
            ["--work-dir", "a", "OUTPUT_DIR", "b"],
            "--work-dir a contradicts OUTPUT_DIR b: give OUTPUT_DIR one value",
        ),
        (
            ["--work-dir", "a", "--cfg-options", "OUTPUT_DIR=b"],
            "--cfg-options OUTPUT_DIR=b contradicts --work-dir a",
        ),
        (
            ["--deterministic", "DETERMINISTIC", "False"],
            "--deterministic contradicts DETERMINISTIC",
        ),
        (["--launcher", "torchrun"], "invalid choice: 'torchrun'"),
        (["--local-rank", "-1"], "--local-rank must be at least 0, got -1"),
    ],
)
def test_mistakes_in_the_new_flags_are_clear(capsys, argv, message):
    err = parse_error(capsys, *argv)
    assert message in err and err.splitlines()[-1].startswith("error: ")


def test_cfg_options_unknown_key_is_the_config_merge_error():
    args = parse("--cfg-options", "SOLVER.BASE_LRR=0.1")
    with pytest.raises(ConfigKeyError, match="SOLVER.BASE_LRR"):
        build_cfg(args)


def test_help_shows_the_new_examples(capsys):
    with pytest.raises(SystemExit):
        parse("--help")
    out = capsys.readouterr().out
    for text in (
        "--launcher mpi",
        "--work-dir runs/a --cfg-options",
        "--deterministic",
        "torchrun",
    ):
        assert text in out


# ----------------------------------------------------------------------------- detection


def test_launcher_none_ignores_torchrun_and_slurm():
    env = {**TORCHRUN, "SLURM_PROCID": "0", "SLURM_STEP_ID": "0"}
    assert detect_dist_env(env, launcher="none") is None


def test_launcher_pytorch_names_the_missing_variables():
    with pytest.raises(ConfigError, match="--launcher pytorch .* RANK, WORLD_SIZE are not set"):
        detect_dist_env(
            {"LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, launcher="pytorch"
        )


def test_launcher_slurm_names_the_missing_variables():
    with pytest.raises(ConfigError, match="SLURM_LOCALID, SLURM_STEP_ID or SLURM_STEPID are not"):
        detect_dist_env({"SLURM_PROCID": "0", **TORCHRUN}, launcher="slurm")


def test_launcher_mpi_reads_open_mpi_variables():
    env = detect_dist_env(
        {**MPI, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}, launcher="mpi"
    )
    assert env == DistEnv("mpi", 3, 4, 1, 2, "10.0.0.1", 29500)
    assert env.init_method == "tcp://10.0.0.1:29500" and env.machine_rank == 1
    # Without MASTER_ADDR/PORT, --dist-url is the rendezvous.
    env = detect_dist_env(MPI, launcher="mpi", dist_url="tcp://10.0.0.2:1234")
    assert (env.master_addr, env.master_port) == ("10.0.0.2", 1234)
    # Open MPI's variables alone are not detected: mpirun also runs non-distributed programs.
    assert detect_dist_env(MPI) is None


@pytest.mark.parametrize(
    "env, dist_url, message",
    [
        ({}, None, "OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, .* are not set"),
        (MPI, "auto", "needs the address of rank 0: set MASTER_ADDR and MASTER_PORT"),
        (MPI, "tcp://127.0.0.1:1234", "points to the local machine"),
        ({**MPI, "MASTER_ADDR": "h"}, None, "MASTER_PORT is not set"),
        ({**MPI, "OMPI_COMM_WORLD_LOCAL_RANK": "0"}, "tcp://h:1", "ranks are not consecutive"),
    ],
)
def test_launcher_mpi_mistakes(env, dist_url, message):
    with pytest.raises(ConfigError, match=message):
        detect_dist_env(env, launcher="mpi", dist_url=dist_url)


def test_local_rank_stands_in_for_a_missing_local_rank_variable():
    legacy = {k: v for k, v in TORCHRUN.items() if k != "LOCAL_RANK"}
    assert detect_dist_env(legacy, local_rank=1).local_rank == 1
    with pytest.raises(ConfigError, match="--local-rank 0 contradicts the torchrun environment"):
        detect_dist_env(TORCHRUN, local_rank=0)
    with pytest.raises(ConfigError, match="no launcher started this process"):
        detect_dist_env({}, local_rank=0)
    with pytest.raises(ConfigError, match="--launcher none ignores launchers"):
        detect_dist_env(TORCHRUN, launcher="none", local_rank=1)


# ----------------------------------------------------------------------------- real launches


def _read(out_dir, world_size):
    return [json.loads((Path(out_dir) / f"rank{r}.json").read_text()) for r in range(world_size)]


def test_launcher_none_runs_alone_under_torchrun_variables(tmp_path, monkeypatch):
    for name, value in {**TORCHRUN, "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    args = parse("--launcher", "none", "--work-dir", str(tmp_path))
    launch_from_args(report, args, build_cfg(args))  # would wait for rank 0 without "none"
    (seen,) = _read(tmp_path, 1)
    assert (seen["rank"], seen["world_size"], seen["local_rank"], seen["local_size"]) == (
        0,
        1,
        0,
        1,
    )
    assert seen["env_rank"] is None and seen["pid"] == os.getpid()


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_"))}
    for name in _LAUNCHER_VARS:
        env.pop(name, None)
    env["OMP_NUM_THREADS"] = "1"  # a shared 2-core machine
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _run_two(per_rank_argv, per_rank_env):
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", HELPER, *argv],
            cwd=REPO_ROOT,
            env=_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv, env in zip(per_rank_argv, per_rank_env)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    return procs


def test_launcher_pytorch_and_legacy_local_rank_in_real_processes(tmp_path):
    # Rank 0 as torchrun starts it; rank 1 as the legacy torch.distributed.launch does
    # (--local_rank on the command line, no LOCAL_RANK variable).
    common = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    procs = _run_two(
        [
            ["--launcher", "pytorch", "--work-dir", str(tmp_path), "--num-gpus", "3"],
            ["--local_rank=1", "--launcher", "pytorch", "--work-dir", str(tmp_path)],
        ],
        [dict(common, RANK="0", LOCAL_RANK="0"), dict(common, RANK="1")],
    )
    for rank, seen in enumerate(_read(tmp_path, 2)):
        assert (seen["rank"], seen["world_size"]) == (rank, 2)
        assert (seen["local_rank"], seen["local_size"]) == (rank, 2)
        assert seen["sum"] == 3.0  # 1 + 2: the all-reduce crossed the two processes
        assert seen["pid"] == procs[rank].pid  # nothing spawned, --num-gpus ignored


def test_launcher_mpi_in_real_processes(tmp_path):
    url = f"tcp://127.0.0.1:{free_port()}"
    mpi = {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
    procs = _run_two(
        [["--launcher", "mpi", "--dist-url", url, "--work-dir", str(tmp_path), "SEED", "-1"]] * 2,
        [dict(mpi, OMPI_COMM_WORLD_RANK=str(r), OMPI_COMM_WORLD_LOCAL_RANK=str(r)) for r in (0, 1)],
    )
    for rank, seen in enumerate(_read(tmp_path, 2)):
        assert (seen["rank"], seen["world_size"], seen["local_rank"]) == (rank, 2, rank)
        assert seen["sum"] == 3.0 and seen["pid"] == procs[rank].pid
    # SEED -1: one seed drawn for the whole job (rank 0's), not one per process.
    seeds = [seen["seed"] for seen in _read(tmp_path, 2)]
    assert seeds[0] == seeds[1] >= 0


def test_slurm_one_task_per_machine_spawns_and_forms_one_job(tmp_path):
    # srun --ntasks-per-node 1 on two "machines" (both this host), each task asking for 2
    # workers: one job of 4 ranks, machine i holding ranks 2i and 2i + 1. Without the SLURM
    # layout each task would have run a separate one-machine job.
    step = {
        "SLURM_JOB_ID": "4242",
        "SLURM_STEP_ID": "0",
        "SLURM_STEP_NUM_TASKS": "2",
        "SLURM_STEP_TASKS_PER_NODE": "1(x2)",
        "SLURM_STEP_NODELIST": "localhost",
        "SLURM_LOCALID": "0",
        "MASTER_PORT": str(free_port()),
    }
    _run_two(
        [["--num-gpus", "2", "--work-dir", str(tmp_path)]] * 2,
        [dict(step, SLURM_PROCID=str(machine)) for machine in (0, 1)],
    )
    seen = _read(tmp_path, 4)
    assert [(s["rank"], s["world_size"], s["local_size"]) for s in seen] == [
        (rank, 4, 2) for rank in range(4)
    ]
    assert [s["local_rank"] for s in seen] == [0, 1, 0, 1]
    assert all(s["sum"] == 10.0 for s in seen)  # 1 + 2 + 3 + 4: one job across both tasks


def test_slurm_one_task_per_machine_rejects_contradicting_flags(monkeypatch):
    step = {"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "2"}
    step.update(SLURM_STEP_TASKS_PER_NODE="1(x2)", SLURM_STEP_NODELIST="n[1-2]")
    step.update(SLURM_LOCALID="0", SLURM_PROCID="1")
    machines = spawning_machines(step, num_gpus_per_machine=8)
    assert (machines.world_size, machines.rank) == (2, 1)
    assert machines.init_method == f"tcp://n1:{slurm_master_port('7')}"
    assert spawning_machines(step, num_gpus_per_machine=1) is None  # one task = one worker
    assert spawning_machines(step, 8, launcher="none") is None
    for name in _LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in step.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="--num-machines 3 contradicts the SLURM step"):
        launch(report, 8, num_machines=3, machine_rank=1, dist_url="tcp://n1:1")
    with pytest.raises(ConfigError, match="--machine-rank 0 contradicts SLURM_PROCID=1"):
        launch(report, 8, num_machines=2, machine_rank=0, dist_url="tcp://n1:1")


def test_missing_torchrun_variables_are_named(tmp_path, monkeypatch):
    for name in _LAUNCHER_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "0")
    args = parse("--launcher", "pytorch", "--work-dir", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        launch_from_args(report, args, build_cfg(args))
    assert str(info.value) == (
        "--launcher pytorch needs the environment variables set by torchrun, but "
        "WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT are not set."
    )
    assert not list(tmp_path.iterdir())  # nothing ran


def test_get_cfg_knows_deterministic():
    assert get_cfg().DETERMINISTIC is False
