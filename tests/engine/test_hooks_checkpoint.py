"""Checkpoint hooks and resuming through a real Checkpointer (weights_only loading)."""

import json
import logging
import math
import os

import pytest
import torch

from engine_lib.checkpoint import Checkpointer
from engine_lib.engine import hooks
from engine_lib.utils.events import JSONWriter

from ._toy_training import ToyRegressor, batches, make_trainer


def _trainer_with_checkpointer(out_dir, hook_list_fn, **kwargs):
    model = ToyRegressor()
    trainer = make_trainer(model, **kwargs)
    checkpointer = Checkpointer(model, str(out_dir), optimizer=trainer.optimizer, trainer=trainer)
    trainer.register_hooks(hook_list_fn(checkpointer))
    return trainer, checkpointer


def test_periodic_checkpointer_saves_trainer_state_and_keeps_the_newest(tmp_path):
    trainer, _ = _trainer_with_checkpointer(
        tmp_path, lambda c: [hooks.PeriodicCheckpointer(c, period=2, max_to_keep=2)]
    )
    trainer.train(0, 7)
    assert sorted(os.listdir(tmp_path)) == [
        "last_checkpoint",
        "model_0000003.pth",
        "model_0000005.pth",
        "model_final.pth",
    ]
    saved = torch.load(tmp_path / "model_0000005.pth", weights_only=True)
    assert saved["iteration"] == 5
    assert saved["trainer"]["iteration"] == 5
    assert saved["trainer"]["samples_consumed"] == 6 * 8
    assert torch.load(tmp_path / "model_final.pth", weights_only=True)["iteration"] == 6


def _best_run(out_dir, metrics, max_iter, resume=False):
    values = iter(metrics)

    def hook_list(checkpointer):
        return [
            hooks.EvalHook(2, lambda: {"val": {"acc": next(values)}}),
            hooks.BestCheckpointer(2, checkpointer, "val/acc", mode="max"),
        ]

    trainer, checkpointer = _trainer_with_checkpointer(out_dir, hook_list)
    start = 0
    if resume:
        checkpointer.resume_or_load("", resume=True)
        start = trainer.iter + 1
    trainer.train(start, max_iter)
    best = [h for h in trainer.hooks if isinstance(h, hooks.BestCheckpointer)][0]
    return trainer, best


def test_best_checkpointer_ignores_nan_and_survives_a_resume(tmp_path, caplog):
    path = tmp_path / "model_best.pth"
    with caplog.at_level(logging.WARNING, logger="engine_lib.engine.hooks.best_checkpointer"):
        # Evaluations at iterations 1, 3, 5 and after training.
        _, best = _best_run(tmp_path, [0.5, math.nan, 0.7, 0.6], max_iter=8)
    assert "NaN" in caplog.text
    assert (best.best_metric, best.best_iter) == (0.7, 5)
    saved = torch.load(path, weights_only=True)
    assert saved["iteration"] == 5
    assert saved["trainer"]["hooks"]["BestCheckpointer"] == {"best_metric": 0.7, "best_iter": 5}

    # Resuming from model_best (the newest save): 0.65 is not a new best, 0.8 is.
    mtime = path.stat().st_mtime_ns
    trainer, best = _best_run(tmp_path, [0.65, 0.8, 0.75], max_iter=12, resume=True)
    assert trainer.start_iter == 6
    assert (best.best_metric, best.best_iter) == (0.8, 9)
    saved = torch.load(path, weights_only=True)
    assert saved["iteration"] == 9 and path.stat().st_mtime_ns != mtime


def test_best_checkpointer_warns_about_a_missing_metric(tmp_path, caplog):
    trainer, _ = _trainer_with_checkpointer(
        tmp_path, lambda c: [hooks.BestCheckpointer(2, c, "val/missing")]
    )
    with caplog.at_level(logging.WARNING, logger="engine_lib.engine.hooks.best_checkpointer"):
        trainer.train(0, 4)
    assert "no metric 'val/missing'" in caplog.text
    assert not (tmp_path / "model_best.pth").exists()
    with pytest.raises(ValueError, match="mode"):
        hooks.BestCheckpointer(2, None, "x", mode="maximum")


class _Crash(hooks.HookBase):
    def __init__(self, at):
        self.at = at

    def after_step(self):
        if self.trainer.iter == self.at:
            raise RuntimeError("simulated crash")


def test_resumed_run_writes_each_iteration_once(tmp_path):
    metrics = tmp_path / "metrics.json"

    def hook_list(crash_at):
        return lambda checkpointer: [
            hooks.IterationTimer(warmup_iter=0),
            hooks.LRScheduler(),
            hooks.PeriodicCheckpointer(checkpointer, period=5),
            _Crash(crash_at),
            hooks.PeriodicWriter([JSONWriter(str(metrics))], period=2),
        ]

    trainer, _ = _trainer_with_checkpointer(tmp_path, hook_list(12), gather_metric_period=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.train(0, 20)
    # Written every 2 iterations, plus iteration 12 after the crash.
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["iteration"] for r in lines] == [1, 3, 5, 7, 9, 11, 12]
    lr_before = {r["iteration"]: r["lr"] for r in lines}

    trainer, checkpointer = _trainer_with_checkpointer(
        tmp_path, hook_list(-1), gather_metric_period=2
    )
    checkpointer.resume_or_load("", resume=True)  # model_0000009.pth
    assert trainer.iter == 9
    trainer.train(trainer.iter + 1, 20)
    # Iterations 11 and 12 of the first run were dropped, and 11 written again once.
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["iteration"] for r in lines] == list(range(1, 20, 2))
    assert all("loss" in r and "time" in r and "lr" in r for r in lines)
    # The LR schedule continued where the checkpoint left it.
    lr_after = {r["iteration"]: r["lr"] for r in lines}
    assert all(lr_after[it] == lr for it, lr in lr_before.items() if it <= 11)


def test_data_loader_is_not_touched_before_training(tmp_path):
    pulled = []

    def data():
        for batch in batches(8):
            pulled.append(1)
            yield batch

    trainer, _ = _trainer_with_checkpointer(tmp_path, lambda c: [], data=data())
    trainer.reset_data_loader(data())
    assert pulled == []
    trainer.train(0, 1)
    assert pulled == [1]


class _ReadMetrics(hooks.HookBase):
    """Reads metrics.json right after iteration ``at``: what a SIGKILL there would leave."""

    def __init__(self, path, at):
        self.path, self.at, self.lines = path, at, None

    def after_step(self):
        if self.trainer.iter == self.at:
            text = self.path.read_text() if self.path.exists() else ""
            self.lines = [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("write_before_save", [True, False])
def test_pending_metrics_are_written_before_a_checkpoint_save(tmp_path, write_before_save):
    # An evaluation and a save at iteration 2, a writer period of 100: a kill at iteration 3
    # must not lose the evaluation line that the checkpoint's state says was done.
    metrics = tmp_path / "metrics.json"
    probe = _ReadMetrics(metrics, at=3)

    def hook_list(checkpointer):
        return [
            hooks.EvalHook(3, lambda: {"val": {"acc": 0.5}}),
            hooks.PeriodicCheckpointer(checkpointer, period=3),
            probe,
            hooks.PeriodicWriter(
                [JSONWriter(str(metrics))], period=100, write_before_save=write_before_save
            ),
        ]

    trainer, _ = _trainer_with_checkpointer(tmp_path, hook_list)
    trainer.train(0, 5)
    iterations = [r["iteration"] for r in probe.lines]
    if write_before_save:
        assert iterations == [2]
        assert probe.lines[0]["val/acc"] == 0.5
    else:
        assert iterations == []
