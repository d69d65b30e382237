#!/usr/bin/env python
"""Plot the training curves of one or more runs from their ``metrics.json`` files.

Losses, the learning rate, timings and evaluation metrics are drawn against the iteration, one
subplot per group of metrics, with every run overlaid (the legend names the runs). Needs
matplotlib: ``pip install -e ".[plot]"``.

Examples:
    python tools/plot_metrics.py output/digits_cnn/metrics.json --output curves.png
    python tools/plot_metrics.py output/run_a output/run_b --output compare.png \
        --metrics "loss*" lr "classification/*"
"""

import argparse
import fnmatch
import json
import logging
import math
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

from engine_lib.engine import run_cli
from engine_lib.utils.errors import ConfigError, UserError

__all__ = ["get_parser", "group_of", "load_metrics", "main", "plot_metrics"]

logger = logging.getLogger("engine_lib.tools.plot_metrics")

# Written by the trainer's writers but not a training curve.
IGNORED_KEYS = ("iteration", "eta_seconds")

#: One run's curves: metric name -> list of (iteration, value).
Curves = Dict[str, List[Tuple[int, float]]]


class MissingDependencyError(UserError, ImportError):
    """An optional package the tool needs is not installed."""


def load_metrics(path: str) -> Curves:
    """Read a ``metrics.json`` file (one JSON object per line) into curves.

    A run killed while writing leaves a truncated last line: it is skipped with a warning.

    Args:
        path (str): the file, or a run's output directory holding ``metrics.json``.

    Returns:
        dict[str, list[tuple[int, float]]]: each metric's (iteration, value) points, in
        file order; non-numeric and non-finite values are left out.

    Raises:
        ConfigError: if the file does not exist, or a line other than the last is not JSON.
    """
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.json")
    if not os.path.isfile(path):
        raise ConfigError(f"metrics file '{path}' does not exist")
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    curves: Curves = OrderedDict()
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):
                logger.warning("%s: skipping the truncated last line %d", path, number)
                break
            raise ConfigError(f"{path}: line {number} is not a JSON object ({e})") from e
        if not isinstance(record, dict) or "iteration" not in record:
            raise ConfigError(f"{path}: line {number} has no 'iteration' field")
        for name, value in record.items():
            if name in IGNORED_KEYS or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and math.isfinite(value):
                curves.setdefault(name, []).append((int(record["iteration"]), float(value)))
    return curves


def group_of(name: str) -> str:
    """The subplot a metric goes to: losses, learning rate, timings, or its evaluation task.

    Args:
        name (str): the metric's name, e.g. ``"loss_cls"`` or ``"classification/top1"``.

    Returns:
        str: the subplot's title.
    """
    if "/" in name:
        return name.split("/", 1)[0]
    if "loss" in name:
        return "losses"
    if name == "lr" or name.startswith("lr_"):
        return "learning rate"
    if name.endswith("time"):
        return "time (s)"
    if name.endswith("_mem"):
        return "memory (MB)"
    return name


def _group_rank(title: str, names: Sequence[str]) -> int:
    """Losses first, then the LR, evaluation metrics, timings and anything else."""
    if title == "losses":
        return 0
    if title == "learning rate":
        return 1
    if "/" in names[0]:
        return 2
    return 3 if title in ("time (s)", "memory (MB)") else 4


def _select(names: Sequence[str], patterns: Optional[Sequence[str]]) -> List[str]:
    if not patterns:
        return list(names)
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        raise ConfigError(
            f"--metrics {list(patterns)} matches none of the metrics in the files: {sorted(names)}"
        )
    return chosen


def _run_labels(paths: Sequence[str]) -> List[str]:
    """Short legend labels: the run's directory name, or the path when those collide."""
    dirs = [os.path.abspath(p if os.path.isdir(p) else os.path.dirname(p)) for p in paths]
    labels = [os.path.basename(d) or d for d in dirs]
    return labels if len(set(labels)) == len(labels) else list(paths)


def _import_pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise MissingDependencyError(
            'plot_metrics.py needs matplotlib: pip install -e ".[plot]" (or pip install matplotlib)'
        ) from e
    # A file backend: the tool runs on headless machines and never opens a window.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(
    paths: Sequence[str],
    output: str,
    metrics: Optional[Sequence[str]] = None,
    labels: Optional[Sequence[str]] = None,
) -> List[str]:
    """Draw the curves of the runs in ``paths`` into the image file ``output``.

    Args:
        paths (list[str]): ``metrics.json`` files or the run directories holding them.
        output (str): the image to write (PNG, or any format matplotlib infers from the
            extension).
        metrics (list[str], optional): metric names or glob patterns to draw (e.g.
            ``"loss*"``); default: every metric.
        labels (list[str], optional): a legend label per run; default: the run directories.

    Returns:
        list[str]: the subplot titles, in order.

    Raises:
        ConfigError: for a missing or malformed file, or metrics that match nothing.
        MissingDependencyError: if matplotlib is not installed.
    """
    plt = _import_pyplot()
    runs = [load_metrics(p) for p in paths]
    labels = list(labels) if labels else _run_labels(paths)
    if len(labels) != len(runs):
        raise ConfigError(f"got {len(labels)} labels for {len(runs)} metrics files")
    names = list(OrderedDict.fromkeys(name for run in runs for name in run))
    if not names:
        raise ConfigError(f"no numeric metrics in {list(paths)}")
    groups: Dict[str, List[str]] = OrderedDict()
    for name in _select(names, metrics):
        groups.setdefault(group_of(name), []).append(name)
    groups = OrderedDict(sorted(groups.items(), key=lambda item: _group_rank(*item)))

    cols = min(2, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 3.8 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    for ax, (title, group) in zip(axes.flat, groups.items()):
        for r, (run, label) in enumerate(zip(runs, labels)):
            for m, name in enumerate(group):
                if name not in run:
                    continue
                iters, values = zip(*run[name])
                parts = [label] if len(runs) > 1 else []
                parts += [name] if len(group) > 1 or len(runs) == 1 else []
                ax.plot(
                    iters,
                    values,
                    # Runs differ by colour, metrics of one subplot by line style.
                    color=colors[r % len(colors)] if len(runs) > 1 else colors[m % len(colors)],
                    linestyle=styles[m % len(styles)] if len(runs) > 1 else "-",
                    marker="o" if len(iters) <= 10 else None,
                    markersize=4,
                    label=": ".join(parts),
                )
        if title == "losses" and all(
            v > 0 for run in runs for n in group for _, v in run.get(n, [])
        ):
            ax.set_yscale("log")
        # A lone evaluation metric is named in the title, since the legend then only names runs.
        ax.set_title(group[0] if len(group) == 1 and "/" in group[0] else title)
        ax.set_xlabel("iteration")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    fig.tight_layout()
    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return list(groups)


def get_parser() -> argparse.ArgumentParser:
    """Command-line arguments of the tool."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "inputs", nargs="+", metavar="METRICS", help="metrics.json files or run directories"
    )
    parser.add_argument("--output", default="metrics.png", help="image file to write")
    parser.add_argument(
        "--metrics", nargs="+", default=None, help="metric names or glob patterns (default: all)"
    )
    parser.add_argument("--labels", nargs="+", default=None, help="legend label of each run")
    return parser


def main(args: argparse.Namespace) -> None:
    """Plot the runs and say where the image went."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    groups = plot_metrics(args.inputs, args.output, args.metrics, args.labels)
    print(f"Wrote {args.output} ({len(groups)} plots: {', '.join(groups)})")


if __name__ == "__main__":
    run_cli(main, get_parser().parse_args())
