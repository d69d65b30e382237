"""tools/benchmark.py with a few iterations on the digits config."""

import os

import pytest

from engine_lib.config import get_cfg
from tests.tools._load import REPO, load_tool

bench_tool = load_tool("benchmark")
CONFIG = os.path.join(REPO, "configs", "Digits", "cnn.yaml")
SMALL = ["MODEL.BACKBONE.WIDTH", "4", "SOLVER.IMS_PER_BATCH", "8", "TEST.IMS_PER_BATCH", "16"]


def run(tmp_path, *argv):
    args = bench_tool.get_parser().parse_args(
        ["--config-file", CONFIG, *argv, *SMALL, "OUTPUT_DIR", str(tmp_path / "out")]
    )
    return bench_tool.main(args)


def test_all_tasks_print_a_table_and_write_nothing(tmp_path, capsys):
    results = run(
        tmp_path,
        "--task",
        "data",
        "--task",
        "train",
        "--task",
        "eval",
        "--iters",
        "3",
        "--warmup",
        "1",
    )
    assert [r["task"] for r in results] == ["data", "train", "eval"]
    data, train, evaluation = results
    assert data["images"] == 3 * 8 and train["images"] == 3 * 8 and evaluation["images"] == 3 * 16
    for r in results:
        assert r["iterations"] == 3
        assert r["seconds"] > 0 and r["images/s"] == pytest.approx(r["images"] / r["seconds"])
        assert r["s/iter"] == pytest.approx(r["seconds"] / 3)
    table = capsys.readouterr().out
    assert "images/s" in table and "| train" in table and "| eval" in table
    # No checkpoints, metrics or config dumps: the benchmark leaves OUTPUT_DIR alone.
    assert not os.path.exists(tmp_path / "out") or not os.listdir(tmp_path / "out")


@pytest.mark.parametrize("length", [[], ["SOLVER.MAX_EPOCH", "3"]], ids=["iters", "epochs"])
def test_train_benchmark_runs_exactly_warmup_plus_iters_steps(tmp_path, monkeypatch, length):
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(SMALL + ["OUTPUT_DIR", str(tmp_path / "out")] + length)
    consumed = []

    class Counting(bench_tool._BenchmarkTrainer):
        def train(self):
            result = super().train()
            consumed.append(self.samples_consumed)
            return result

    monkeypatch.setattr(bench_tool, "_BenchmarkTrainer", Counting)
    result = bench_tool.benchmark_train(cfg, iters=2, warmup=1)
    assert consumed == [3 * 8]
    assert result["iterations"] == 2 and result["seconds"] > 0


def test_bad_iteration_count_is_a_user_error(tmp_path):
    with pytest.raises(bench_tool.ConfigError, match="--iters"):
        run(tmp_path, "--iters", "0")
