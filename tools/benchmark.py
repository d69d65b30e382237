#!/usr/bin/env python
"""Measure a config's data-loader throughput, training speed or inference speed.

``--task data`` times ``DefaultTrainer.build_train_loader`` alone (images/s); ``--task train``
times ``DefaultTrainer``'s training step (forward, backward, optimizer step, LR schedule) on
``MODEL.DEVICE`` with no checkpoints, evaluation or writers; ``--task eval`` times the model
in eval mode on the first test set. Each first runs ``--warmup`` untimed iterations. One
process; nothing is written to ``OUTPUT_DIR``.

Examples:
    python tools/benchmark.py --config-file configs/Digits/cnn.yaml --task data
    python tools/benchmark.py --config-file configs/Digits/cnn.yaml --task train \
        --iters 200 SOLVER.AMP.ENABLED True
"""

import argparse
import itertools
import logging
import time
from typing import Any, Dict, List, Optional

import torch
from tabulate import tabulate

from engine_lib.config import (
    CfgNode,
    add_extra_config_argument,
    build_config,
    load_config_extension,
)
from engine_lib.engine import DefaultTrainer, HookBase, hooks, run_cli
from engine_lib.utils.errors import ConfigError
from engine_lib.utils.logger import setup_logger

__all__ = [
    "benchmark_data",
    "benchmark_eval",
    "benchmark_train",
    "format_results",
    "get_parser",
    "main",
]

logger = logging.getLogger("engine_lib.tools.benchmark")

TASKS = ("data", "train", "eval")


def _sync(device: torch.device) -> None:
    # Kernels run asynchronously: wait for them so the clock measures their work.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _result(task: str, iters: int, images: int, seconds: float) -> Dict[str, Any]:
    return {
        "task": task,
        "iterations": iters,
        "images": images,
        "seconds": seconds,
        "s/iter": seconds / iters,
        "images/s": images / seconds if seconds > 0 else float("inf"),
    }


def benchmark_data(cfg: CfgNode, iters: int, warmup: int) -> Dict[str, Any]:
    """Time ``iters`` batches of the training loader, after ``warmup`` batches.

    Args:
        cfg (CfgNode): the config.
        iters (int): batches timed.
        warmup (int): batches loaded first, untimed (worker start-up).

    Returns:
        dict: task, iterations, images, seconds, s/iter and images/s.
    """
    loader = iter(DefaultTrainer.build_train_loader(cfg))
    for _ in range(warmup):
        next(loader)
    images = 0
    start = time.perf_counter()
    for _ in range(iters):
        images += len(next(loader))
    return _result("data", iters, images, time.perf_counter() - start)


class _StepClock(HookBase):
    """Time the iterations after the first ``warmup``, with a device sync at both ends."""

    def __init__(self, warmup: int, device: torch.device) -> None:
        self._warmup = warmup
        self._device = device
        self.start: Optional[float] = None
        self.seconds = 0.0

    def before_train(self) -> None:
        if self._warmup == 0:
            self._start_clock()

    def after_step(self) -> None:
        if self.trainer.iter == self._warmup - 1:
            self._start_clock()

    def after_train(self) -> None:
        _sync(self._device)
        if self.start is not None:
            self.seconds = time.perf_counter() - self.start

    def _start_clock(self) -> None:
        _sync(self._device)
        self.start = time.perf_counter()


class _BenchmarkTrainer(DefaultTrainer):
    """``DefaultTrainer`` whose only hooks are the LR schedule and the clock.

    Checkpoints, evaluation and writers are left out: they would write to ``OUTPUT_DIR`` and
    are not part of a step's cost.
    """

    benchmark_warmup = 0

    def build_hooks(self) -> List[Optional[HookBase]]:
        self.clock = _StepClock(self.benchmark_warmup, torch.device(self.cfg.MODEL.DEVICE))
        # The LR schedule is part of every real step's cost.
        return [hooks.LRScheduler(), self.clock]


def benchmark_train(cfg: CfgNode, iters: int, warmup: int) -> Dict[str, Any]:
    """Time ``iters`` training steps of ``DefaultTrainer`` after ``warmup`` steps.

    Args:
        cfg (CfgNode): the config; its length (``SOLVER.MAX_ITER`` or ``MAX_EPOCH``) is replaced
            by ``warmup + iters`` iterations.
        iters (int): steps timed.
        warmup (int): steps run first, untimed.

    Returns:
        dict: task, iterations, images, seconds, s/iter and images/s.
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.SOLVER.MAX_ITER = warmup + iters
    cfg.SOLVER.MAX_EPOCH = 0  # the length is in iterations here, whatever the config said
    cfg.TEST.EXPECTED_RESULTS = []
    cfg.freeze()
    trainer_cls = type("_Trainer", (_BenchmarkTrainer,), {"benchmark_warmup": warmup})
    trainer = trainer_cls(cfg)
    trainer.train()
    images = iters * cfg.SOLVER.IMS_PER_BATCH * cfg.SOLVER.GRAD_ACCUM_STEPS
    return _result("train", iters, images, trainer.clock.seconds)


def benchmark_eval(cfg: CfgNode, iters: int, warmup: int) -> Dict[str, Any]:
    """Time ``iters`` batches of inference on the first test set, after ``warmup`` batches.

    The test loader is iterated again from the start when it runs out. The time includes
    loading the batches, as it does during evaluation.

    Args:
        cfg (CfgNode): the config.
        iters (int): batches timed.
        warmup (int): batches run first, untimed.

    Returns:
        dict: task, iterations, images, seconds, s/iter and images/s.

    Raises:
        ConfigError: if ``DATASETS.TEST`` is empty.
    """
    if not cfg.DATASETS.TEST:
        raise ConfigError("--task eval needs a test set in DATASETS.TEST; it is empty")
    model = DefaultTrainer.build_model(cfg)
    model.eval()
    device = next(model.parameters()).device
    loader = DefaultTrainer.build_test_loader(cfg, cfg.DATASETS.TEST[0])
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    images = 0
    with torch.no_grad():
        for _ in range(warmup):
            model(next(batches))
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            batch = next(batches)
            model(batch)
            images += len(batch)
        _sync(device)
    return _result("eval", iters, images, time.perf_counter() - start)


def format_results(results: List[Dict[str, Any]]) -> str:
    """The results as a table, one row per task."""
    return tabulate(
        [list(r.values()) for r in results],
        headers=list(results[0].keys()),
        tablefmt="pipe",
        floatfmt=".4g",
    )


def get_parser() -> argparse.ArgumentParser:
    """Command-line arguments of the tool."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="config file")
    add_extra_config_argument(parser)
    parser.add_argument(
        "--task",
        action="append",
        choices=TASKS,
        help="what to time; repeat for several (default: data and train)",
    )
    parser.add_argument("--iters", type=int, default=100, help="iterations timed")
    parser.add_argument("--warmup", type=int, default=10, help="untimed iterations first")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser


BENCHMARKS = {"data": benchmark_data, "train": benchmark_train, "eval": benchmark_eval}


def main(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """Run the chosen benchmarks and print their table."""
    if args.iters < 1 or args.warmup < 0:
        raise ConfigError(
            f"--iters must be >= 1 and --warmup >= 0, got {args.iters} and {args.warmup}"
        )
    if not logging.getLogger("engine_lib").handlers:
        setup_logger(name="engine_lib")
    extensions = [load_config_extension(spec) for spec in args.extra_config]
    cfg = build_config(args.config_file, args.opts, extensions)
    results = []
    for task in args.task or ("data", "train"):
        logger.info("Benchmarking %s: %d iterations after %d warmup", task, args.iters, args.warmup)
        results.append(BENCHMARKS[task](cfg, args.iters, args.warmup))
    print(format_results(results))
    return results


if __name__ == "__main__":
    run_cli(main, get_parser().parse_args())
