"""Periods in epochs: a kill after an epoch's checkpoint loses no metrics.json line.

The epoch-1 evaluation and checkpoint are at iteration 21, between two periodic writes (at 39
and 43 with LOG_PERIOD 40: 18 iterations, ~1 s, after it). The run is killed 0.3 s
after the iteration-21 checkpoint starts to be written (a tiny model: the write takes
milliseconds) and resumed from iteration 22, which does not evaluate epoch 1 again: the
epoch-1 line exists only if it was written before that checkpoint was saved.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))

import resume_check as rc  # noqa: E402

CONFIG = os.path.join(REPO, "configs", "Digits", "cnn.yaml")
EPOCHS = [
    "MODEL.BACKBONE.WIDTH", "4",
    "SOLVER.IMS_PER_BATCH", "64",  # 1437 digits: 22 iterations per epoch
    "SOLVER.MAX_ITER", "-1",
    "SOLVER.MAX_EPOCH", "2",
    "SOLVER.WARMUP_ITERS", "5",
    "TEST.EVAL_PERIOD", "1ep",
    "SOLVER.CHECKPOINT_PERIOD", "1ep",
    "SOLVER.LOG_PERIOD", "40",
]  # fmt: skip


def test_a_kill_after_the_epoch_checkpoint_keeps_the_epoch_evaluation_line(tmp_path):
    after_epoch_1 = rc.KillPoint(r"Saving checkpoint to .*model_0000021", delay=0.3)
    verdict = rc.resume_check(CONFIG, EPOCHS, str(tmp_path), [after_epoch_1])
    assert verdict.exact, "\n".join(verdict.runs + verdict.problems)
    assert "exit code -9" in verdict.runs[0], verdict.runs
    log = (tmp_path / "interrupted" / "log.txt").read_text()
    assert "Resuming training at iteration 22" in log, log[-3000:]
