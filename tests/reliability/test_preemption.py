"""Preemption: a real SIGTERM / SIGUSR1 to a real training run, then --resume continues exactly.

The signal arrives right after the first metrics line (iteration 4); CHECKPOINT_PERIOD 7 makes
sure the checkpoint of the preempted iteration is written by the preemption hook, not by the
periodic checkpointer.
"""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))

import resume_check as rc  # noqa: E402

from engine_lib.engine import PREEMPTED_EXIT_CODE  # noqa: E402

CONFIG = os.path.join(REPO, "configs", "Digits", "cnn.yaml")
TINY = [
    "MODEL.BACKBONE.WIDTH", "4",
    "SOLVER.IMS_PER_BATCH", "16",
    "SOLVER.MAX_ITER", "20",
    "SOLVER.WARMUP_ITERS", "5",
    "SOLVER.CHECKPOINT_PERIOD", "7",
    "SOLVER.LOG_PERIOD", "5",
    "TEST.EVAL_PERIOD", "0",
]  # fmt: skip


def _preempt_and_resume(tmp_path, kill, num_gpus):
    verdict = rc.resume_check(CONFIG, TINY, str(tmp_path), [kill], num_gpus=num_gpus)
    assert verdict.exact, "\n".join(verdict.runs + verdict.problems)
    assert f"exit code {PREEMPTED_EXIT_CODE}" in verdict.runs[0], verdict.runs
    # With several processes the ranks agree every LOG_PERIOD (5) iterations, so the signal
    # seen after iteration 4's line stops them at iteration 9 at the latest.
    out = tmp_path / "interrupted"
    with open(out / "log.txt") as f:
        log = f.read()
    assert "Preempted (" in log, log[-3000:]
    assert "Resuming training at iteration" in log


def test_sigterm_one_process(tmp_path):
    _preempt_and_resume(tmp_path, rc.KillPoint(rc.ITER_LINE, 1, 0.0, "SIGTERM"), num_gpus=1)


@pytest.mark.slow
def test_sigusr1_to_the_launcher_of_two_gloo_processes(tmp_path):
    """Only the launching process is signalled: it forwards the signal to its workers, which
    agree on an iteration, save, exit with the preemption code, and so does the launcher."""
    kill = rc.KillPoint(rc.ITER_LINE, 1, 0.0, "SIGUSR1", group=False)
    _preempt_and_resume(tmp_path, kill, num_gpus=2)


def test_unknown_preempt_signal_is_a_config_error():
    from engine_lib.engine.hooks import PreemptionHandler
    from engine_lib.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="SIGNOPE"):
        PreemptionHandler(None, signals=["SIGTERM", "SIGNOPE"])
