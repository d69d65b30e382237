import os

import pytest
from iopath.common.file_io import HTTPURLHandler, g_pathmgr
from iopath.common.file_io import PathManager as IopathPathManager

from engine_lib.utils.file_io import PathManager


def test_is_a_project_owned_iopath_manager():
    assert isinstance(PathManager, IopathPathManager)
    assert PathManager is not g_pathmgr


def test_local_file_round_trip(tmp_path):
    directory = os.path.join(tmp_path, "a", "b")
    PathManager.mkdirs(directory)
    path = os.path.join(directory, "x.txt")
    with PathManager.open(path, "w") as f:
        f.write("hello")
    assert PathManager.exists(path) and PathManager.isfile(path)
    assert PathManager.ls(directory) == ["x.txt"]
    with PathManager.open(path) as f:
        assert f.read() == "hello"
    assert PathManager.get_local_path(path) == path


def test_http_handler_is_registered():
    # Registering the same prefixes twice is refused, which proves they are taken.
    with pytest.raises(KeyError, match="already registered by .*RemoteWeightsHandler"):
        PathManager.register_handler(HTTPURLHandler(), allow_override=False)
