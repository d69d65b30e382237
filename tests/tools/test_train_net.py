"""End-to-end runs of tools/train_net.py and tools/predict.py in subprocesses."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "Digits", "cnn.yaml")

# A short, fast variant of the digits config: enough iterations to learn the digits well.
FAST = [
    "SOLVER.MAX_ITER",
    "60",
    "SOLVER.WARMUP_ITERS",
    "10",
    "SOLVER.CHECKPOINT_PERIOD",
    "20",
    "SOLVER.LOG_PERIOD",
    "10",
    "TEST.EVAL_PERIOD",
    "0",
]


def run_tool(script, *args, timeout=300):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


def train(output_dir, *extra):
    return run_tool(
        "train_net.py", "--config-file", CONFIG, *extra, "OUTPUT_DIR", str(output_dir), *FAST
    )


def load_model(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def read_metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short training run shared by the tests below."""
    out = tmp_path_factory.mktemp("digits")
    proc = train(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def test_train_writes_outputs_and_reaches_accuracy(trained):
    out, proc = trained
    for name in ["config.yaml", "log.txt", "metrics.json", "model_final.pth", "last_checkpoint"]:
        assert os.path.isfile(os.path.join(out, name)), name
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(out))
    metrics = read_metrics(out)
    iterations = [m["iteration"] for m in metrics]
    assert len(iterations) == len(set(iterations))
    # The final evaluation runs after training, and is recorded at iteration MAX_ITER.
    assert iterations[-2:] == [59, 60]
    final = [m for m in metrics if "classification/top1" in m]
    assert final and final[-1]["classification/top1"] > 85.0
    log = proc.stdout + proc.stderr
    assert "classification/top1" in log  # the final metrics table


def test_eval_only_reproduces_accuracy_and_a_missed_expected_result_fails(trained, tmp_path):
    out, _ = trained
    top1 = [m for m in read_metrics(out) if "classification/top1" in m][-1]["classification/top1"]
    # An expected top-1 the model cannot reach: the evaluation still runs and reports its
    # value, then the run fails with exit code 2 and one line naming the miss.
    proc = run_tool(
        "train_net.py",
        "--config-file",
        CONFIG,
        "--eval-only",
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
        "OUTPUT_DIR",
        str(tmp_path),
        "TEST.EXPECTED_RESULTS",
        f"[['classification', 'top1', {top1 + 5:.4f}, 1.0]]",
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"{top1:.4f}" in proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: TEST.EXPECTED_RESULTS not met"), last
    assert f"got {top1:.4f}" in last and "Traceback" not in proc.stderr


def test_predict_names_the_class_of_a_png(trained, tmp_path):
    out, _ = trained
    from engine_lib.data.datasets import load_digits_dicts

    record = next(r for r in load_digits_dicts("test") if r["label"] == 3)
    path = tmp_path / "three.png"
    Image.fromarray(record["image"]).save(path)
    result = tmp_path / "pred.json"
    proc = run_tool(
        "predict.py",
        "--config-file",
        CONFIG,
        "--input",
        str(path),
        "--output",
        str(result),
        "--opts",
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    predictions = json.loads(result.read_text())
    assert predictions[str(path)][0]["class"] == "3"
    assert f"{path}: 3 (" in proc.stdout


def test_resume_continues_at_the_right_iteration_and_matches(trained, tmp_path):
    """Resuming from the iteration-39 checkpoint ends with the uninterrupted run's weights."""
    out, _ = trained
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for name in ["model_0000039.pth", "metrics.json"]:
        (resumed / name).write_bytes((out / name).read_bytes())
    (resumed / "last_checkpoint").write_text("model_0000039.pth")
    proc = train(resumed, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resuming training at iteration 40" in proc.stdout + proc.stderr
    expected, got = load_model(out / "model_final.pth"), load_model(resumed / "model_final.pth")
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    iterations = [m["iteration"] for m in read_metrics(resumed)]
    assert len(iterations) == len(set(iterations)) and iterations[-1] == 60


def test_user_errors_end_with_one_line(tmp_path):
    proc = train(tmp_path, "SOLVER.BASE_LRR", "0.1")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: Unknown config key")
    assert "Traceback" not in proc.stderr
    proc = train(tmp_path, "DATASETS.TRAIN", "('digits_trian',)")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "digits_trian" in proc.stderr and "digits_train" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_two_gloo_processes_train_in_epochs_with_auto_scaling(tmp_path):
    # REFERENCE_WORLD_SIZE 1 on 2 processes doubles the global batch (32 -> 64): an epoch of
    # the 1437 training digits is then 1437 // 64 = 22 iterations. Epoch-valued lengths and
    # periods follow the scaled batch; they are not divided by the scale a second time.
    epochs = ["SOLVER.REFERENCE_WORLD_SIZE", "1", "SOLVER.IMS_PER_BATCH", "32"]
    epochs += ["SOLVER.MAX_EPOCH", "3", "SOLVER.CHECKPOINT_PERIOD", "1ep"]
    epochs += ["SOLVER.MAX_TO_KEEP", "0"]
    epochs += ["SOLVER.WARMUP_ITERS", "10", "SOLVER.LOG_PERIOD", "10", "TEST.EVAL_PERIOD", "0"]
    proc = run_tool(
        "train_net.py", "--config-file", CONFIG, "--num-gpus", "2", "--dist-url", "auto",
        "OUTPUT_DIR", str(tmp_path), *epochs,
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "IMS_PER_BATCH=64" in log and "One epoch is 22 iterations" in log, log[-3000:]
    assert "training for 66 iterations" in log
    saved = sorted(name for name in os.listdir(tmp_path) if name.endswith(".pth"))
    assert saved == ["model_0000021.pth", "model_0000043.pth", "model_0000065.pth"] + [
        "model_final.pth"
    ]
    assert os.path.isfile(tmp_path / "log.txt.rank1")
    final = [m for m in read_metrics(tmp_path) if "classification/top1" in m][-1]
    assert final["classification/top1"] > 85.0
    assert np.isfinite(final["classification/top1"])


def test_predict_takes_trailing_overrides_on_the_sample_image(trained):
    """The README's predict example: the shipped sample (a 3 of the test split), with the
    overrides as trailing KEY VALUE pairs like train_net.py's."""
    out, _ = trained
    sample = os.path.join(REPO, "configs", "Digits", "sample_digit.png")
    proc = run_tool(
        "predict.py",
        "--config-file",
        CONFIG,
        "--input",
        sample,
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{sample}: 3 (" in proc.stdout
