"""Suite-wide fixtures for tests/ and projects/."""

import contextlib
import logging
from typing import Iterator

import pytest


@contextlib.contextmanager
def _engine_lib_logger_restored() -> Iterator[None]:
    """Put the ``engine_lib`` logger back as it was: handlers, propagation and level."""
    log = logging.getLogger("engine_lib")
    handlers, propagate, level = list(log.handlers), log.propagate, log.level
    yield
    for handler in list(log.handlers):  # a copy: removing while iterating would skip some
        if handler not in handlers:
            log.removeHandler(handler)
    for handler in handlers:
        if handler not in log.handlers:
            log.addHandler(handler)
    log.propagate, log.level = propagate, level


@pytest.fixture(autouse=True)
def _restore_engine_lib_logger() -> Iterator[None]:
    """Give every test the ``engine_lib`` logger as it found it.

    ``DefaultTrainer`` calls ``setup_logger()``, which adds handlers to the ``engine_lib`` logger
    and turns off its propagation; without this, every later test that reads records through
    ``caplog`` (which listens on the root logger) would see nothing, depending on test order.
    """
    with _engine_lib_logger_restored():
        yield


@pytest.fixture(autouse=True, scope="module")
def _restore_engine_lib_logger_per_module() -> Iterator[None]:
    """The same for a module: a module-scoped fixture that builds a ``DefaultTrainer`` (e.g.
    ``stopped`` in tests/engine/test_early_stop.py) runs before the per-test fixture takes its
    snapshot, so only this one undoes it; without it, every ``caplog`` test after that module
    failed in a full run."""
    with _engine_lib_logger_restored():
        yield
