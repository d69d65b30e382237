"""A tiny entry point for the launcher tests: parse the common command line, launch, all-reduce.

``python -m tests.engine.launcher_compat_helpers [FLAGS] [KEY VALUE ...]`` parses the command
line with ``default_argument_parser``, builds a config from the overrides (``--work-dir`` is
where each rank writes ``rank<N>.json``) and starts :func:`report` through
``launch_from_args``, the path of ``tools/train_net.py``.
"""

import argparse
import json
import os
from typing import List, Optional

import torch
import torch.distributed as dist

from engine_lib.config import CfgNode, get_cfg
from engine_lib.engine import default_argument_parser, launch_from_args, run_cli
from engine_lib.engine.reproducibility import resolve_seed
from engine_lib.utils import comm

__all__ = ["build_cfg", "report", "main"]


def build_cfg(args: argparse.Namespace) -> CfgNode:
    """The default config with the command line's overrides, frozen."""
    cfg = get_cfg()
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    return cfg


def report(args: argparse.Namespace) -> None:
    """All-reduce ``rank + 1`` and write what this process saw to ``OUTPUT_DIR/rank<N>.json``.

    Also records the job's seed (:func:`resolve_seed`: with ``SEED -1``, drawn once for all).
    """
    cfg = build_cfg(args)
    rank = comm.get_rank()
    total = torch.tensor([float(rank + 1)])
    if comm.get_world_size() > 1:
        dist.all_reduce(total)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    with open(os.path.join(cfg.OUTPUT_DIR, f"rank{rank}.json"), "w") as f:
        json.dump(
            {
                "rank": rank,
                "world_size": comm.get_world_size(),
                "local_rank": comm.get_local_rank(),
                "local_size": comm.get_local_size(),
                "sum": total.item(),
                "pid": os.getpid(),
                "env_rank": os.environ.get("RANK"),
                "seed": resolve_seed(cfg).SEED,
            },
            f,
        )


def _run(args: argparse.Namespace) -> None:
    launch_from_args(report, args, build_cfg(args))


def main(argv: Optional[List[str]] = None) -> None:
    """Parse ``argv`` and launch :func:`report`; a user error prints one line and exits 2."""
    run_cli(_run, default_argument_parser().parse_args(argv))


if __name__ == "__main__":
    main()
