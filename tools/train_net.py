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
from engine_lib.data import DatasetCatalog
from engine_lib.engine import (
    DefaultTrainer,
    commit_output_dir,
    default_argument_parser,
    default_setup,
    launch,
    run_cli,
)
from engine_lib.evaluation import flatten_results_dict, verify_results
from engine_lib.utils import comm
from engine_lib.utils.errors import UnknownNameError
from engine_lib.utils.logger import create_small_table

logger = logging.getLogger("engine_lib.tools.train_net")


def build_cfg(args: argparse.Namespace) -> CfgNode:
    """Merge the config file and the command-line overrides into the defaults, and freeze."""
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    return cfg


def check_dataset_names(cfg: CfgNode) -> None:
    """Fail now, not after training, on a misspelled data set in DATASETS.TRAIN or TEST."""
    for key in ("TRAIN", "TEST"):
        for name in cfg.DATASETS[key]:
            if name in DatasetCatalog:
                continue
            try:
                DatasetCatalog.get(name)  # raises, naming the closest registered names
            except UnknownNameError as e:
                raise UnknownNameError(f"DATASETS.{key}: {e}") from None


def main(args: argparse.Namespace) -> Dict[str, Any]:
    """Train (or only evaluate) in one process of the job.

    Everything that can fail on user input (model, data, weights) is built before anything
    is written to ``OUTPUT_DIR``, so a bad input leaves a previous run's files as they were.
    """
    cfg = build_cfg(args)
    default_setup(cfg, args, defer_writes=True)
    check_dataset_names(cfg)
    if args.eval_only:
        model = DefaultTrainer.build_model(cfg)
        checkpointer = Checkpointer(
            model, save_dir=cfg.OUTPUT_DIR, allow_pickle=cfg.MODEL.WEIGHTS_ALLOW_PICKLE
        )
        if isinstance(args.resume, str):
            checkpointer.load(args.resume)
        else:
            checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        commit_output_dir(cfg)
        results = DefaultTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
    else:
        trainer = DefaultTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        commit_output_dir(cfg)
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
