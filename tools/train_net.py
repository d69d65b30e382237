#!/usr/bin/env python
"""Train a model described by a config file, or evaluate it with ``--eval-only``.

Examples:
    python tools/train_net.py --config-file configs/Digits/cnn.yaml
    python tools/train_net.py --config-file configs/Digits/cnn.yaml --num-gpus 2 SOLVER.BASE_LR 0.2
    python tools/train_net.py --config-file configs/Digits/cnn.yaml --resume
    python tools/train_net.py --config-file configs/Digits/cnn.yaml --eval-only \
        MODEL.WEIGHTS output/digits_cnn/model_final.pth
"""

import argparse
import logging
from typing import Any, Dict

from engine_lib.checkpoint import Checkpointer
from engine_lib.config import CfgNode, get_cfg
from engine_lib.engine import (
    DefaultTrainer,
    default_argument_parser,
    default_setup,
    launch,
    run_cli,
)
from engine_lib.evaluation import flatten_results_dict, verify_results
from engine_lib.utils import comm
from engine_lib.utils.logger import create_small_table

logger = logging.getLogger("engine_lib.tools.train_net")


def build_cfg(args: argparse.Namespace) -> CfgNode:
    """Merge the config file and the command-line overrides into the defaults, and freeze."""
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    return cfg


def main(args: argparse.Namespace) -> Dict[str, Any]:
    """Train (or only evaluate) in one process of the job."""
    cfg = build_cfg(args)
    default_setup(cfg, args)
    if args.eval_only:
        model = DefaultTrainer.build_model(cfg)
        checkpointer = Checkpointer(model, save_dir=cfg.OUTPUT_DIR)
        if isinstance(args.resume, str):
            checkpointer.load(args.resume)
        else:
            checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = DefaultTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
    else:
        trainer = DefaultTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        results = trainer.train()
    if comm.is_main_process() and results:
        logger.info("Final results:\n%s", create_small_table(flatten_results_dict(results)))
    return results


def run(args: argparse.Namespace) -> None:
    """Validate the config once in the parent, then start one process per worker."""
    cfg = build_cfg(args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        backend="gloo" if cfg.MODEL.DEVICE == "cpu" else None,
    )


if __name__ == "__main__":
    run_cli(run, default_argument_parser().parse_args())
