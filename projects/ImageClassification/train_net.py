#!/usr/bin/env python
"""Train a torchvision ResNet on an ImageFolder tree or CIFAR-10 with engine_lib.

Nothing here is specific to the engine's internals: the project adds two config keys (the
data roots), registers its data sets from them, and uses ``DefaultTrainer`` as it is. Mixed
precision, EMA, layer freezing and the 10x head LR are config keys (see configs/).

Examples:
    python projects/ImageClassification/train_net.py \
        --config-file projects/ImageClassification/configs/resnet18_imagefolder.yaml \
        DATASETS.IMAGE_FOLDER.ROOT datasets/stripes
    python projects/ImageClassification/train_net.py --config-file ... --eval-only \
        MODEL.WEIGHTS output/image_classification/model_final.pth
"""

import argparse
import logging
from typing import Any, Dict

from image_classification import add_image_classification_config, register_datasets

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
from engine_lib.utils.logger import create_small_table, setup_logger

logger = logging.getLogger("image_classification.train_net")


def build_cfg(args: argparse.Namespace) -> CfgNode:
    """Merge the config file and the overrides into the defaults plus the project's keys."""
    cfg = get_cfg()
    add_image_classification_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    return cfg


def main(args: argparse.Namespace) -> Dict[str, Any]:
    """Train (or only evaluate) in one process of the job."""
    cfg = build_cfg(args)
    default_setup(cfg, args)
    # The project's loggers go to the console and log.txt like the engine's.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="image_classification")
    register_datasets(cfg)
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
    """Check the config and the data roots once, then start one process per worker."""
    cfg = build_cfg(args)
    register_datasets(cfg)  # a bad root or class count fails here, before any worker starts
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
