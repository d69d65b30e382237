"""``print_csv_format``, ``flatten_results_dict`` and ``verify_results``."""

import logging

import pytest

from engine_lib.config import get_cfg
from engine_lib.evaluation import (
    ResultsVerificationError,
    check_results,
    flatten_results_dict,
    print_csv_format,
    verify_results,
)
from engine_lib.utils.errors import ConfigError, UserError

RESULTS = {"classification": {"top1": 97.5, "top5": 99.75}}


def _cfg(*expected):
    cfg = get_cfg()
    cfg.TEST.EXPECTED_RESULTS = [list(e) for e in expected]
    return cfg


def test_flatten_results_dict():
    nested = {"digits_test": RESULTS, "other": {"x": {"y": 1}}, "plain": 2}
    assert flatten_results_dict(nested) == {
        "digits_test/classification/top1": 97.5,
        "digits_test/classification/top5": 99.75,
        "other/x/y": 1,
        "plain": 2,
    }


def test_print_csv_format(caplog):
    with caplog.at_level(logging.INFO, logger="engine_lib.evaluation"):
        print_csv_format({**RESULTS, "speed": 3})
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "copypaste: Task: classification",
        "copypaste: top1,top5",
        "copypaste: 97.5000,99.7500",
        "copypaste: speed=3",
    ]


def test_verify_results_passes_within_tolerance(caplog):
    assert verify_results(_cfg(), RESULTS)
    cfg = _cfg(["classification", "top1", 97.0, 0.6], ["classification", "top5", 99.75, 0])
    with caplog.at_level(logging.INFO, logger="engine_lib.evaluation"):
        assert verify_results(cfg, RESULTS)
    assert "passed" in caplog.text
    nested = _cfg(["digits_test/classification", "top1", 97.5, 0.0])
    assert verify_results(nested, {"digits_test": RESULTS})


def test_verify_results_reports_each_failure(caplog):
    cfg = _cfg(
        ["classification", "top1", 99.0, 0.5],
        ["classification", "mean_class_acc", 90.0, 1.0],
        ["classification", "top5", 99.75, 0.1],
    )
    with caplog.at_level(logging.ERROR, logger="engine_lib.evaluation"):
        assert not verify_results(cfg, RESULTS)
    assert "classification/top1: got 97.5000, expected 99.0000" in caplog.text
    assert "classification/mean_class_acc: missing" in caplog.text
    assert "top5: got" not in caplog.text
    assert not verify_results(
        _cfg(["classification", "top1", 97.5, 1]), {"classification": {"top1": float("nan")}}
    )


def test_verify_results_rejects_malformed_entries():
    with pytest.raises(ConfigError, match="TEST.EXPECTED_RESULTS"):
        verify_results(_cfg(["classification", "top1", 97.5]), RESULTS)
    with pytest.raises(ConfigError, match="must be numbers"):
        verify_results(_cfg(["classification", "top1", "high", 1]), RESULTS)


def test_check_results_raises_on_a_miss_and_passes_otherwise():
    check_results(_cfg(["classification", "top1", 97.0, 0.6]), RESULTS)
    with pytest.raises(ResultsVerificationError, match=r"miss\(es\)\): classification/top1: got"):
        check_results(_cfg(["classification", "top1", 99.0, 0.5]), RESULTS)
    assert issubclass(ResultsVerificationError, UserError)  # one line and exit code 2
