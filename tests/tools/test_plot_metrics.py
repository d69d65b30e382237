"""tools/plot_metrics.py on small, real metrics.json files."""

import json
import os
import sys

import pytest

from tests.tools._load import load_tool

pytest.importorskip("matplotlib")
plot_tool = load_tool("plot_metrics")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_run(directory, scale, truncate_last=False):
    """A metrics.json as the trainer writes it: periodic losses/lr, then evaluation."""
    os.makedirs(directory, exist_ok=True)
    lines = []
    for it in range(9, 100, 10):
        record = {
            "iteration": it,
            "loss_cls": scale * 2.3 / (1 + it / 10),
            "loss_reg": scale * 0.5 / (1 + it / 20),
            "lr": 0.1 * min(1.0, (it + 1) / 30),
            "time": 0.05,
            "data_time": 0.01,
            "eta_seconds": (99 - it) * 0.05,
        }
        lines.append(json.dumps(record))
        if it in (49, 99):
            lines.append(json.dumps({"iteration": it + 1, "classification/top1": 50 + it / scale}))
    text = "\n".join(lines) + "\n"
    if truncate_last:
        text += '{"iteration": 109, "loss_cls": 0.1'  # a run killed mid-write
    path = os.path.join(directory, "metrics.json")
    with open(path, "w") as f:
        f.write(text)
    return path


def test_load_metrics_skips_truncated_last_line_and_ignored_keys(tmp_path):
    path = write_run(tmp_path / "a", 1.0, truncate_last=True)
    curves = plot_tool.load_metrics(path)
    assert set(curves) == {"loss_cls", "loss_reg", "lr", "time", "data_time", "classification/top1"}
    assert [it for it, _ in curves["loss_cls"]] == list(range(9, 100, 10))
    assert curves["classification/top1"] == [(50, 99.0), (100, 149.0)]
    # A directory stands for its metrics.json.
    assert plot_tool.load_metrics(str(tmp_path / "a")) == curves


def test_load_metrics_rejects_corrupt_middle_line(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"iteration": 1, "lr": 0.1}\nnot json\n{"iteration": 2, "lr": 0.1}\n')
    with pytest.raises(plot_tool.ConfigError, match="line 2"):
        plot_tool.load_metrics(str(path))


def test_groups():
    assert plot_tool.group_of("loss_cls") == "losses"
    assert plot_tool.group_of("lr") == "learning rate"
    assert plot_tool.group_of("data_time") == "time (s)"
    assert plot_tool.group_of("classification/top1") == "classification"


def test_two_runs_make_a_png(tmp_path):
    a = write_run(tmp_path / "run_a", 1.0, truncate_last=True)
    b = write_run(tmp_path / "run_b", 2.0)
    out = tmp_path / "plots" / "curves.png"
    groups = plot_tool.plot_metrics([a, b], str(out))
    assert groups == ["losses", "learning rate", "classification", "time (s)"]
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    # --metrics chooses the subplots.
    out2 = tmp_path / "loss_only.png"
    assert plot_tool.plot_metrics([a], str(out2), metrics=["loss*"]) == ["losses"]
    assert out2.read_bytes().startswith(PNG_SIGNATURE)
    with pytest.raises(plot_tool.ConfigError, match="matches none"):
        plot_tool.plot_metrics([a], str(out2), metrics=["accuracy"])


def test_missing_matplotlib_names_the_install_command(tmp_path, monkeypatch):
    path = write_run(tmp_path / "a", 1.0)
    # None in sys.modules makes `import matplotlib` raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(plot_tool.MissingDependencyError, match=r'pip install -e "\.\[plot\]"'):
        plot_tool.plot_metrics([path], str(tmp_path / "x.png"))


def test_command_line(tmp_path, capsys):
    a = write_run(tmp_path / "run_a", 1.0)
    out = tmp_path / "cli.png"
    parser = plot_tool.get_parser()
    with pytest.raises(SystemExit) as exit_info:
        plot_tool.run_cli(plot_tool.main, parser.parse_args([a, "--output", str(out)]))
    assert exit_info.value.code == 0
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    assert f"Wrote {out}" in capsys.readouterr().out
    # A user mistake ends in one line on stderr and exit code 2, not a traceback.
    with pytest.raises(SystemExit) as exit_info:
        plot_tool.run_cli(plot_tool.main, parser.parse_args([str(tmp_path / "nope.json")]))
    assert exit_info.value.code == 2
    assert "error: metrics file" in capsys.readouterr().err
