"""EVALUATOR_REGISTRY and build_evaluator: TEST.EVALUATOR picks the evaluator."""

import os

import pytest

from engine_lib.config import get_cfg
from engine_lib.evaluation import (
    EVALUATOR_REGISTRY,
    ClassificationEvaluator,
    DatasetEvaluator,
    build_evaluator,
)
from engine_lib.utils.errors import ConfigError


class _CountingEvaluator(DatasetEvaluator):
    def __init__(self, cfg, dataset_name):
        self.dataset_name = dataset_name
        self.count = 0

    def reset(self):
        self.count = 0

    def process(self, inputs, outputs):
        self.count += len(inputs)

    def evaluate(self):
        return {"count": {"n": self.count}}


@pytest.fixture
def counting():
    EVALUATOR_REGISTRY.register(_CountingEvaluator)
    EVALUATOR_REGISTRY.register("NotAnEvaluator")(lambda cfg, name: object())
    yield
    del EVALUATOR_REGISTRY._obj_map["_CountingEvaluator"]
    del EVALUATOR_REGISTRY._obj_map["NotAnEvaluator"]


def test_default_is_the_classification_evaluator(tmp_path):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    evaluator = build_evaluator(cfg, "digits_test")
    assert isinstance(evaluator, ClassificationEvaluator)
    assert evaluator._output_dir == os.path.join(str(tmp_path), "inference")


def test_a_registered_class_is_built_with_cfg_and_name(counting):
    cfg = get_cfg()
    cfg.TEST.EVALUATOR = "_CountingEvaluator"
    evaluator = build_evaluator(cfg, "my_set")
    assert isinstance(evaluator, _CountingEvaluator) and evaluator.dataset_name == "my_set"


def test_errors_name_the_key(counting):
    cfg = get_cfg()
    cfg.TEST.EVALUATOR = "_CountingEvaluater"
    with pytest.raises(ConfigError, match=r"TEST.EVALUATOR: .*Did you mean '_CountingEvaluator'"):
        build_evaluator(cfg, "x")
    cfg.TEST.EVALUATOR = "NotAnEvaluator"
    with pytest.raises(TypeError, match="NotAnEvaluator.*not a DatasetEvaluator"):
        build_evaluator(cfg, "x")
