import logging
import os

import pytest

from engine_lib.utils.logger import (
    create_small_table,
    log_every_n,
    log_every_n_seconds,
    log_first_n,
    setup_logger,
)
from tests.helpers import ListHandler


@pytest.fixture
def logger_name(request):
    """A fresh logger name per test, with its handlers removed afterwards."""
    name = f"el_test.{request.node.name}"
    yield name
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.flush()


@pytest.fixture
def recorded(logger_name):
    logger = logging.getLogger(logger_name)
    handler = ListHandler()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return handler.messages


def _read(path):
    with open(path) as f:
        return f.read()


def test_rank0_logs_to_console_and_log_txt_once_when_set_up_twice(tmp_path, capsys, logger_name):
    setup_logger(str(tmp_path), 0, name=logger_name)
    logger = setup_logger(str(tmp_path), 0, name=logger_name)
    logger.info("hello once")
    out = capsys.readouterr().out
    assert out.count("hello once") == 1
    text = _read(tmp_path / "log.txt")
    assert text.count("hello once") == 1
    assert f"{logger_name} INFO: hello once" in text
    assert "\x1b[" not in text


def test_other_ranks_write_their_own_file_and_no_console(tmp_path, capsys, logger_name):
    logger = setup_logger(str(tmp_path), 1, name=logger_name)
    logger.warning("from rank one")
    assert "from rank one" not in capsys.readouterr().out
    assert "from rank one" in _read(tmp_path / "log.txt.rank1")
    assert not os.path.exists(tmp_path / "log.txt")


def test_output_may_name_the_file(tmp_path, logger_name):
    logger = setup_logger(str(tmp_path / "sub" / "train.log"), 0, name=logger_name, color=False)
    logger.info("into a named file")
    assert "into a named file" in _read(tmp_path / "sub" / "train.log")


def test_children_log_through_the_configured_logger(tmp_path, logger_name):
    setup_logger(str(tmp_path), 0, name=logger_name)
    logging.getLogger(logger_name + ".child").debug("child message")
    assert "child message" in _read(tmp_path / "log.txt")


def test_warnings_are_highlighted_on_a_colour_console(capsys, monkeypatch, logger_name):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    logger = setup_logger(name=logger_name, abbrev_name="t")
    logger.info("plain info")
    logger.warning("watch out")
    logger.error("broke")
    lines = capsys.readouterr().out.splitlines()
    info, warning, error = lines[-3:]
    assert "WARNING" not in info and "plain info" in info
    assert warning.startswith("\x1b[") and "WARNING" in warning and "watch out" in warning
    assert "ERROR" in error and "broke" in error
    # The console shows the abbreviated name of child loggers.
    logging.getLogger(logger_name + ".child").info("short name")
    assert "t.child" in capsys.readouterr().out


def test_color_false_gives_plain_console(capsys, monkeypatch, logger_name):
    monkeypatch.setenv("FORCE_COLOR", "1")
    logger = setup_logger(name=logger_name, color=False)
    logger.warning("no colour")
    out = capsys.readouterr().out
    assert "no colour" in out and "\x1b[" not in out


def test_log_first_n_by_caller_and_by_message(logger_name, recorded):
    for i in range(5):
        log_first_n(logging.INFO, f"first {i}", n=2, name=logger_name)
    assert recorded == ["first 0", "first 1"]
    recorded.clear()
    log_first_n(logging.INFO, "same", name=logger_name, key="message")
    log_first_n(logging.INFO, "same", name=logger_name, key="message")
    log_first_n(logging.INFO, "other", name=logger_name, key="message")
    assert recorded == ["same", "other"]


def test_log_first_n_rejects_unknown_key(logger_name):
    with pytest.raises(ValueError, match="'caller', 'message'"):
        log_first_n(logging.INFO, "x", name=logger_name, key="line")


def test_log_every_n(logger_name, recorded):
    for i in range(7):
        log_every_n(logging.INFO, f"every {i}", n=3, name=logger_name)
    assert recorded == ["every 0", "every 3", "every 6"]


def test_log_every_n_seconds(logger_name, recorded):
    for i in range(3):
        log_every_n_seconds(logging.INFO, f"slow {i}", n=3600, name=logger_name)
    for i in range(3):
        log_every_n_seconds(logging.INFO, f"fast {i}", n=0, name=logger_name)
    assert recorded == ["slow 0", "fast 0", "fast 1", "fast 2"]


def test_log_helpers_default_to_the_callers_module():
    handler = ListHandler()
    logger = logging.getLogger(__name__)
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        log_first_n(logging.INFO, "from this module")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert handler.messages == ["from this module"]


def test_create_small_table():
    table = create_small_table({"AP": 41.23456, "AP50": 60.0, "name": "val"})
    header, rule, row = table.splitlines()
    assert "AP" in header and "AP50" in header and "name" in header
    assert "41.235" in row and "60.000" in row and "val" in row
    assert set(rule) <= {"|", "-", ":"}
