"""The stateless hooks (and the LR scheduler hook), each against a small real trainer."""

import json
import logging
import os

import pytest
import torch

from engine_lib.engine import hooks
from engine_lib.utils.events import EventWriter, get_event_storage

from ._toy_training import DIM, ToyRegressor, batches, make_trainer


def test_hooks_package_exports_every_hook():
    # Besides the hook classes, the package exports the config-driven hook registry.
    registry_names = {"HOOK_REGISTRY", "build_hooks_from_config"}
    assert registry_names <= set(hooks.__all__)
    for name in set(hooks.__all__) - registry_names:
        assert isinstance(getattr(hooks, name), type)
        assert issubclass(getattr(hooks, name), hooks.HookBase)
    assert {"EMA", "LayerFreeze", "TorchProfiler", "PreciseBN"} <= set(hooks.__all__)


def test_callback_hook_calls_each_function_with_the_trainer():
    calls = []

    def cb(name):
        return lambda trainer: calls.append((name, trainer.iter))

    names = ["before_train", "after_train", "before_step", "after_backward", "after_step"]
    trainer = make_trainer(hooks=[hooks.CallbackHook(**{n: cb(n) for n in names})])
    trainer.train(0, 1)
    assert calls == [
        ("before_train", 0),
        ("before_step", 0),
        ("after_backward", 0),
        ("after_step", 0),
        ("after_train", 1),
    ]


def test_iteration_timer(caplog):
    trainer = make_trainer(hooks=[hooks.IterationTimer(warmup_iter=3)])
    with caplog.at_level(logging.INFO, logger="engine_lib.engine.hooks.iteration_timer"):
        trainer.train(0, 10)
    times = trainer.storage.history("time").values()
    assert [it for _, it in times] == list(range(2, 10))
    assert all(isinstance(t, float) and t > 0 for t, _ in times)
    assert "Overall training speed: 8 iterations" in caplog.text
    assert "Total training time" in caplog.text


class _ListWriter(EventWriter):
    def __init__(self):
        self.writes = []
        self.closed = 0

    def write(self):
        storage = get_event_storage()
        self.writes.append((storage.iter, storage.latest().get("loss", (None, None))[1]))

    def close(self):
        self.closed += 1


def test_periodic_writer_writes_after_each_gather():
    writer = _ListWriter()
    trainer = make_trainer(gather_metric_period=3, hooks=[hooks.PeriodicWriter([writer], 3)])
    trainer.train(0, 10)
    # (iteration written, newest loss iteration): the losses are always up to date.
    assert writer.writes == [(2, 2), (5, 5), (8, 8), (9, 9), (10, 9)]
    assert writer.closed == 1
    with pytest.raises(TypeError, match="EventWriter"):
        hooks.PeriodicWriter([object()])


def test_lr_scheduler_records_the_main_groups_lr_and_saves_the_schedule():
    def build():
        model = ToyRegressor()
        extra = torch.nn.Parameter(torch.zeros(1))
        trainer = make_trainer(model)
        # The main group has the most parameters; the other has a higher LR.
        trainer.optimizer = torch.optim.SGD(
            [{"params": list(model.parameters())}, {"params": [extra], "lr": 1.0}], lr=0.1
        )
        trainer.scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizer, 3, gamma=0.5)
        trainer.register_hooks([hooks.LRScheduler()])
        return trainer

    trainer = build()
    trainer.train(0, 7)
    lrs = [lr for lr, _ in trainer.storage.history("lr").values()]
    assert lrs == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025])
    state = trainer.state_dict()["hooks"]["LRScheduler"]
    assert state["last_epoch"] == 7

    resumed = build()
    # As a checkpointer does: torch's schedulers leave the LRs to the optimizer's state.
    resumed.optimizer.load_state_dict(trainer.optimizer.state_dict())
    resumed.load_state_dict(trainer.state_dict())
    assert resumed.scheduler.last_epoch == 7
    resumed.train(7, 9)
    assert [lr for lr, _ in resumed.storage.history("lr").values()] == pytest.approx([0.025] * 2)


def test_eval_hook_flattens_results_and_evaluates_the_end_once():
    calls = []

    def evaluate():
        calls.append(trainer.iter)
        # The hook flushed the losses before evaluating.
        assert trainer.storage.latest()["loss"][1] == min(trainer.iter, 7)
        return {"val": {"top1": float(len(calls)), "top5": torch.tensor(99.0)}, "n": 3}

    trainer = make_trainer(gather_metric_period=100, hooks=[hooks.EvalHook(2, lambda: evaluate())])
    trainer.train(0, 8)
    assert calls == [1, 3, 5, 8]  # 8: after training (the last iteration is not done twice)
    top1 = trainer.storage.history("val/top1").values()
    assert top1 == [(1.0, 1), (2.0, 3), (3.0, 5), (4.0, 8)]
    assert trainer.storage.latest()["val/top5"] == (99.0, 8)
    assert trainer.storage.latest()["n"] == (3.0, 8)


def test_eval_hook_without_eval_after_train_and_bad_results():
    calls = []
    trainer = make_trainer(
        hooks=[hooks.EvalHook(2, lambda: calls.append(trainer.iter), eval_after_train=False)]
    )
    trainer.train(0, 6)
    assert calls == [1, 3, 5]

    bad = make_trainer(hooks=[hooks.EvalHook(1, lambda: {"acc": "high"})])
    with pytest.raises(ValueError, match="'acc': 'high'"):
        bad.train(0, 2)


def test_precise_bn_recomputes_population_statistics(caplog):
    model = ToyRegressor(bn=True)
    constant = [{"x": torch.full((DIM,), 2.0), "y": torch.tensor(1.0)}] * 4
    hook = hooks.PreciseBN(0, model, batches(4, constant), num_iter=3)
    trainer = make_trainer(model, hooks=[hook])
    trainer.train(0, 4)
    torch.testing.assert_close(model.bn.running_mean, torch.full((DIM,), 2.0))
    torch.testing.assert_close(model.bn.running_var, torch.zeros(DIM))
    assert model.bn.momentum == 0.1  # restored

    with caplog.at_level(logging.INFO, logger="engine_lib.engine.hooks.precise_bn"):
        hooks.PreciseBN(0, ToyRegressor(), batches(4), num_iter=3)
    assert "no BatchNorm" in caplog.text


def test_torch_profiler_writes_a_chrome_trace(tmp_path):
    hook = hooks.TorchProfiler(lambda t: t.iter == 1, str(tmp_path))
    make_trainer(hooks=[hook]).train(0, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profiler-trace-iter1.json"]
    trace = json.loads((tmp_path / "profiler-trace-iter1.json").read_text())
    assert trace["traceEvents"]


def test_torch_memory_stats(caplog):
    trainer = make_trainer(hooks=[hooks.TorchMemoryStats(period=2, max_runs=2)])
    with caplog.at_level(logging.INFO, logger="engine_lib.engine.hooks.memory_stats"):
        trainer.train(0, 6)
    if not torch.cuda.is_available():
        assert "CUDA is not available" in caplog.text
        assert "max_reserved_mem" not in trainer.storage.histories()
    else:
        iters = [it for _, it in trainer.storage.history("max_allocated_mem").values()]
        assert iters == [1, 3]  # max_runs=2


def test_hooks_from_config_are_built_in_order_and_checked():
    from engine_lib.config import configurable, get_cfg
    from engine_lib.utils.errors import ConfigError

    @hooks.HOOK_REGISTRY.register()
    class _CountSteps(hooks.HookBase):
        @configurable
        def __init__(self, start: int = 0):
            self.count = start

        @classmethod
        def from_config(cls, cfg):
            return {"start": cfg.SOLVER.MAX_ITER}

        def after_step(self):
            self.count += 1

    hooks.HOOK_REGISTRY.register("_Nothing")(lambda cfg: None)
    hooks.HOOK_REGISTRY.register("_NotAHook")(lambda cfg: "hook")
    try:
        cfg = get_cfg()
        cfg.SOLVER.MAX_ITER = 100
        cfg.HOOKS = ("_Nothing", "_CountSteps", "TorchMemoryStats")
        built = hooks.build_hooks_from_config(cfg)
        assert [type(h).__name__ for h in built] == ["_CountSteps", "TorchMemoryStats"]
        trainer = make_trainer(hooks=built)
        trainer.train(0, 3)
        assert built[0].count == 103
        cfg.HOOKS = ("_CountStep",)
        with pytest.raises(ConfigError, match=r"HOOKS: .*Did you mean '_CountSteps'"):
            hooks.build_hooks_from_config(cfg)
        cfg.HOOKS = ("_NotAHook",)
        with pytest.raises(TypeError, match="'_NotAHook' built str, not a HookBase"):
            hooks.build_hooks_from_config(cfg)
        cfg.HOOKS = ("_CountSteps", "_CountSteps")
        with pytest.raises(ConfigError, match="listed 2 times"):
            hooks.build_hooks_from_config(cfg)
    finally:
        for name in ("_CountSteps", "_Nothing", "_NotAHook"):
            del hooks.HOOK_REGISTRY._obj_map[name]


def test_autograd_profiler_is_a_deprecated_torch_profiler(tmp_path):
    with pytest.warns(DeprecationWarning, match="TorchProfiler"):
        profiler = hooks.AutogradProfiler(lambda t: t.iter == 1, str(tmp_path), use_cuda=False)
    trainer = make_trainer(hooks=[profiler])
    trainer.train(0, 2)
    assert os.listdir(tmp_path) == ["profiler-trace-iter1.json"]
