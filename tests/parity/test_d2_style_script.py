"""Run the detectron2-style script and check what detectron2 documents it produces."""

import json
import os
import re
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "d2_style_script.py")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(SCRIPT)))


def _run(out_dir, max_iter, *args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, SCRIPT, str(out_dir), str(max_iter), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), output


def test_d2_style_script_runs_writes_prints_and_resumes(tmp_path):
    summary, output = _run(tmp_path, 40)
    # PeriodicWriter(period=10): writes after iterations 9, 19, 29, 39, and once more after
    # training, where the final evaluation (iteration 40) is the only new line.
    assert summary["json_iterations"] == [9, 19, 29, 39, 40]
    # The printer: one line per periodic write (not after training), losses, the model's
    # "[metric]" scalar, times, LR; the last one with ETA 0.
    lines = [line for line in output.splitlines() if re.search(r"\biter: \d+", line)]
    assert [int(re.search(r"\biter: (\d+)", x).group(1)) for x in lines] == [9, 19, 29, 39]
    for line in lines:
        for field in ("total_loss:", "loss_mse:", "loss_l1:", "[metric]weight_norm:", "time:",
                      "last_time:", "data_time:", "last_data_time:", "lr:"):  # fmt: skip
            assert field in line, (field, line)
    assert "eta: 0:00:00" in lines[-1]
    # Every loss iteration is in the history (engine_lib's default; detectron2 keeps only
    # the gathered ones: see test_engine_parity.test_metric_gather_and_write_as_detectron2).
    history = summary["history"]
    assert history["total_loss"] == history["loss_mse"] == history["data_time"] == 40
    assert history["[metric]weight_norm"] == 40 and history["lr"] == 40
    assert history["val/mse"] == 2  # EvalHook(20): after iteration 19 and after training
    assert summary["files"] == ["model_0000014.pth", "model_0000029.pth", "model_final.pth"]
    assert summary["lr"] == 0.001  # SOLVER.STEPS (30,), GAMMA 0.1

    # Resume the detectron2 way to 50 iterations: from the last checkpoint (model_final at
    # iteration 39), so training continues at 40.
    resumed, output = _run(tmp_path, 50, "--resume")
    assert resumed["start_iter"] == 40
    # metrics.json keeps the lines before the resumed iteration (detectron2 appends to it
    # and would keep the first run's line 40 too: an intended difference).
    assert resumed["json_iterations"] == [9, 19, 29, 39, 49, 50]
    assert resumed["history"]["total_loss"] == 10
