"""Time the start-up of the engine: its import, the tools' ``--help``, the first iteration.

Every figure is the median of a few fresh processes (``--repeats``), next to the same for
``python -c "import torch"``, the floor that any PyTorch program pays. The processes' CPU
seconds (user + system) are printed next to their wall-clock seconds: on a shared, loaded
machine the wall clock mostly measures the other processes, the CPU time much less so.

- ``import engine_lib.engine``: measured inside the process, after ``import torch`` (target:
  within ~0.3 s);
- ``tools/<name>.py --help``: the whole process, minus the ``import torch`` process (target:
  within ~0.3 s);
- the digits config (``configs/Digits/cnn.yaml``): the seconds from process start to the first
  training iteration, as ``tools/train_net.py`` logs them ("Start-up: ... s").

Usage::

    python benchmarks/startup.py
    python benchmarks/startup.py --repeats 7 --skip-train
"""

import argparse
import glob
import logging
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List, Tuple

__all__ = ["main"]

logger = logging.getLogger(__name__)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_IMPORT_ENGINE = (
    "import time, torch; t, c = time.perf_counter(), time.process_time(); "
    "import engine_lib.engine; print(time.perf_counter() - t, time.process_time() - c)"
)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_seconds(argv: List[str]) -> Tuple[float, float]:
    """The wall-clock and CPU seconds of one run of ``argv``."""
    cpu = _children_cpu_seconds()
    start = time.perf_counter()
    subprocess.run(argv, cwd=REPO, env=_env(), check=True, capture_output=True)
    return time.perf_counter() - start, _children_cpu_seconds() - cpu


def _median(values: List[float]) -> str:
    return f"{statistics.median(values):.3f} s (min {min(values):.3f})"


def _medians(runs: List[Tuple[float, float]]) -> Tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def _first_iteration_seconds(out_dir: str) -> float:
    argv = [sys.executable, "tools/train_net.py", "--config-file", "configs/Digits/cnn.yaml"]
    argv += ["SOLVER.MAX_ITER", "2", "TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", out_dir]
    result = subprocess.run(argv, cwd=REPO, env=_env(), capture_output=True, text=True)
    found = re.search(r"Start-up: ([0-9.]+) s", result.stdout + result.stderr)
    if found is None:
        raise RuntimeError(f"No start-up line in the log of {' '.join(argv)}:\n{result.stderr}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-train", action="store_true", help="no digits training run")
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} CPUs, load average {load}; medians of {args.repeats} processes")
    torch_runs = [
        _process_seconds([sys.executable, "-c", "import torch"]) for _ in range(args.repeats)
    ]
    base_wall, base_cpu = _medians(torch_runs)
    print(f"python -c 'import torch': {base_wall:.3f} s, CPU {base_cpu:.3f} s")
    engine_runs = []
    for _ in range(args.repeats):
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT_ENGINE], env=_env(), check=True, capture_output=True
        )
        wall, cpu = out.stdout.decode().strip().splitlines()[-1].split()
        engine_runs.append((float(wall), float(cpu)))
    wall, cpu = _medians(engine_runs)
    print(
        f"import engine_lib.engine after import torch: +{wall:.3f} s, CPU +{cpu:.3f} s "
        "(target ~0.3 s)"
    )
    for tool in sorted(glob.glob(os.path.join(REPO, "tools", "*.py"))):
        name = os.path.relpath(tool, REPO)
        wall, cpu = _medians(
            [_process_seconds([sys.executable, name, "--help"]) for _ in range(args.repeats)]
        )
        print(
            f"{name} --help: {wall:.3f} s, +{wall - base_wall:.3f} s; "
            f"CPU {cpu:.3f} s, +{cpu - base_cpu:.3f} s (target ~0.3 s)"
        )
    if not args.skip_train:
        with tempfile.TemporaryDirectory() as root:
            runs = [
                _first_iteration_seconds(os.path.join(root, str(i))) for i in range(args.repeats)
            ]
        print(f"digits config, process start to first iteration: {_median(runs)}")


if __name__ == "__main__":
    main()
