"""A table of the software and hardware a job runs on, logged at start-up and asked for in bug
reports (``python -m engine_lib.utils.collect_env``).

Every probe is guarded: a missing or broken package shows as such in the table, it never stops
the job.
"""

import functools
import importlib.metadata
import importlib.util
import logging
import os
import platform
import sys
from collections import defaultdict
from types import ModuleType
from typing import Callable, List, Optional, Tuple

from tabulate import tabulate

import engine_lib

__all__ = ["collect_env_info"]

logger = logging.getLogger(__name__)

# (row label, distribution name for its version, module name for its location or None)
_PACKAGES = [
    ("torchvision", "torchvision", "torchvision"),
    ("fvcore", "fvcore", None),
    ("iopath", "iopath", None),
    ("yacs", "yacs", None),
    ("numpy", "numpy", None),
    ("PIL", "Pillow", None),
    ("tensorboard", "tensorboard", None),
    ("scikit-learn", "scikit-learn", None),
    ("tabulate", "tabulate", None),
    ("termcolor", "termcolor", None),
]


def _probe(rows: List[Tuple[str, str]], label: str, fn: Callable[[], object]) -> None:
    try:
        rows.append((label, str(fn())))
    except Exception as e:  # an environment report must never fail the job it describes
        rows.append((label, f"unknown ({type(e).__name__}: {e})"))


def _module_dir(module: str) -> str:
    spec = importlib.util.find_spec(module)  # locates without importing
    if spec is None or spec.origin is None:
        return "?"
    return os.path.dirname(spec.origin)


def _package(dist_name: str, module: Optional[str] = None) -> str:
    try:
        version = importlib.metadata.version(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return "not found"
    return f"{version} @{_module_dir(module)}" if module else version


def _gpu_rows(torch_module: ModuleType) -> List[Tuple[str, str]]:
    # One row per GPU model, listing the indices that have it.
    devices = defaultdict(list)
    for i in range(torch_module.cuda.device_count()):
        props = torch_module.cuda.get_device_properties(i)
        name = f"{torch_module.cuda.get_device_name(i)} (arch={props.major}.{props.minor})"
        devices[name].append(str(i))
    return [("GPU " + ",".join(ids), name) for name, ids in devices.items()]


def _torch_rows() -> List[Tuple[str, str]]:
    import torch  # here, so that a broken torch install still gets the rest of the report

    rows: List[Tuple[str, str]] = []
    _probe(rows, "PyTorch", lambda: f"{torch.__version__} @{os.path.dirname(torch.__file__)}")
    _probe(rows, "PyTorch debug build", lambda: torch.version.debug)
    _probe(rows, "PyTorch built with CUDA", lambda: torch.version.cuda or "no")
    _probe(rows, "CUDA available", torch.cuda.is_available)
    if not torch.cuda.is_available():
        return rows
    try:
        rows.extend(_gpu_rows(torch))
    except Exception as e:
        rows.append(("GPUs", f"unknown ({type(e).__name__}: {e})"))
    _probe(rows, "CUDA_VISIBLE_DEVICES", lambda: os.environ.get("CUDA_VISIBLE_DEVICES", "not set"))
    _probe(rows, "cuDNN", torch.backends.cudnn.version)
    _probe(rows, "NCCL", lambda: ".".join(map(str, torch.cuda.nccl.version())))
    return rows


def collect_env_info() -> str:
    """Describe the environment as a two-column table.

    Returns:
        str: Python, platform, engine_lib, torch (version, location, debug/CUDA build), CUDA
        availability, GPU models, cuDNN and NCCL versions, and the versions of the key packages.
    """
    rows: List[Tuple[str, str]] = []
    _probe(rows, "sys.platform", lambda: sys.platform)
    _probe(rows, "Platform", platform.platform)
    _probe(rows, "Python", lambda: sys.version.replace("\n", " "))
    # From the imported package rather than the installed metadata: a PYTHONPATH checkout has none.
    _probe(
        rows,
        "engine_lib",
        lambda: f"{engine_lib.__version__} @{os.path.dirname(engine_lib.__file__)}",
    )
    try:
        rows.extend(_torch_rows())
    except Exception as e:
        rows.append(("PyTorch", f"unknown ({type(e).__name__}: {e})"))
    for label, dist_name, module in _PACKAGES:
        _probe(rows, label, functools.partial(_package, dist_name, module))
    return tabulate(rows)


if __name__ == "__main__":
    print(collect_env_info())
