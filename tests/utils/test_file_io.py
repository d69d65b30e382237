import os

import pytest
from iopath.common.file_io import HTTPURLHandler, g_pathmgr
from iopath.common.file_io import PathManager as IopathPathManager

from engine_lib.utils.file_io import PathManager, atomic_write


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


def test_atomic_write_syncs_the_data_before_the_rename_and_the_directory_after(tmp_path):
    """A rename that reaches the disk before the data would leave an empty file after a crash."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        real_replace(src, dst)

    path = tmp_path / "out.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", fsync)
        patch.setattr(os, "replace", replace)
        with atomic_write(str(path), "w") as f:
            f.write("new")
    assert events == [("fsync", "file"), ("replace", "out.json"), ("fsync", "dir")]
    assert path.read_text() == "new"


def test_atomic_write_crash_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(str(path), "w") as f:
            f.write("half")
            f.flush()
            raise KeyboardInterrupt
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]
