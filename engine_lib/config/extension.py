"""Project config extensions for the generic tools: ``DIR:module.function``.

A research project adds its own keys with an ``add_<project>_config(cfg)`` function (and
registers its models when its package is imported). The project-agnostic tools
(``tools/analyze_model.py``, ``tools/predict.py``, ``tools/benchmark.py``) take
``--extra-config projects/MetricLearning:metric_learning.add_metric_learning_config`` to read
such a project's config files.
"""

import argparse
import importlib
import os
import sys
from typing import Callable

from engine_lib.utils.errors import ConfigError

from .config import CfgNode

__all__ = ["add_extra_config_argument", "load_config_extension"]

_FORM = (
    "expected DIR:MODULE.FUNCTION, e.g. "
    "projects/MetricLearning:metric_learning.add_metric_learning_config (DIR may be empty)"
)


def load_config_extension(spec: str) -> Callable[[CfgNode], None]:
    """Import the function that adds a project's config keys.

    ``DIR`` (optional) is put first on ``sys.path``, so that ``MODULE`` is found in it;
    importing the module also runs the project's registrations (models, heads).

    Args:
        spec (str): ``"DIR:MODULE.FUNCTION"`` or ``"MODULE.FUNCTION"``.

    Returns:
        callable: the function; call it with a config before merging the project's files.

    Raises:
        ConfigError: a malformed ``spec``, a missing directory, a module that cannot be
            imported, or a module without that function (naming the ``add_*`` it has).
    """
    directory, _, target = spec.rpartition(":")
    module_name, _, function_name = target.rpartition(".")
    if not module_name or not function_name:
        raise ConfigError(f"--extra-config {spec!r}: {_FORM}")
    if directory:
        if not os.path.isdir(directory):
            raise ConfigError(f"--extra-config {spec!r}: directory {directory!r} does not exist")
        path = os.path.abspath(directory)
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"--extra-config {spec!r}: cannot import {module_name!r}: {e}") from e
    function = getattr(module, function_name, None)
    if not callable(function):
        offered = sorted(n for n in dir(module) if n.startswith("add_") and n.endswith("_config"))
        hint = f"; it has {', '.join(offered)}" if offered else ""
        raise ConfigError(
            f"--extra-config {spec!r}: module {module_name!r} has no function "
            f"{function_name!r}{hint}"
        )
    return function


def add_extra_config_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--extra-config DIR:MODULE.FUNCTION`` (repeatable) to a tool's parser.

    The tool then builds its config with
    ``build_config(..., [load_config_extension(s) for s in args.extra_config])``.
    """
    parser.add_argument(
        "--extra-config",
        action="append",
        default=[],
        metavar="DIR:MODULE.FUNCTION",
        help="a project's function adding its config keys (and registering its models), e.g. "
        "projects/MetricLearning:metric_learning.add_metric_learning_config; repeatable",
    )
