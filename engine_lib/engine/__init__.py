"""The training engine: loop, hooks, launcher and the config-driven defaults."""

from . import hooks
from .arguments import default_argument_parser
from .cli import run_cli
from .ddp import create_ddp_model
from .environment import default_setup, default_writers
from .launch import launch
from .predictor import DefaultPredictor
from .train_loop import AMPTrainer, GradClip, HookBase, SimpleTrainer, TrainerBase
from .trainer import DefaultTrainer

__all__ = [
    "AMPTrainer",
    "DefaultPredictor",
    "DefaultTrainer",
    "GradClip",
    "HookBase",
    "SimpleTrainer",
    "TrainerBase",
    "create_ddp_model",
    "default_argument_parser",
    "default_setup",
    "default_writers",
    "hooks",
    "launch",
    "run_cli",
]
