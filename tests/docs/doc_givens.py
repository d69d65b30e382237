"""Stand-ins for the reader's own parts that the docs' runnable snippets name.

A snippet marked ``<!-- doc-test: runnable given=MyModel,MyHook -->`` runs with these names
defined; everything else it uses, it must import itself. Each stand-in is small but real, so
that the snippet is exercised end to end (a model that trains, an evaluator that evaluates).
"""

import numpy as np
from torch import nn

from engine_lib.config import CfgNode
from engine_lib.engine import HookBase
from engine_lib.evaluation import DatasetEvaluator
from engine_lib.modeling import build_model

__all__ = ["MyEvaluator", "MyHook", "MyModel", "add_my_config", "image_rgb"]

# An image as the predictor takes it: HxWxC uint8, RGB.
image_rgb = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)


class MyModel(nn.Module):
    """The config's own model, behind a class of the reader's."""

    def __init__(self, cfg: CfgNode):
        super().__init__()
        self.inner = build_model(cfg)

    def forward(self, batched_inputs):
        return self.inner(batched_inputs)


class MyEvaluator(DatasetEvaluator):
    """Counts the evaluated samples."""

    def __init__(self, dataset_name: str):
        self.dataset_name = dataset_name
        self.count = 0

    def reset(self) -> None:
        self.count = 0

    def process(self, inputs, outputs) -> None:
        self.count += len(outputs)

    def evaluate(self):
        return {"my_eval": {"count": float(self.count)}}


class MyHook(HookBase):
    """Counts the steps it saw."""

    def __init__(self):
        self.steps = 0

    def after_step(self) -> None:
        self.steps += 1


def add_my_config(cfg: CfgNode) -> None:
    """Add a key of the reader's own, as a project does."""
    cfg.MY_PROJECT = CfgNode()
    cfg.MY_PROJECT.SCALE = 1.0
