#!/usr/bin/env python
"""Train a model described by a config file, or evaluate it with ``--eval-only``.

Examples:
    python tools/train_net.py --config-file configs/Digits/cnn.yaml
    python tools/train_net.py --config-file configs/Digits/cnn.yaml --num-gpus 2 SOLVER.BASE_LR 0.2
    python tools/train_net.py --config-file configs/Digits/cnn.yaml --resume
    python tools/train_net.py --config-file configs/Digits/cnn.yaml --eval-only \
        MODEL.WEIGHTS output/digits_cnn/model_final.pth
    python tools/train_net.py --config-file configs/Digits/cnn.yaml --deterministic SEED -1 \
        --work-dir runs/digits --cfg-options SOLVER.BASE_LR=0.05
    mpirun -np 2 python tools/train_net.py --launcher mpi --dist-url tcp://127.0.0.1:29500 \
        --config-file configs/Digits/cnn.yaml
"""

import argparse
from typing import Any, Dict

from engine_lib.config import CfgNode, build_config
from engine_lib.distillation import select_trainer
from engine_lib.engine import (
    default_argument_parser,
    launch_from_args,
    run_cli,
    train_or_evaluate,
)


def build_cfg(args: argparse.Namespace) -> CfgNode:
    """Merge the config file and the command-line overrides into the defaults, and freeze."""
    return build_config(args.config_file, args.opts)


def main(args: argparse.Namespace) -> Dict[str, Any]:
    """Train (or only evaluate) in one process of the job.

    The trainer is ``DefaultTrainer``, or with ``KD.ENABLED`` the distillation trainer
    (``engine_lib.distillation.select_trainer``, the one place a config key picks it).
    """
    cfg = build_cfg(args)
    return train_or_evaluate(cfg, args, select_trainer(cfg, eval_only=args.eval_only))


def run(args: argparse.Namespace) -> None:
    """Validate the config once in the parent, then start one process per worker."""
    launch_from_args(main, args, build_cfg(args))


if __name__ == "__main__":
    run_cli(run, default_argument_parser().parse_args())
