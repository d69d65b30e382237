"""Per-rank memory and step time of FSDP2 against DDP, on real gloo processes.

For each world size (2 and 4 by default) one job of that many processes trains the same
model (``--blocks`` Linear+GELU blocks of width ``--dim`` and a head, AdamW) on the same
batches twice: wrapped in DDP, then sharded with ``fully_shard``
(``engine_lib.engine.parallel.parallelize_model``, default units: each block). It reports:

* memory: bytes of parameters + gradients + optimizer state held by each rank
  (``rank_state_bytes``; gradients are kept after the step to be counted), FSDP / DDP, with
  the target ``<= 1/N + 10%``;
* step time: the median over ``--steps`` timed steps (after two warm-up steps) of a
  ``SimpleTrainer`` step, FSDP / DDP. On CPU with gloo, FSDP's all-gathers and
  reduce-scatters cost more than DDP's bucketed all-reduce: the ratio documents the price of
  sharding, not a speed-up.

Usage::

    python benchmarks/parallel.py                      # world sizes 2 and 4, CPU, gloo
    python benchmarks/parallel.py --world-sizes 2 --dim 1024 --steps 10
"""

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, Iterator, List

import torch
import torch.nn.functional as F
from torch import nn

from engine_lib.config import get_cfg
from engine_lib.engine.launch import launch
from engine_lib.engine.parallel import parallelize_model, rank_state_bytes, unwrap_model
from engine_lib.engine.train_loop import HookBase, SimpleTrainer
from engine_lib.utils import comm

__all__ = ["main"]

logger = logging.getLogger(__name__)


class Blocks(nn.Module):
    """``blocks`` Linear+GELU blocks under ``backbone`` (the default FSDP units), a head."""

    def __init__(self, dim: int, blocks: int) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            *[nn.Sequential(nn.Linear(dim, dim), nn.GELU()) for _ in range(blocks)]
        )
        self.head = nn.Linear(dim, dim)

    def forward(self, batch: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"loss": F.mse_loss(self.head(self.backbone(batch)), batch)}


class _StepTimer(HookBase):
    """Wall time of each step, from before_step to after_step."""

    def __init__(self) -> None:
        self.times: List[float] = []

    def before_step(self) -> None:
        self._start = time.perf_counter()

    def after_step(self) -> None:
        self.times.append(time.perf_counter() - self._start)


def _batches(dim: int, batch: int) -> Iterator[torch.Tensor]:
    g = torch.Generator().manual_seed(comm.get_rank())
    while True:
        yield torch.randn(batch, dim, generator=g)


def _run(strategy: str, args: argparse.Namespace) -> Dict[str, Any]:
    torch.manual_seed(0)
    cfg = get_cfg()
    cfg.PARALLEL.STRATEGY = strategy
    model = parallelize_model(cfg, Blocks(args.dim, args.blocks))
    optimizer = torch.optim.AdamW(unwrap_model(model).parameters(), lr=1e-4)
    trainer = SimpleTrainer(
        model, _batches(args.dim, args.batch), optimizer, zero_grad_before_forward=True
    )
    timer = _StepTimer()
    trainer.register_hooks([timer])
    trainer.train(0, args.steps + 2)
    return {
        "bytes": rank_state_bytes(model, optimizer)["total"],
        "step_s": statistics.median(timer.times[2:]),
    }


def _worker(args: argparse.Namespace, out_file: str) -> None:
    results = {strategy: _run(strategy, args) for strategy in ("ddp", "fsdp")}
    gathered = comm.gather(results)
    if comm.is_main_process():
        with open(out_file, "w") as f:
            json.dump(gathered, f)


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-sizes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32, help="samples per rank per step")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    params = sum(p.numel() for p in Blocks(args.dim, args.blocks).parameters())
    print(f"model: {params / 1e6:.2f}M parameters, AdamW, batch {args.batch} per rank, CPU/gloo")
    print("world | DDP MB/rank | FSDP MB/rank | FSDP/DDP memory (target) | FSDP/DDP step time")
    for world in args.world_sizes:
        with tempfile.TemporaryDirectory() as tmp:
            out_file = os.path.join(tmp, "result.json")
            launch(_worker, world, dist_url="auto", args=(args, out_file), backend="gloo")
            with open(out_file) as f:
                ranks = json.load(f)
        ddp = max(r["ddp"]["bytes"] for r in ranks)
        fsdp = max(r["fsdp"]["bytes"] for r in ranks)
        step = statistics.median(r["fsdp"]["step_s"] / r["ddp"]["step_s"] for r in ranks)
        print(
            f"{world:5d} | {ddp / 2**20:11.1f} | {fsdp / 2**20:12.1f} | "
            f"{fsdp / ddp:.3f} (<= {1 / world + 0.1:.3f}) | {step:.2f}x"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
