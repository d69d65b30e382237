"""A project adds an optimizer, an LR schedule, an evaluator and a hook by registering them,
and a plain DefaultTrainer trains and evaluates with them: no engine edit, no subclass.

NEEDS THE DefaultTrainer WIRING (DefaultTrainer.build_evaluator calling
``engine_lib.evaluation.build_evaluator`` and DefaultTrainer.build_hooks adding
``hooks.build_hooks_from_config(cfg)``): the evaluator and hook parts fail without it.
"""

import json
import logging
import os

import pytest
import torch
from fvcore.common.param_scheduler import LinearParamScheduler

from engine_lib.config import configurable, get_cfg
from engine_lib.engine import DefaultTrainer, hooks
from engine_lib.evaluation import EVALUATOR_REGISTRY, DatasetEvaluator
from engine_lib.solver import LR_SCHEDULER_REGISTRY, OPTIMIZER_REGISTRY

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _SampleCounter(DatasetEvaluator):
    """An evaluator of the "project": counts the test samples it saw."""

    def __init__(self, cfg, dataset_name):
        self._name = dataset_name
        self._count = 0

    def reset(self):
        self._count = 0

    def process(self, inputs, outputs):
        self._count += len(inputs)

    def evaluate(self):
        return {"counter": {"samples": float(self._count)}}


class _StepCounter(hooks.HookBase):
    """A hook of the "project", built from the config."""

    @configurable
    def __init__(self, every: int):
        self.every = every
        self.calls = 0

    @classmethod
    def from_config(cls, cfg):
        return {"every": cfg.SOLVER.LOG_PERIOD}

    def after_step(self):
        if self.every_n_iters(self.every):
            self.calls += 1
            self.trainer.storage.put_scalar(
                "[metric]step_counter", self.calls, smoothing_hint=False
            )


@pytest.fixture
def project():
    # DefaultTrainer sets up the "engine_lib" logger (no propagation) when nothing did; undo it
    # afterwards so that later tests' caplog still sees engine_lib's records.
    engine_logger = logging.getLogger("engine_lib")
    saved = (list(engine_logger.handlers), engine_logger.propagate, engine_logger.level)
    OPTIMIZER_REGISTRY.register("ProjectRMSprop")(
        lambda cfg, params: torch.optim.RMSprop(params, lr=cfg.SOLVER.BASE_LR)
    )
    LR_SCHEDULER_REGISTRY.register("ProjectLinearLR")(
        lambda cfg: LinearParamScheduler(1.0, cfg.SOLVER.BASE_LR_END)
    )
    EVALUATOR_REGISTRY.register("ProjectSampleCounter")(_SampleCounter)
    hooks.HOOK_REGISTRY.register("ProjectStepCounter")(_StepCounter)
    yield
    del OPTIMIZER_REGISTRY._obj_map["ProjectRMSprop"]
    del LR_SCHEDULER_REGISTRY._obj_map["ProjectLinearLR"]
    del EVALUATOR_REGISTRY._obj_map["ProjectSampleCounter"]
    del hooks.HOOK_REGISTRY._obj_map["ProjectStepCounter"]
    engine_logger.handlers[:], engine_logger.propagate, engine_logger.level = saved


def test_default_trainer_uses_the_registered_choices(project, tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "Digits", "cnn.yaml"))
    cfg.merge_from_list(
        ["OUTPUT_DIR", str(tmp_path), "MODEL.DEVICE", "cpu", "MODEL.BACKBONE.WIDTH", "4"]
        + ["SOLVER.IMS_PER_BATCH", "16", "SOLVER.MAX_ITER", "6", "SOLVER.WARMUP_ITERS", "0"]
        + ["SOLVER.LOG_PERIOD", "3", "SOLVER.CHECKPOINT_PERIOD", "6", "TEST.EVAL_PERIOD", "0"]
        + ["SOLVER.OPTIMIZER", "ProjectRMSprop", "SOLVER.LR_SCHEDULER_NAME", "ProjectLinearLR"]
        + ["SOLVER.BASE_LR", "0.001", "SOLVER.BASE_LR_END", "0.5"]
        + ["TEST.EVALUATOR", "ProjectSampleCounter", "HOOKS", '("ProjectStepCounter",)']
    )
    cfg.freeze()
    trainer = DefaultTrainer(cfg)
    assert isinstance(trainer.optimizer, torch.optim.RMSprop)
    counters = [h for h in trainer.hooks if isinstance(h, _StepCounter)]
    assert len(counters) == 1 and counters[0].every == 3
    trainer.train()
    assert counters[0].calls == 2
    with open(tmp_path / "metrics.json") as f:
        metrics = [json.loads(line) for line in f]
    lrs = {m["iteration"]: m["lr"] for m in metrics if "lr" in m}
    assert lrs == pytest.approx({2: 0.001 * (1 - 0.5 * 2 / 6), 5: 0.001 * (1 - 0.5 * 5 / 6)})
    assert [m["[metric]step_counter"] for m in metrics if "[metric]step_counter" in m] == [1, 2]
    # The final evaluation used the registered evaluator on every test sample.
    assert metrics[-1]["counter/samples"] > 0
