"""The training engine: loop, hooks, launcher and the config-driven defaults."""

from . import hooks
from .arguments import default_argument_parser
from .cli import run_cli
from .ddp import create_ddp_model
from .environment import commit_output_dir, default_setup, default_writers
from .launch import launch
from .launch.exit_codes import PREEMPTED_EXIT_CODE, TrainingPreempted
from .parallel import parallelize_model
from .predictor import DefaultPredictor
from .reproducibility import apply_determinism, resolve_seed
from .script import check_dataset_names, launch_from_args, train_or_evaluate
from .train_loop import AMPTrainer, GradClip, HookBase, SimpleTrainer, TrainerBase
from .trainer import DefaultTrainer

__all__ = [
    "PREEMPTED_EXIT_CODE",
    "AMPTrainer",
    "DefaultPredictor",
    "DefaultTrainer",
    "GradClip",
    "HookBase",
    "SimpleTrainer",
    "TrainerBase",
    "TrainingPreempted",
    "apply_determinism",
    "commit_output_dir",
    "create_ddp_model",
    "default_argument_parser",
    "default_setup",
    "default_writers",
    "hooks",
    "launch",
    "launch_from_args",
    "resolve_seed",
    "run_cli",
    "train_or_evaluate",
    "check_dataset_names",
    "parallelize_model",
]
