"""--deterministic and SEED < 0: repeatable runs, in process, on the bundled digits."""

import logging
import os
import re

import pytest
import torch

from engine_lib.config import get_cfg
from engine_lib.engine import default_argument_parser, train_or_evaluate
from engine_lib.engine.reproducibility import (
    CUBLAS_WORKSPACE_CONFIG,
    apply_determinism,
    resolve_seed,
    set_cublas_workspace_config,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "Digits", "cnn.yaml")
# A few iterations of a very small CNN: seconds, yet every weight depends on the seed.
TINY = ["MODEL.BACKBONE.WIDTH", "4", "SOLVER.IMS_PER_BATCH", "16", "SOLVER.MAX_ITER", "4"]
TINY += ["SOLVER.WARMUP_ITERS", "1", "SOLVER.CHECKPOINT_PERIOD", "100", "TEST.EVAL_PERIOD", "0"]
TINY += ["DATASETS.TEST", "()"]


@pytest.fixture(autouse=True)
def restore_torch_flags():
    """Deterministic mode is process-wide: leave it as it was for the other tests."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1:3]
    if saved[3] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[3]


def train(*argv, device="cpu"):
    """Run the body of tools/train_net.py in this process; return the final weights."""
    args = default_argument_parser().parse_args(["--config-file", CONFIG, *argv])
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list([*TINY, "MODEL.DEVICE", device, *args.opts])
    cfg.freeze()
    train_or_evaluate(cfg, args)
    path = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_random_seed_is_logged_recorded_and_repeats_the_run(tmp_path):
    first_dir, again_dir = tmp_path / "first", tmp_path / "again"
    first = train("--deterministic", "--work-dir", str(first_dir), "--cfg-options", "SEED=-1")
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    # --work-dir is OUTPUT_DIR: the run's files are there, and config.yaml holds the seed.
    assert {"config.yaml", "log.txt", "metrics.json"} <= set(os.listdir(first_dir))
    log = (first_dir / "log.txt").read_text()
    assert "Deterministic mode: cudnn.deterministic=True" in log
    match = re.search(r"Using random seed (\d+); repeat with SEED (\d+)", log)
    assert match is not None and match.group(1) == match.group(2)
    seed = int(match.group(1))
    assert f"Seed of this process: {seed}" in log  # rank 0 seeds SEED + 0
    dumped = get_cfg()
    dumped.merge_from_file(str(first_dir / "config.yaml"))
    assert dumped.SEED == seed and dumped.DETERMINISTIC is True

    # The dumped config repeats the run exactly; another seed does not.
    again = train("--work-dir", str(again_dir), "--config-file", str(first_dir / "config.yaml"))
    assert_same_weights(first, again)
    other = train("--deterministic", "--work-dir", str(tmp_path / "other"), "SEED", str(seed + 1))
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_deterministic_runs_on_cuda_give_identical_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    runs = [
        train("--deterministic", "--work-dir", str(tmp_path / name), "SEED", "7", device="cuda")
        for name in ("a", "b")
    ]
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE_CONFIG
    assert_same_weights(*runs)


def small_cfg(**keys):
    cfg = get_cfg()
    for key, value in keys.items():
        cfg[key] = value
    cfg.freeze()
    return cfg


def test_benchmark_is_overridden_with_a_warning():
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    log = logging.getLogger("engine_lib.engine.reproducibility")
    log.addHandler(handler)
    try:
        apply_determinism(small_cfg(DETERMINISTIC=True, CUDNN_BENCHMARK=True))
    finally:
        log.removeHandler(handler)
    assert any("CUDNN_BENCHMARK is ignored" in r.getMessage() for r in records)
    assert not torch.backends.cudnn.benchmark and torch.are_deterministic_algorithms_enabled()


def test_without_deterministic_only_benchmark_is_set():
    torch.use_deterministic_algorithms(False)
    apply_determinism(small_cfg(CUDNN_BENCHMARK=True))
    assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()


def test_fixed_seed_is_kept_and_random_seed_resolved_on_a_frozen_copy():
    fixed = small_cfg(SEED=5)
    assert resolve_seed(fixed) is fixed
    random_cfg = small_cfg(SEED=-1)
    resolved = resolve_seed(random_cfg)
    assert random_cfg.SEED == -1 and 0 <= resolved.SEED < 2**31 and resolved.is_frozen()


def test_cublas_workspace_config():
    env = {}
    assert set_cublas_workspace_config(env) == ":4096:8" and env == {
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8"
    }
    env = {"CUBLAS_WORKSPACE_CONFIG": ":16:8"}  # deterministic too, and smaller: kept
    assert set_cublas_workspace_config(env) == ":16:8"
    env = {"CUBLAS_WORKSPACE_CONFIG": ":0:0"}
    assert set_cublas_workspace_config(env) == ":4096:8"
