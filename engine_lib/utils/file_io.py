"""The project's iopath ``PathManager``: the weights paths a user gives (``MODEL.WEIGHTS``,
``MODEL.BACKBONE.PRETRAIN_PATH``, ``KD.*``) go through it; config files, ``OUTPUT_DIR`` and data
sets are local paths (docs/remote_paths.md).

A module-level instance of our own rather than iopath's global ``g_pathmgr``: a user or a project
can register handlers for a remote store (``PathManager.register_handler(S3PathHandler())``) and
every engine_lib module that opens weights picks it up, without touching the handlers other
libraries registered on the global one.
"""

import contextlib
import errno
import logging
import os
import re
import stat
import uuid
from typing import IO, Iterator, List, Optional

from iopath.common.file_io import PathManager as _IopathPathManager

from engine_lib.utils.errors import UserError
from engine_lib.utils.remote_weights import RemoteWeightsHandler

__all__ = ["PathManager", "atomic_write", "remove_stale_temp_files", "NoSpaceLeftError"]

logger = logging.getLogger(__name__)

PathManager = _IopathPathManager()
# http(s):// paths (e.g. MODEL.WEIGHTS pointing at published weights) are refused unless
# MODEL.ALLOW_REMOTE_WEIGHTS is set; then they are downloaded once, safely, to iopath's cache
# directory and read as local files (see remote_weights.py).
PathManager.register_handler(RemoteWeightsHandler())


# The name atomic_write gives its temporary files: ".<name>.<pid>.<8 hex digits>.tmp".
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")


class NoSpaceLeftError(UserError, OSError):
    """A file could not be written because its file system is full (or over quota).

    An ``OSError`` with ``errno.ENOSPC``, so code that handles ``OSError`` still does; the
    message names the file. The previous version of the file, if any, is left as it was.
    """

    def __str__(self) -> str:
        return f"No space left on device while writing {self.filename}; {self.strerror}"


# What NoSpaceLeftError says after the file name, unless the writer knows more.
_KEPT = (
    "the previous version of that file (if any) is unchanged. Free some space (or choose "
    "another OUTPUT_DIR) and run again."
)


# Checkpoints, metrics.json, config.yaml and evaluation outputs are all written through
# atomic_write, so a crash at any instant leaves the previous version readable.
@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` when the ``with`` block succeeds.

    If the block raises, the temporary file is removed and ``path`` is left as it was.
    A process killed mid-write leaves at most a hidden ``.<name>.<pid>.<token>.tmp`` file,
    which nothing reads and :func:`remove_stale_temp_files` removes at the next start. A
    rewritten file keeps the permission bits of the file it replaces.

    Args:
        path (str): the local file to write.
        mode (str): ``"wb"`` for bytes or ``"w"`` for text. Default: ``"wb"``.

    Yields:
        IO: the open temporary file.

    Raises:
        NoSpaceLeftError: the file system is full; ``path`` is left as it was.

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
        _copy_mode(path, fd)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_path)
        if _is_disk_full(e):
            raise NoSpaceLeftError(errno.ENOSPC, _KEPT, path) from e
        raise
    _fsync_directory(directory)


def _copy_mode(path: str, fd: int) -> None:
    """Give the temporary file the permission bits of the file it will replace, if any."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    os.fchmod(fd, mode)


def _is_disk_full(error: Optional[BaseException]) -> bool:
    """Whether ``error`` (or an error it was raised from) is ENOSPC / EDQUOT."""
    full = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in full:
            return True
        # torch.save reports a full disk as a RuntimeError from its C++ zip writer.
        if isinstance(error, RuntimeError) and "No space left on device" in str(error):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


def remove_stale_temp_files(directory: str) -> List[str]:
    """Remove the temporary files :func:`atomic_write` left in ``directory`` when killed.

    Only hidden files named as ``atomic_write`` names them (``.<name>.<pid>.<8 hex>.tmp``)
    and written by a process that no longer runs are removed; each removal is logged. Call it
    on one process (rank 0) at the start of a job, before anything is written.

    Args:
        directory (str): a local directory (nothing happens if it does not exist).

    Returns:
        list[str]: the paths removed.
    """
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for name in sorted(names):
        match = _TEMP_NAME.fullmatch(name)
        path = os.path.join(directory, name)
        if match is None or not os.path.isfile(path) or _pid_alive(int(match["pid"])):
            continue
        try:
            os.remove(path)
        except OSError as e:
            logger.warning("Could not remove the stale temporary file %s: %s", path, e)
            continue
        logger.info("Removed %s, left by a process that was killed while writing it.", path)
        removed.append(path)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


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
