#!/usr/bin/env python
"""Train torchvision's Faster R-CNN on generated shapes; evaluate VOC mAP@0.5.

Examples (from the repository root):
    python projects/Detection/train_net.py \
        --config-file projects/Detection/configs/faster_rcnn_shapes.yaml
    python projects/Detection/train_net.py --config-file ... --eval-only \
        MODEL.WEIGHTS output/detection_shapes/model_final.pth
"""

import argparse
import logging
import os
import sys
from typing import Any, Dict

# The project is not installed: make its package importable from any working directory.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from detection import DetectionMapper, VOCDetectionEvaluator, add_detection_config  # noqa: E402

from engine_lib.config import CfgNode, build_config  # noqa: E402
from engine_lib.data import build_test_loader, build_train_loader  # noqa: E402
from engine_lib.distillation import select_trainer  # noqa: E402
from engine_lib.engine import (  # noqa: E402
    DefaultTrainer,
    default_argument_parser,
    launch_from_args,
    run_cli,
    train_or_evaluate,
)
from engine_lib.evaluation import DatasetEvaluator  # noqa: E402

logger = logging.getLogger("detection.train_net")


class Trainer(DefaultTrainer):
    """DefaultTrainer with the detection mapper and the VOC evaluator."""

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        return build_train_loader(cfg, mapper=DetectionMapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        return build_test_loader(cfg, dataset_name, mapper=DetectionMapper(cfg, is_train=False))

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str) -> DatasetEvaluator:
        return VOCDetectionEvaluator(dataset_name)


def build_cfg(args: argparse.Namespace) -> CfgNode:
    """The defaults plus the project's keys, the config file and the command line."""
    return build_config(args.config_file, args.opts, [add_detection_config])


def main(args: argparse.Namespace) -> Dict[str, Any]:
    """Train, or only evaluate, in one process of the job."""
    cfg = build_cfg(args)
    # With KD.ENABLED the trainer gains distillation (a layer outside the engine).
    trainer_cls = select_trainer(cfg, Trainer, eval_only=args.eval_only)
    return train_or_evaluate(cfg, args, trainer_cls, extra_loggers=("detection",))


def run(args: argparse.Namespace) -> None:
    """Validate the config once, then start one process per worker."""
    launch_from_args(main, args, build_cfg(args))


if __name__ == "__main__":
    run_cli(run, default_argument_parser().parse_args())
