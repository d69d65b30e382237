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

from engine_lib.config import CfgNode, build_config
from engine_lib.distillation import select_trainer
from engine_lib.engine import (
    default_argument_parser,
    launch_from_args,
    run_cli,
    train_or_evaluate,
)

logger = logging.getLogger("image_classification.train_net")


def build_cfg(args: argparse.Namespace) -> CfgNode:
    """Merge the config file and the overrides into the defaults plus the project's keys."""
    return build_config(args.config_file, args.opts, [add_image_classification_config])


def main(args: argparse.Namespace) -> Dict[str, Any]:
    """Train (or only evaluate) in one process of the job."""
    # The project's loggers go to the console and log.txt like the engine's.
    cfg = build_cfg(args)
    # With KD.ENABLED the trainer gains distillation (a layer outside the engine).
    trainer_cls = select_trainer(cfg, eval_only=args.eval_only)
    return train_or_evaluate(
        cfg, args, trainer_cls, extra_loggers=("image_classification",), prepare=register_datasets
    )


def run(args: argparse.Namespace) -> None:
    """Check the config and the data roots once, then start one process per worker."""
    cfg = build_cfg(args)
    register_datasets(cfg)  # a bad root or class count fails here, before any worker starts
    launch_from_args(main, args, cfg)


if __name__ == "__main__":
    run_cli(run, default_argument_parser().parse_args())
