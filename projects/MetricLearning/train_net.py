#!/usr/bin/env python
"""Train an embedding model on the digits (each digit an identity) and evaluate retrieval.

Examples:
    python projects/MetricLearning/train_net.py \
        --config-file projects/MetricLearning/configs/digits_triplet.yaml
    python projects/MetricLearning/train_net.py --config-file ... --eval-only \
        MODEL.WEIGHTS output/metric_learning_digits/model_final.pth
"""

import argparse
import logging
import os
import sys
from typing import Any, Dict

# The project is run as a script, not installed: make its package importable.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from metric_learning import (  # noqa: E402
    add_metric_learning_config,
    register_digits_query_gallery,
)

from engine_lib.config import CfgNode, build_config  # noqa: E402
from engine_lib.distillation import select_trainer  # noqa: E402
from engine_lib.engine import (  # noqa: E402
    DefaultTrainer,
    default_argument_parser,
    launch_from_args,
    run_cli,
    train_or_evaluate,
)
from engine_lib.evaluation import DatasetEvaluator, build_evaluator  # noqa: E402

logger = logging.getLogger("metric_learning.train_net")


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` evaluating query-to-gallery retrieval instead of accuracy."""

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str) -> DatasetEvaluator:
        """The evaluator ``TEST.EVALUATOR`` names: ``RetrievalEvaluator`` in this project's
        configs (registered by ``metric_learning``)."""
        return build_evaluator(cfg, dataset_name)


def setup(args: argparse.Namespace) -> CfgNode:
    """Build the config (project keys first) and register the query/gallery splits."""
    cfg = build_config(args.config_file, args.opts, [add_metric_learning_config])
    register_digits_query_gallery(cfg.METRIC_LEARNING.NUM_QUERY_PER_ID)
    return cfg


def main(args: argparse.Namespace) -> Dict[str, Any]:
    """Train (or only evaluate) in one process of the job."""
    cfg = setup(args)
    # With KD.ENABLED the trainer gains distillation (a layer outside the engine).
    trainer_cls = select_trainer(cfg, Trainer, eval_only=args.eval_only)
    return train_or_evaluate(cfg, args, trainer_cls, extra_loggers=("metric_learning",))


def run(args: argparse.Namespace) -> None:
    """Check the config once in the parent, then start one process per worker."""
    launch_from_args(main, args, setup(args))


if __name__ == "__main__":
    run_cli(run, default_argument_parser().parse_args())
