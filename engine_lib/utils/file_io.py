"""The project's iopath ``PathManager``: every path a user gives (config, weights, outputs) goes
through it.

A module-level instance of our own rather than iopath's global ``g_pathmgr``: a user or a project
can register handlers for a remote store (``PathManager.register_handler(S3PathHandler())``) and
every engine_lib module that opens a file picks it up, without touching the handlers other
libraries registered on the global one.
"""

import contextlib
import logging
import os
import uuid
from typing import IO, Iterator

from iopath.common.file_io import HTTPURLHandler
from iopath.common.file_io import PathManager as _IopathPathManager

__all__ = ["PathManager", "atomic_write"]

logger = logging.getLogger(__name__)

PathManager = _IopathPathManager()
# http(s):// paths (e.g. MODEL.WEIGHTS pointing at published weights) are downloaded once to
# iopath's cache directory and then read as local files.
PathManager.register_handler(HTTPURLHandler())


# Checkpoints, metrics.json, config.yaml and evaluation outputs are all written through
# atomic_write, so a crash at any instant leaves the previous version readable.
@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` when the ``with`` block succeeds.

    If the block raises, the temporary file is removed and ``path`` is left as it was.
    A process killed mid-write leaves at most a hidden ``.<name>.<pid>.<token>.tmp`` file,
    which nothing reads.

    Args:
        path (str): the local file to write.
        mode (str): ``"wb"`` for bytes or ``"w"`` for text. Default: ``"wb"``.

    Yields:
        IO: the open temporary file.

    Example:
        >>> with atomic_write("out/model.pth") as f:
        ...     torch.save(state, f)
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w'; got {mode!r}.")
    directory, name = os.path.split(os.path.abspath(path))
    tmp_path = os.path.join(directory, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    # os.open with 0o666 (rather than tempfile.mkstemp's 0o600) lets the umask decide the
    # final file's permissions, as for any other file the user writes.
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_path)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Persist the rename itself, so a power loss cannot bring the old entry back."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows, where directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError as e:
        logger.debug("fsync of directory %s failed: %s", directory, e)
    finally:
        os.close(fd)
