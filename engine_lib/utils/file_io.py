"""The project's iopath ``PathManager``: every path a user gives (config, weights, outputs) goes
through it.

A module-level instance of our own rather than iopath's global ``g_pathmgr``: a user or a project
can register handlers for a remote store (``PathManager.register_handler(S3PathHandler())``) and
every engine_lib module that opens a file picks it up, without touching the handlers other
libraries registered on the global one.
"""

import logging

from iopath.common.file_io import HTTPURLHandler
from iopath.common.file_io import PathManager as _IopathPathManager

__all__ = ["PathManager"]

logger = logging.getLogger(__name__)

PathManager = _IopathPathManager()
# http(s):// paths (e.g. MODEL.WEIGHTS pointing at published weights) are downloaded once to
# iopath's cache directory and then read as local files.
PathManager.register_handler(HTTPURLHandler())
