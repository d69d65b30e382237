"""A NaN loss in a real train_net.py run: a clear error, no bad checkpoint, resumable.

``nan_train_net.py`` is train_net.py with a test-only meta-architecture whose loss is NaN at
iteration ``NAN_AT_ITER``. Losses are checked at each metric flush (every LOG_PERIOD = 5
iterations), so a NaN at iteration 12 is reported at iteration 14, before the checkpoint of
iteration 14 could be written; the checkpoint of iteration 9 stays the resume point.
"""

import os
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nan_train_net.py")
CONFIG = os.path.join(REPO, "configs", "Digits", "cnn.yaml")
TINY = [
    "MODEL.META_ARCHITECTURE", "NaNAtIterClassifier",
    "MODEL.BACKBONE.WIDTH", "4",
    "SOLVER.IMS_PER_BATCH", "16",
    "SOLVER.MAX_ITER", "20",
    "SOLVER.WARMUP_ITERS", "5",
    "SOLVER.CHECKPOINT_PERIOD", "5",
    "SOLVER.LOG_PERIOD", "5",
    "TEST.EVAL_PERIOD", "0",
]  # fmt: skip


def _train(output_dir, nan_at, *extra, nan_rank=None):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", NAN_AT_ITER=str(nan_at))
    if nan_rank is not None:
        env["NAN_RANK"] = str(nan_rank)
    return subprocess.run(
        [sys.executable, SCRIPT, "--config-file", CONFIG, *extra, *TINY, "OUTPUT_DIR", output_dir],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    out = str(tmp_path)
    proc = _train(out, 12)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert "FloatingPointError: Loss became infinite or NaN at iteration=12" in log, log[-3000:]
    assert "loss_cls" in log.split("FloatingPointError")[-1]  # the loss is named
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read().strip() == "model_0000009.pth"
    saved = sorted(name for name in os.listdir(out) if name.endswith(".pth"))
    assert saved == ["model_0000004.pth", "model_0000009.pth"]
    for name in saved:
        model = torch.load(os.path.join(out, name), weights_only=True)["model"]
        assert all(torch.isfinite(t).all() for t in model.values() if t.is_floating_point())

    # The last good checkpoint is the resume point: without the NaN, training completes.
    proc = _train(out, 10**9, "--resume")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "Resuming training at iteration 10" in log
    assert os.path.isfile(os.path.join(out, "model_final.pth"))


def test_nan_on_one_rank_stops_every_rank_before_the_next_checkpoint(tmp_path):
    # Two gloo processes; only rank 1's loss turns NaN. The losses are averaged over ranks at
    # the flush, so rank 0 sees it too: both stop at the same iteration (no rank waits forever
    # in a collective) and the checkpoint of iteration 14 is never written.
    out = str(tmp_path)
    proc = _train(out, 12, "--num-gpus", "2", "SOLVER.IMS_PER_BATCH", "16", nan_rank=1)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    with open(os.path.join(out, "log.txt")) as f:  # rank 0's log
        assert "Loss became infinite or NaN at iteration=12" in f.read()
    with open(os.path.join(out, "log.txt.rank1")) as f:
        assert "Loss became infinite or NaN at iteration=12" in f.read()
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read().strip() == "model_0000009.pth"
    saved = sorted(name for name in os.listdir(out) if name.endswith(".pth"))
    assert saved == ["model_0000004.pth", "model_0000009.pth"]
