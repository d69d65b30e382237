"""The public ``engine_lib.engine.defaults`` path, as in detectron2.

Each concept lives in its own module (parser, process set-up, trainer, predictor); this
module only re-exports them so that ``from detectron2.engine.defaults import X`` ports
by changing the package name.
"""

from .arguments import default_argument_parser
from .ddp import create_ddp_model
from .environment import commit_output_dir, default_setup, default_writers
from .predictor import DefaultPredictor
from .trainer import DefaultTrainer

__all__ = [
    "DefaultPredictor",
    "DefaultTrainer",
    "commit_output_dir",
    "create_ddp_model",
    "default_argument_parser",
    "default_setup",
    "default_writers",
]
