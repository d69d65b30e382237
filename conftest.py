"""Suite-wide fixtures for tests/ and projects/."""

import logging
from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def _restore_engine_lib_logger() -> Iterator[None]:
    """Give every test the ``engine_lib`` logger as it found it.

    ``DefaultTrainer`` calls ``setup_logger()``, which adds handlers to the ``engine_lib`` logger
    and turns off its propagation; without this, every later test that reads records through
    ``caplog`` (which listens on the root logger) would see nothing, depending on test order.
    """
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
