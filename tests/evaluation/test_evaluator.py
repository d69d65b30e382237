"""``DatasetEvaluators``, ``inference_context`` and ``inference_on_dataset``."""

import logging

import pytest
import torch
from torch import nn

from engine_lib.evaluation import (
    DatasetEvaluator,
    DatasetEvaluators,
    inference_context,
    inference_on_dataset,
)


class _Fixed(DatasetEvaluator):
    """Counts what it processed and returns fixed results."""

    def __init__(self, results):
        self.results = results
        self.seen = 0
        self.resets = 0

    def reset(self):
        self.resets += 1
        self.seen = 0

    def process(self, inputs, outputs):
        assert len(inputs) == len(outputs)
        self.seen += len(inputs)

    def evaluate(self):
        return self.results


class _ModeRecorder(nn.Module):
    """Records its mode and whether autograd was on at each call."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)
        self.calls = []

    def forward(self, inputs):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return [{"y": self.linear(x["x"])} for x in inputs]


def _loader(num_batches=3, batch_size=2):
    return [[{"x": torch.ones(1)} for _ in range(batch_size)] for _ in range(num_batches)]


def test_dataset_evaluators_merge_results():
    a, b = _Fixed({"a": {"m": 1.0}}), _Fixed({"b": {"m": 2.0}})
    merged = DatasetEvaluators([a, b, _Fixed(None)])
    merged.reset()
    merged.process([{}], [{}])
    assert (a.resets, a.seen, b.seen) == (1, 1, 1)
    assert merged.evaluate() == {"a": {"m": 1.0}, "b": {"m": 2.0}}


def test_dataset_evaluators_reject_duplicate_tasks():
    merged = DatasetEvaluators([_Fixed({"a": {"m": 1.0}}), _Fixed({"a": {"n": 2.0}})])
    with pytest.raises(ValueError, match="'a'"):
        merged.evaluate()


@pytest.mark.parametrize("training", [True, False])
def test_inference_context_restores_the_mode(training):
    model = nn.Linear(1, 1).train(training)
    with pytest.raises(RuntimeError):
        with inference_context(model):
            assert not model.training
            raise RuntimeError("fails inside")
    assert model.training is training


def test_inference_on_dataset_runs_in_eval_mode_without_grad_and_restores_training(caplog):
    model = _ModeRecorder().train()
    evaluator = _Fixed({"task": {"metric": 3.0}})
    with caplog.at_level(logging.INFO, logger="engine_lib.evaluation"):
        results = inference_on_dataset(model, _loader(), evaluator)
    assert results == {"task": {"metric": 3.0}}
    assert model.calls == [(False, False)] * 3
    assert model.training
    assert evaluator.resets == 1 and evaluator.seen == 6
    assert "Total inference time" in caplog.text and "per sample" in caplog.text


def test_inference_on_dataset_callbacks_lists_and_none():
    events = []
    callbacks = {name: (lambda n=name: events.append(n)) for name in ("on_start", "on_end")}
    callbacks["before_inference"] = lambda: events.append("before")
    results = inference_on_dataset(
        _ModeRecorder(), _loader(num_batches=2), [_Fixed(None)], callbacks=callbacks
    )
    assert results == {}
    assert events == ["on_start", "before", "before", "on_end"]
    assert inference_on_dataset(_ModeRecorder(), _loader(), None) == {}
    with pytest.raises(ValueError, match="on_epoch"):
        inference_on_dataset(_ModeRecorder(), _loader(), None, callbacks={"on_epoch": print})
