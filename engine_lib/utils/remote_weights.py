"""Weights given as ``http(s)://`` URLs: refused unless allowed, cached safely, hash-checked.

iopath's ``HTTPURLHandler`` caches a URL under ``<cache>/<the URL's path>``: a path with
``..`` writes outside the cache, and two hosts serving the same path share one cache entry.
:class:`RemoteWeightsHandler` replaces it in the project's ``PathManager``:

* downloads are off until :func:`allow_remote_weights` turns them on (the trainer does so
  from ``MODEL.ALLOW_REMOTE_WEIGHTS``); until then a URL raises a one-line
  :class:`RemoteWeightsError` naming the key;
* the cache entry of a URL is ``<cache>/remote_weights/<sha256 of the whole URL>/<name>``,
  where ``<name>`` is the last path segment with anything but ``[A-Za-z0-9._-]`` replaced:
  host, port, path and query all select the entry, and nothing can leave the cache;
* a URL that carries a hash is checked after the download: a ``#sha256=<64 hex>`` fragment,
  or torch.hub's file-name form ``<name>-<at least 8 hex digits>.<ext>`` (a prefix of the
  file's sha256). A mismatch removes the download and raises.
"""

import contextlib
import hashlib
import logging
import os
import re
import urllib.request
from typing import Any, Optional
from urllib.parse import urldefrag, urlparse

from iopath.common.file_io import HTTPURLHandler, file_lock, get_cache_dir

from engine_lib.utils.errors import UserError

__all__ = [
    "RemoteWeightsError",
    "RemoteWeightsHandler",
    "allow_remote_weights",
    "cache_path",
    "expected_sha256",
]

logger = logging.getLogger(__name__)

#: The config key that turns downloads on.
ALLOW_KEY = "MODEL.ALLOW_REMOTE_WEIGHTS"
_ALLOWED = {"value": False}
_FRAGMENT = re.compile(r"sha256=([0-9a-fA-F]{64})")
_HUB_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class RemoteWeightsError(UserError):
    """A URL given as weights was refused: downloads are off, or its hash does not match."""


def allow_remote_weights(allowed: bool) -> None:
    """Turn downloads of ``http(s)://`` weights on or off for this process.

    Args:
        allowed (bool): the value of ``MODEL.ALLOW_REMOTE_WEIGHTS``.
    """
    _ALLOWED["value"] = bool(allowed)


def expected_sha256(url: str) -> Optional[str]:
    """The sha256 (or a prefix of it) a URL carries, lower case, or None.

    Args:
        url (str): ``...#sha256=<64 hex>`` or a torch.hub name ``.../name-<hex>.pth``.

    Returns:
        str | None: the hex digest or prefix to match.
    """
    base, fragment = urldefrag(url)
    match = _FRAGMENT.fullmatch(fragment)
    if match:
        return match.group(1).lower()
    match = _HUB_NAME.search(urlparse(base).path)
    return match.group(1) if match else None


def cache_path(url: str, cache_dir: Optional[str] = None) -> str:
    """Where ``url`` is cached: a directory per whole URL, a sanitized file name inside it."""
    base = urldefrag(url)[0]
    key = hashlib.sha256(base.encode("utf-8")).hexdigest()[:32]
    name = _UNSAFE.sub("_", urlparse(base).path.rsplit("/", 1)[-1])[-100:].lstrip(".")
    root = os.path.join(get_cache_dir(cache_dir), "remote_weights")
    path = os.path.join(root, key, name or "download")
    # Defence in depth: the name has no separator and no leading dot, so this always holds.
    assert os.path.commonpath([root, os.path.abspath(path)]) == os.path.abspath(root)
    return path


class RemoteWeightsHandler(HTTPURLHandler):
    """iopath's HTTP handler, off by default, with a safe cache path and a hash check."""

    def _get_supported_prefixes(self) -> list:
        return ["http://", "https://"]

    def _isfile(self, path: str, **kwargs: Any) -> bool:
        # Whether the server has the file is known only by fetching it; answering True lets
        # the loader go on to open the URL, where a refusal or a download error names it.
        return True

    def _get_local_path(
        self, path: str, force: bool = False, cache_dir: Optional[str] = None, **kwargs: Any
    ) -> str:
        self._check_kwargs(kwargs)
        if not _ALLOWED["value"]:
            raise RemoteWeightsError(
                f"Weights at the URL {path} are not downloaded: remote weights are off by "
                f"default. Download the file yourself and give its local path, or set "
                f"{ALLOW_KEY} True to fetch MODEL.WEIGHTS / KD.MODEL_WEIGHTS / "
                "MODEL.BACKBONE.PRETRAIN_PATH URLs (see docs/security.md)."
            )
        cached = cache_path(path, cache_dir)
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        with file_lock(cached):
            if force or not os.path.isfile(cached):
                logger.info("Downloading %s to %s", path, cached)
                _download(urldefrag(path)[0], cached)
                _check_hash(path, cached)
        return cached


def _download(url: str, target: str) -> None:
    partial = f"{target}.{os.getpid()}.part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as f:
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                f.write(chunk)
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)


def _check_hash(url: str, path: str) -> None:
    expected = expected_sha256(url)
    if expected is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    actual = digest.hexdigest()
    if not actual.startswith(expected):
        os.remove(path)
        raise RemoteWeightsError(
            f"The file downloaded from {url} has sha256 {actual}, but the URL expects "
            f"{expected}; the download was removed."
        )
