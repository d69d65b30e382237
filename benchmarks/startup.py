"""Time the start-up of the engine: its import, the tools' ``--help``, the first iteration.

Every figure is the median of a few fresh processes (``--repeats``), next to the same for
``python -c "import torch"``, the floor that any PyTorch program pays:

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
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List

__all__ = ["main"]

logger = logging.getLogger(__name__)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_IMPORT_ENGINE = (
    "import time, torch; t = time.perf_counter(); import engine_lib.engine; "
    "print(time.perf_counter() - t)"
)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _process_seconds(argv: List[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=REPO, env=_env(), check=True, capture_output=True)
    return time.perf_counter() - start


def _median(values: List[float]) -> str:
    return f"{statistics.median(values):.3f} s (min {min(values):.3f})"


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
    torch_s = [
        _process_seconds([sys.executable, "-c", "import torch"]) for _ in range(args.repeats)
    ]
    print(f"python -c 'import torch': {_median(torch_s)}")
    engine_s = []
    for _ in range(args.repeats):
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT_ENGINE], env=_env(), check=True, capture_output=True
        )
        engine_s.append(float(out.stdout.decode().strip().splitlines()[-1]))
    print(f"import engine_lib.engine after import torch: +{_median(engine_s)} (target ~0.3 s)")
    base = statistics.median(torch_s)
    for tool in sorted(glob.glob(os.path.join(REPO, "tools", "*.py"))):
        name = os.path.relpath(tool, REPO)
        times = [_process_seconds([sys.executable, name, "--help"]) for _ in range(args.repeats)]
        print(f"{name} --help: {_median(times)}, +{statistics.median(times) - base:.3f} s")
    if not args.skip_train:
        with tempfile.TemporaryDirectory() as root:
            runs = [
                _first_iteration_seconds(os.path.join(root, str(i))) for i in range(args.repeats)
            ]
        print(f"digits config, process start to first iteration: {_median(runs)}")


if __name__ == "__main__":
    main()
