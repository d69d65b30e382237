"""One job per OUTPUT_DIR (a real second job, a real stale lock) and the fresh-run rule."""

import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from engine_lib.engine.output_dir import (
    LOCK_FILE,
    PreviousRunError,
    check_fresh_run,
    lock_output_dir,
    release_output_dir,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "Digits", "cnn.yaml")
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
ENV = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
TINY = ["MODEL.BACKBONE.WIDTH", "4", "SOLVER.IMS_PER_BATCH", "8", "SOLVER.WARMUP_ITERS", "0"]


def _wait_for(path: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, f"the first job ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.2)


def test_second_job_stops_naming_the_holder_and_a_killed_holder_leaves_a_stale_lock(
    tmp_path, caplog
):
    out = str(tmp_path / "run")
    lock = os.path.join(out, LOCK_FILE)
    long_run = ["SOLVER.MAX_ITER", "100000", "SOLVER.CHECKPOINT_PERIOD", "100000"]
    first = subprocess.Popen(
        [sys.executable, TRAIN_NET, "--config-file", CONFIG, *TINY, *long_run, "OUTPUT_DIR", out],
        env=ENV,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for(lock, first)
        # Stopped, it still holds its lock, and leaves the CPU to the second job.
        os.killpg(first.pid, signal.SIGSTOP)
        start = time.monotonic()
        # Two processes: rank 0 finds the lock taken, rank 1 learns it through a collective,
        # and the launcher prints the one line.
        second = subprocess.run(
            [sys.executable, TRAIN_NET, "--config-file", CONFIG, "--num-gpus", "2", "--resume"]
            + [*TINY, "SOLVER.MAX_ITER", "4", "OUTPUT_DIR", out],
            env=ENV,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = second.stdout + second.stderr
        assert second.returncode == 2, output[-3000:]
        assert "Traceback" not in output, output[-3000:]
        last = second.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: OUTPUT_DIR {out!r} is in use by another job"), last
        assert f"pid {first.pid} on host" in last and "train_net.py" in last, last
        assert "started 20" in last and "another OUTPUT_DIR" in last, last
        assert first.poll() is None, "the first job was disturbed"
        print(f"second job: {time.monotonic() - start:.1f} s")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # kill -9: the lock file stays behind
        first.wait(timeout=60)
    assert os.path.exists(lock)
    caplog.set_level(logging.WARNING, logger="engine_lib")
    lock_output_dir(out)  # the OS released the dead job's lock: taken over, with a warning
    try:
        warnings = [r.getMessage() for r in caplog.records if "stale lock" in r.getMessage()]
        assert len(warnings) == 1, caplog.text
        assert f"pid {first.pid}" in warnings[0] and "its process is gone" in warnings[0]
        with open(lock) as f:
            assert f'"pid": {os.getpid()}' in f.read()
    finally:
        release_output_dir(out)
    assert not os.path.exists(lock)


def test_lock_is_reentrant_in_one_process_and_released_without_a_trace(tmp_path):
    out = str(tmp_path)
    lock_output_dir(out)
    lock_output_dir(out)  # a second default_setup in the same process
    assert os.path.exists(os.path.join(out, LOCK_FILE))
    release_output_dir(out)
    release_output_dir(out)
    assert os.listdir(out) == []
    lock_output_dir(os.path.join(out, "later"), if_exists=True)  # locked once created
    assert os.listdir(out) == []


def _previous_run(out) -> None:
    for name in ("model_0000009.pth", "model_final.pth", "last_checkpoint", "metrics.json"):
        (out / name).write_text("x")
    (out / "config.yaml").write_text("x")


def test_fresh_run_over_a_previous_run_is_refused_with_the_ways_out(tmp_path):
    _previous_run(tmp_path)
    with pytest.raises(PreviousRunError) as info:
        check_fresh_run(str(tmp_path), resume=False, eval_only=False, overwrite=False)
    message = str(info.value)
    for needle in ("holds a previous run", "last_checkpoint", "--resume", "--overwrite"):
        assert needle in message, message
    check_fresh_run(str(tmp_path), resume=True, eval_only=False, overwrite=False)
    check_fresh_run(str(tmp_path), resume=False, eval_only=True, overwrite=False)
    assert len(os.listdir(tmp_path)) == 5
    # A directory with only a config and a log (a run that failed early) is not a run.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.yaml").write_text("x")
    check_fresh_run(str(tmp_path / "other"), resume=False, eval_only=False, overwrite=False)


def test_overwrite_removes_the_previous_runs_checkpoints_and_metrics(tmp_path):
    _previous_run(tmp_path)
    check_fresh_run(str(tmp_path), resume=False, eval_only=False, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["config.yaml"]
