"""The traps a new user met following the README (issue 16, item 4), one test each; the
solver warnings are in tests/solver/test_solver_checks.py, --resume of a finished run in
tests/engine/test_early_stop.py."""

import os
import subprocess

from PIL import Image

from engine_lib.config import get_cfg
from engine_lib.engine import default_argument_parser, default_setup
from tests.tools._load import REPO, load_tool

predict = load_tool("predict")
CONFIG = os.path.join(REPO, "configs", "Digits", "cnn.yaml")


def test_predict_takes_trailing_overrides_and_opts():
    args = predict.parse_args(
        ["--config-file", CONFIG, "--input", "a.png", "b.png", "MODEL.WEIGHTS", "w.pth"]
    )
    assert args.input == ["a.png", "b.png"] and args.opts == ["MODEL.WEIGHTS", "w.pth"]
    args = predict.parse_args(
        ["--config-file", CONFIG, "--input", "a.png", "--opts", "MODEL.WEIGHTS", "w.pth"]
    )
    assert args.input == ["a.png"] and args.opts == ["MODEL.WEIGHTS", "w.pth"]
    args = predict.parse_args(
        ["--config-file", CONFIG, "--topk", "2", "--input", "a.png", "SEED", "3"]
    )
    assert args.input == ["a.png"] and args.opts == ["SEED", "3"] and args.topk == 2


def test_sample_digit_ships_with_the_configs():
    image = Image.open(os.path.join(REPO, "configs", "Digits", "sample_digit.png"))
    assert image.size == (8, 8) and image.mode == "RGB"


def test_runs_dir_is_ignored():
    proc = subprocess.run(
        ["git", "check-ignore", "-q", "runs/digits/log.txt"], cwd=REPO, capture_output=True
    )
    assert proc.returncode == 0, ".gitignore must list runs/ (--work-dir runs/...)"


def test_console_shows_a_summary_and_log_txt_everything(tmp_path, capsys):
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(["OUTPUT_DIR", str(tmp_path)])
    cfg.freeze()
    args = default_argument_parser().parse_args(["--config-file", CONFIG])
    default_setup(cfg, args)
    console = capsys.readouterr().out
    assert "Run: " in console and "log.txt has the environment and the full config" in console
    assert "Environment info" not in console and "Running with full config" not in console
    assert len(console.splitlines()) < 15
    log = (tmp_path / "log.txt").read_text()
    assert "Environment info" in log and "Running with full config" in log
    assert "Contents of config file" in log
