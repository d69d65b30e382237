"""The safety rules of reading config files: no YAML aliases, symlink loops named.

:mod:`engine_lib.config.config` reads every config file (and ``_BASE_`` file) through these.
"""

import errno
import logging
import os
from typing import Any, Tuple

import yaml

from engine_lib.utils.errors import ConfigError

__all__ = ["NoAliasSafeLoader", "check_symlink_loop"]

logger = logging.getLogger(__name__)


def check_symlink_loop(path: str, chain: Tuple[str, ...]) -> None:
    """Name the links of a symlink loop, where ``open`` would say only "not found".

    Args:
        path (str): the config file about to be read.
        chain (tuple[str, ...]): the files that include it, outermost first.

    Raises:
        ConfigError: ``path`` is a symlink loop; the message lists its links.
    """
    try:
        os.stat(path)
    except OSError as e:
        if e.errno != errno.ELOOP:
            return
        links = [path]
        while os.path.islink(links[-1]) and len(links) < 10:
            target = os.readlink(links[-1])
            links.append(os.path.join(os.path.dirname(links[-1]), target))
            if os.path.abspath(links[-1]) in map(os.path.abspath, links[:-1]):
                break
        loop = " -> ".join(os.path.relpath(p) for p in links)
        where = f"; it is included from '{chain[-1]}'" if chain else ""
        raise ConfigError(f"Config file '{path}' is a symlink loop: {loop}{where}") from None


class NoAliasSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*name``).

    A config file of a few hundred bytes with nested aliases ("billion laughs") expands to
    gigabytes once it becomes a config tree; config files have no need of aliases, so the
    first one is refused, before any tree is built.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(
                problem=f"YAML alias *{event.anchor} is not allowed in config files (aliases "
                "can expand a small file into gigabytes); write the values out instead",
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)
