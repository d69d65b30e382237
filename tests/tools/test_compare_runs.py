"""tools/compare_runs.py on two crafted OUTPUT_DIRs (config.yaml + metrics.json)."""

import json

import pytest

from engine_lib.config import get_cfg
from engine_lib.utils.errors import UserError
from tests.tools._load import load_tool

compare_runs = load_tool("compare_runs")


def make_run(path, lr, top1, **extra):
    path.mkdir()
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", str(lr), "OUTPUT_DIR", str(path)])
    for key, value in extra.items():
        cfg.merge_from_list([key, str(value)])
    (path / "config.yaml").write_text(cfg.dump())
    lines = [
        {"iteration": 9, "total_loss": 1.5, "lr": lr, "time": 0.1},
        {"iteration": 19, "total_loss": 0.5, "lr": lr / 10, "time": 0.1},
        {"iteration": 20, "classification/top1": top1},
    ]
    (path / "metrics.json").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"it')
    return str(path)


def test_differing_keys_and_final_metrics_side_by_side(tmp_path):
    a = make_run(tmp_path / "a", 0.1, 91.5)
    b = make_run(tmp_path / "b", 0.05, 95.25, **{"MODEL.BACKBONE.NAME": "ResNet"})
    text = compare_runs.compare([a, b])
    config_part, metrics_part = text.split("Final metrics:")
    rows = {
        line.split("|")[1].strip(): line
        for line in config_part.splitlines()
        if "|" in line and not line.startswith("|:")
    }
    assert set(rows) == {"key", "SOLVER.BASE_LR", "MODEL.BACKBONE.NAME", "OUTPUT_DIR"}
    assert "0.1" in rows["SOLVER.BASE_LR"] and "0.05" in rows["SOLVER.BASE_LR"]
    assert "SmallCNN" in rows["MODEL.BACKBONE.NAME"] and "ResNet" in rows["MODEL.BACKBONE.NAME"]
    metric_rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:4]]
        for line in metrics_part.splitlines()
        if "|" in line
    }
    assert metric_rows["classification/top1"] == ["91.5", "95.25"]
    assert metric_rows["total_loss"] == ["0.5", "0.5"]
    assert metric_rows["iteration"] == ["20", "20"]
    assert "time" not in metric_rows
    only = compare_runs.compare([a, b], ["classification/*"])
    assert "total_loss" not in only and "classification/top1" in only


def test_command_line_and_bad_dir(tmp_path, capsys):
    a = make_run(tmp_path / "a", 0.1, 91.5)
    b = make_run(tmp_path / "b", 0.2, 92.0)
    compare_runs.main(compare_runs.get_parser().parse_args([a, b, "--metrics", "class*"]))
    out = capsys.readouterr().out
    assert "SOLVER.BASE_LR" in out and "classification/top1" in out and "total_loss" not in out
    with pytest.raises(UserError, match="no config.yaml nor metrics.json"):
        compare_runs.compare([a, str(tmp_path)])
