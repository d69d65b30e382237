#!/usr/bin/env python
"""How long the training loop waits for a checkpoint save: single file vs DCP vs async DCP.

A model of about 100M parameters (fp32) with AdamW state (two moments: ~1.2 GB in all) is
saved through :class:`engine_lib.checkpoint.Checkpointer` in one process, three ways:

* ``torch``: one ``.pth`` file, written atomically (the loop waits for the whole write);
* ``dcp``: a sharded directory with ``dcp.save`` (the loop waits for the whole write);
* ``dcp async``: ``dcp.async_save``; the loop waits only for the CPU staging copy, and the
  write completes in the background (its end-to-end time is printed too).

Each is repeated ``--repeats`` times; the median blocking time and the ratios to the single
file are printed. Target: async blocking <= 10% of the single-file save.

Example:
    python benchmarks/checkpoint_blocking.py --out /tmp/ckpt_bench --repeats 3
"""

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from typing import Dict, List

import torch
from torch import nn

from engine_lib.checkpoint import Checkpointer

__all__ = ["build", "measure", "main"]

logger = logging.getLogger(__name__)


def build(width: int, depth: int):
    """``depth`` square linear layers of ``width`` and an AdamW with its state initialised."""
    model = nn.Sequential(*[nn.Linear(width, width) for _ in range(depth)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model(torch.randn(2, width)).sum().backward()
    optimizer.step()  # creates exp_avg and exp_avg_sq
    return model, optimizer


def measure(model, optimizer, out: str, repeats: int) -> Dict[str, List[float]]:
    """Blocking (and, for async, end-to-end) seconds of each kind of save."""
    times: Dict[str, List[float]] = {"torch": [], "dcp": [], "dcp async": [], "async total": []}
    kinds = [("torch", "torch", False), ("dcp", "dcp", False), ("dcp async", "dcp", True)]
    for name, fmt, asynchronous in kinds:
        checkpointer = Checkpointer(
            model, out, checkpoint_format=fmt, async_save=asynchronous, optimizer=optimizer
        )
        for i in range(repeats):
            start = time.perf_counter()
            checkpointer.save(f"model_{i:07d}", iteration=i)
            times[name].append(time.perf_counter() - start)
            if asynchronous:
                checkpointer.wait()
                times["async total"].append(time.perf_counter() - start)
        shutil.rmtree(out, ignore_errors=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="", help="directory to save into (default: a temp dir)")
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--depth", type=int, default=6, help="6 x 4096^2 = ~100M parameters")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("engine_lib").setLevel(logging.WARNING)
    torch.manual_seed(0)
    model, optimizer = build(args.width, args.depth)
    params = sum(p.numel() for p in model.parameters())
    out = args.out or tempfile.mkdtemp(prefix="ckpt_bench_")
    times = measure(model, optimizer, out, args.repeats)
    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"model: {params / 1e6:.1f}M parameters + AdamW state ({params * 12 / 2**30:.2f} GiB)")
    for name in ("torch", "dcp", "dcp async"):
        print(
            f"{name:>10}: loop blocked {med[name]:7.3f} s (median of {args.repeats}), "
            f"{med[name] / med['torch']:6.1%} of the single-file save"
        )
    print(f"{'':>10}  async save complete after {med['async total']:.3f} s (background)")
    ok = med["dcp async"] <= 0.10 * med["torch"]
    print(f"target async <= 10% of single file: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
