#!/usr/bin/env python
"""Knowledge distillation on the bundled digits: a small CNN learns from a wider one.

``KD.ENABLED`` makes ``DefaultTrainer.build_model`` wrap the student in a ``Distiller`` with
the teacher of ``KD.MODEL_CONFIG`` / ``KD.MODEL_WEIGHTS`` (or, with ``KD.EMA_TEACHER``, an EMA
of the student), and ``DefaultTrainer.build_hooks`` adds the ``EMATeacher`` hook that keeps an
EMA teacher up to date: this script needs nothing beyond the default trainer.

Examples (from the repository root):
    python projects/Distillation/train_net.py \
        --config-file projects/Distillation/configs/teacher_cnn.yaml
    python projects/Distillation/train_net.py \
        --config-file projects/Distillation/configs/student_kd.yaml
    python projects/Distillation/train_net.py \
        --config-file projects/Distillation/configs/student_ema_teacher.yaml
"""

import argparse
from typing import Any, Dict

from engine_lib.config import CfgNode, get_cfg
from engine_lib.engine import (
    DefaultTrainer,
    default_argument_parser,
    launch_from_args,
    run_cli,
    train_or_evaluate,
)

__all__ = ["build_cfg", "main", "run"]


def build_cfg(args: argparse.Namespace) -> CfgNode:
    """Merge the config file and the command-line overrides into the defaults, and freeze."""
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    return cfg


def main(args: argparse.Namespace) -> Dict[str, Any]:
    """Train (or only evaluate) in one process of the job."""
    return train_or_evaluate(build_cfg(args), args, trainer_cls=DefaultTrainer)


def run(args: argparse.Namespace) -> None:
    """Validate the config once in the parent, then start one process per worker."""
    launch_from_args(main, args, build_cfg(args))


if __name__ == "__main__":
    run_cli(run, default_argument_parser().parse_args())
