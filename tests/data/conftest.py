"""Fixtures shared by the data tests."""

import pytest

from engine_lib.data import DatasetCatalog, MetadataCatalog


@pytest.fixture
def names():
    """A list to append registered data set names to; they are unregistered afterwards."""
    registered = []
    yield registered
    for name in registered:
        if name in DatasetCatalog:
            DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
