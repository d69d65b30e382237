#!/usr/bin/env python
"""Compare runs: the config keys that differ and the final metrics, side by side.

For each ``OUTPUT_DIR`` given, reads ``config.yaml`` (the resolved config of the run) and
``metrics.json``; prints one table of the config keys whose values are not the same in every
run, and one of the last value of every metric (evaluation results, losses, LR), the way a
tracker's UI compares runs.

Examples:
    python tools/compare_runs.py output/digits_cnn output/digits_resnet18
    python tools/compare_runs.py runs/* --metrics "classification/*" total_loss
"""

import argparse
import fnmatch
import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml
from tabulate import tabulate

from engine_lib.engine import run_cli
from engine_lib.engine.writers import flatten_config
from engine_lib.utils.errors import UserError

__all__ = ["compare", "final_metrics", "get_parser", "load_run", "main"]

logger = logging.getLogger("engine_lib.tools.compare_runs")

# Timings are not results; "iteration" gets its own row.
_SKIPPED = ("time", "data_time", "last_time", "last_data_time", "eta_seconds")


def final_metrics(path: str) -> Dict[str, float]:
    """The last value of every metric in a ``metrics.json`` and the last iteration.

    Args:
        path (str): the ``metrics.json`` file.

    Returns:
        dict: ``{name: last value}``, with ``"iteration"`` the last iteration written.
    """
    last: Dict[str, float] = {}
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a crash
                continue
            if isinstance(record, dict):
                last.update({k: v for k, v in record.items() if k not in _SKIPPED})
    return last


def load_run(output_dir: str) -> Tuple[Dict[str, Any], Dict[str, float]]:
    """Read a run's flattened ``config.yaml`` and its final metrics.

    Raises:
        UserError: the directory has neither file.
    """
    config_path = os.path.join(output_dir, "config.yaml")
    metrics_path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(config_path) and not os.path.isfile(metrics_path):
        raise UserError(
            f"{output_dir!r} is not a run's OUTPUT_DIR: it has no config.yaml nor metrics.json"
        )
    config: Dict[str, Any] = {}
    if os.path.isfile(config_path):
        with open(config_path) as f:
            config = flatten_config(yaml.safe_load(f) or {})
    metrics = final_metrics(metrics_path) if os.path.isfile(metrics_path) else {}
    return config, metrics


def _short_names(dirs: Sequence[str]) -> List[str]:
    paths = [os.path.normpath(d) for d in dirs]
    common = os.path.commonpath(paths) if len(paths) > 1 else os.path.dirname(paths[0])
    return [os.path.relpath(p, common) if common else p for p in paths]


def compare(dirs: Sequence[str], metrics: Optional[Sequence[str]] = None) -> str:
    """The two tables of :func:`main`, as text.

    Args:
        dirs (list[str]): the runs' ``OUTPUT_DIR``s.
        metrics (list[str], optional): glob patterns of the metrics to show (default: all).
    """
    runs = [load_run(d) for d in dirs]
    names = _short_names(dirs)
    keys = sorted({k for config, _ in runs for k in config})
    differ = [
        [k] + [_cell(config.get(k, "-")) for config, _ in runs]
        for k in keys
        if len({repr(config.get(k, "-")) for config, _ in runs}) > 1
    ]
    metric_keys = sorted({k for _, m in runs for k in m if k != "iteration"})
    if metrics:
        metric_keys = [k for k in metric_keys if any(fnmatch.fnmatch(k, p) for p in metrics)]
    rows = [["iteration"] + [_number(m.get("iteration", "-")) for _, m in runs]]
    rows += [[k] + [_number(m.get(k, "-")) for _, m in runs] for k in metric_keys]
    parts = [
        "Config keys that differ:",
        tabulate(differ, headers=["key", *names], tablefmt="pipe") if differ else "(none)",
        "",
        "Final metrics:",
        tabulate(rows, headers=["metric", *names], tablefmt="pipe", disable_numparse=True),
    ]
    return "\n".join(parts)


def _number(value: Any) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def _cell(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def get_parser() -> argparse.ArgumentParser:
    """Command-line arguments of the tool."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", metavar="OUTPUT_DIR", help="the runs to compare")
    parser.add_argument(
        "--metrics", nargs="+", default=None, help='metrics to show, globs e.g. "classification/*"'
    )
    return parser


def main(args: argparse.Namespace) -> None:
    """Print the tables for ``args.dirs``."""
    print(compare(args.dirs, args.metrics))


if __name__ == "__main__":
    run_cli(main, get_parser().parse_args())
