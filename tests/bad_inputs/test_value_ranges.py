"""Every value out of its key's range stops at merge time with one line naming key and value.

In-process (no tool run per value): ``build_config`` is what the entry points call first,
before anything is written; test_bad_inputs.py runs a few of these end to end.
"""

import os

import pytest

import engine_lib.engine  # noqa: F401  (registers the ranges of the solver and data keys)
from engine_lib.config import build_config
from engine_lib.utils.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "Digits", "cnn.yaml")

BAD = [
    ("TEST.IMS_PER_BATCH", "0", ">= 1"),
    ("SOLVER.CHECKPOINT_PERIOD", "0", ">= 1"),
    ("SOLVER.BASE_LR", "-0.1", ">= 0"),
    ("SOLVER.GRAD_ACCUM_STEPS", "0", ">= 1"),
    ("DATALOADER.NUM_WORKERS", "-1", ">= 0"),
    ("SOLVER.WEIGHT_DECAY", "-1", ">= 0"),
    ("TEST.EVAL_PERIOD", "-5", ">= 0"),
    ("SOLVER.MOMENTUM", "1.5", "<= 1"),
    ("SOLVER.GAMMA", "0.0", "> 0"),
    ("SOLVER.IMS_PER_BATCH", "0", ">= 1"),
    ("SOLVER.LOG_PERIOD", "0", ">= 1"),
    ("SOLVER.WARMUP_ITERS", "-1", ">= 0"),
    ("SOLVER.STEPS", "(100, -5)", ">= 0"),
    ("SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "0.0", "> 0"),
    ("INPUT.FLIP.PROB", "1.5", "<= 1"),
    ("DATALOADER.NUM_INSTANCE", "0", ">= 1"),
    ("DATASETS.TRAIN", "[['digits_train']]", "list of data set names"),
    ("DATASETS.TEST", "(1, 2)", "list of data set names"),
]


@pytest.mark.parametrize("key,value,expected", BAD, ids=[f"{k}={v}" for k, v, _ in BAD])
def test_out_of_range_value_is_one_line_naming_key_and_value(key, value, expected):
    with pytest.raises(ConfigError) as info:
        build_config(CONFIG, [key, value])
    message = str(info.value)
    assert "\n" not in message
    assert key in message and "command line" in message and expected in message, message


def test_nan_and_infinity_from_yaml_are_rejected(tmp_path):
    for literal in (".nan", ".inf"):
        path = tmp_path / "bad.yaml"
        path.write_text(f"_BASE_: {CONFIG}\nSOLVER:\n  BASE_LR: {literal}\n")
        with pytest.raises(ConfigError, match=r"SOLVER.BASE_LR.*bad.yaml.*>= 0"):
            build_config(str(path), [])


def test_values_in_range_and_epoch_periods_are_accepted(tmp_path):
    path = tmp_path / "ok.yaml"
    # An infinity norm is a valid gradient norm; periods in epochs are not numbers.
    path.write_text(f"_BASE_: {CONFIG}\nSOLVER:\n  CLIP_GRADIENTS:\n    NORM_TYPE: .inf\n")
    opts = ["SOLVER.BASE_LR", "0.5", "SOLVER.CHECKPOINT_PERIOD", "'2ep'", "TEST.EVAL_PERIOD", "0"]
    cfg = build_config(str(path), opts + ["DATALOADER.NUM_WORKERS", "2", "SOLVER.MAX_TO_KEEP", "0"])
    assert cfg.SOLVER.BASE_LR == 0.5 and cfg.SOLVER.CHECKPOINT_PERIOD == "2ep"
    assert cfg.SOLVER.CLIP_GRADIENTS.NORM_TYPE == float("inf")
