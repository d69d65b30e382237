"""launch() with separate OS processes: two "machines", torchrun, srun, and failing workers.

Each test starts ``python -m tests.engine.dist_helpers ...`` (or torchrun) in a subprocess,
so that it can check exit codes, stderr and that no process is left behind.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine_lib.engine.launch import WorkerFailedError, launch
from tests.engine.dist_helpers import (
    die_on_rank_1,
    fail_at_iteration,
    free_port,
    read_results,
    record_layout,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
HELPERS = "tests.engine.dist_helpers"
_LAUNCHER_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)


def _env():
    env = dict(os.environ)
    for name in list(env):
        if name.startswith("SLURM_") or name in _LAUNCHER_VARS:
            env.pop(name)
    env["OMP_NUM_THREADS"] = "1"  # a shared 2-core machine
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _start(args, extra_env=None):
    return subprocess.Popen(
        args,
        cwd=REPO_ROOT,
        env=dict(_env(), **(extra_env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _alive(pid):
    """True if ``pid`` runs (a zombie, waiting for its parent to read its status, is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_two_machines_on_one_host_form_one_job(tmp_path):
    url = f"tcp://127.0.0.1:{free_port()}"
    machines = [
        _start([sys.executable, "-m", HELPERS, "layout", str(tmp_path), "1", "2", str(m), url])
        for m in (0, 1)
    ]
    for machine in machines:
        out, err = machine.communicate(timeout=120)
        assert machine.returncode == 0, err
    layouts = read_results(str(tmp_path), "layout", 2)
    for rank, layout in enumerate(layouts):
        assert layout["rank"] == rank and layout["world_size"] == 2
        # One process per machine: each machine is its own local group.
        assert (layout["local_rank"], layout["local_size"]) == (0, 1)
        assert layout["all_ranks"] == [0, 1]
        # With one process per machine nothing is spawned: main ran in the launching process.
        assert layout["pid"] == layout["launcher_pid"]
        assert layout["pid"] == machines[rank].pid


def test_torchrun_environment_joins_without_spawning(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    job = _start([*torchrun, "--nproc-per-node", "2", "-m", HELPERS, "layout", str(tmp_path)])
    out, err = job.communicate(timeout=120)
    assert job.returncode == 0, err
    layouts = read_results(str(tmp_path), "layout", 2)
    for rank, layout in enumerate(layouts):
        assert layout["initialized"]
        assert (layout["rank"], layout["world_size"]) == (rank, 2)
        assert (layout["local_rank"], layout["local_size"]) == (rank, 2)
        assert layout["all_ranks"] == [0, 1]
        assert layout["pid"] == layout["launcher_pid"]


def test_srun_environment_joins_without_spawning(tmp_path):
    # What srun --ntasks-per-node 2 sets for its tasks, on a one-node "cluster".
    slurm = {
        "SLURM_JOB_ID": "4242",
        "SLURM_STEP_ID": "0",
        "SLURM_NTASKS": "2",
        "SLURM_STEP_TASKS_PER_NODE": "2",
        "SLURM_STEP_NODELIST": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    tasks = [
        _start(
            [sys.executable, "-m", HELPERS, "layout", str(tmp_path)],
            extra_env=dict(slurm, SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank)),
        )
        for rank in (0, 1)
    ]
    for task in tasks:
        out, err = task.communicate(timeout=120)
        assert task.returncode == 0, err
    for rank, layout in enumerate(read_results(str(tmp_path), "layout", 2)):
        assert (layout["rank"], layout["world_size"]) == (rank, 2)
        assert (layout["local_rank"], layout["local_size"]) == (rank, 2)
        assert layout["pid"] == layout["launcher_pid"] == tasks[rank].pid


def _assert_workers_gone(out_dir):
    pids = read_results(out_dir, "pid", 2)
    deadline = time.time() + 5
    while any(_alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids), "a worker outlived the job"


def test_failing_worker_stops_a_peer_waiting_in_a_collective(tmp_path):
    # Rank 1 raises at iteration 3 while rank 0 waits in DDP's all-reduce.
    with pytest.raises(WorkerFailedError) as info:
        launch(fail_at_iteration, 2, args=(str(tmp_path), 3, "collective"), backend="gloo")
    ended = time.time()
    failed_at = read_results(str(tmp_path), "failed_at", 1)[0]
    assert ended - failed_at < 30, f"the job took {ended - failed_at:.0f} s to end"
    assert info.value.rank == 1
    message = str(info.value)
    assert message.startswith("Worker with rank 1 ")
    assert "boom on rank 1 at iteration 3" in message
    assert "Traceback" in message and "in before_step" in message
    # Rank 0 failed too (its peer closed the connection), reported as the consequence.
    assert "rank 0: " in message.split("Also failed afterwards")[1]
    _assert_workers_gone(str(tmp_path))


def test_failing_worker_ends_the_job_even_if_a_peer_ignores_sigterm(tmp_path):
    # Rank 0 never returns and ignores SIGTERM; the launching process must still end it,
    # then exit non-zero with rank 1's traceback.
    job = _start([sys.executable, "-m", HELPERS, "fail", str(tmp_path), "3", "stuck"])
    out, err = job.communicate(timeout=120)
    ended = time.time()
    assert job.returncode != 0
    failed_at = read_results(str(tmp_path), "failed_at", 1)[0]
    assert ended - failed_at < 30, f"the job took {ended - failed_at:.0f} s to end"
    assert "WorkerFailedError: Worker with rank 1" in err
    assert "boom on rank 1 at iteration 3" in err
    assert "Traceback" in err and "in before_step" in err  # the worker's own traceback
    _assert_workers_gone(str(tmp_path))


def test_the_rendezvous_file_a_dead_job_left_does_not_stop_the_next_job(tmp_path):
    url = f"file://{tmp_path / 'rendezvous'}"
    with pytest.raises(WorkerFailedError, match="rank 1 .* exited with code 3"):
        launch(die_on_rank_1, 2, dist_url=url, args=(3,), backend="gloo")
    assert (tmp_path / "rendezvous").exists()  # left behind, else the reuse proves nothing
    # The same --dist-url again: the stale file is removed, not read (which fails the job).
    launch(record_layout, 2, dist_url=url, args=(str(tmp_path), os.getpid()), backend="gloo")
    assert [r["all_ranks"] for r in read_results(str(tmp_path), "layout", 2)] == [[0, 1]] * 2
