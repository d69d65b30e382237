"""The loop, the hook protocol and the one-step trainer, against a tiny real model."""

import collections
import gc
import logging
import os
import pickle
import threading

import pytest
import torch

from engine_lib.checkpoint import Checkpointer
from engine_lib.engine import hooks
from engine_lib.engine.train_loop import AMPTrainer, GradClip, HookBase, SimpleTrainer
from engine_lib.utils import comm
from engine_lib.utils.errors import ConfigError
from engine_lib.utils.events import CommonMetricPrinter, JSONWriter

from ._toy_training import Recorder, ToyRegressor, batches, make_samples, make_trainer

# ---------------------------------------------------------------------------- the loop


def test_hooks_are_called_in_order():
    recorder = Recorder()
    trainer = make_trainer(hooks=[recorder, None])
    trainer.train(0, 2)
    step = ["before_step", "after_backward", "after_step"]
    expected = [("before_train", 0)] + [(e, i) for i in range(2) for e in step]
    assert recorder.events == expected + [("after_train", 2)]
    assert trainer.hooks == (recorder,)


def test_only_overriding_hooks_are_called_and_instance_methods_count():
    class AfterStepOnly(HookBase):
        def __init__(self):
            self.steps = 0

        def after_step(self):
            self.steps += 1

    only = AfterStepOnly()
    patched = HookBase()
    seen = []
    patched.before_step = lambda: seen.append("before_step")  # set on the instance
    trainer = make_trainer(hooks=[only, patched])
    assert trainer._hook_calls["after_step"] == [only.after_step]
    assert trainer._hook_calls["before_train"] == []
    trainer.train(0, 3)
    assert only.steps == 3 and seen == ["before_step"] * 3
    # Hooks registered later join the dispatch lists, after the earlier ones.
    late = Recorder()
    trainer.register_hooks([late])
    trainer.train(3, 4)
    assert only.steps == 4 and ("after_step", 3) in late.events


class _Failing(torch.nn.Module):
    def __init__(self, fail_at: int):
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)
        self.calls = 0
        self.fail_at = fail_at

    def forward(self, batch):
        self.calls += 1
        if self.calls > self.fail_at:
            raise RuntimeError("boom")
        return {"loss": self.linear(torch.ones(1, 1)).sum()}


def test_after_train_runs_after_an_exception():
    completed = []
    recorder = Recorder()
    cb = hooks.CallbackHook(after_train=lambda t: completed.append(recorder.training_completed()))
    trainer = make_trainer(_Failing(fail_at=2), hooks=[recorder, cb])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train(0, 5)
    assert recorder.events[-1] == ("after_train", 2)
    assert completed == [False]


def test_register_hooks_keeps_a_weak_reference():
    recorder = Recorder()
    trainer = make_trainer(hooks=[recorder])
    with pytest.raises(TypeError, match="HookBase"):
        trainer.register_hooks([object()])
    del trainer
    gc.collect()
    with pytest.raises(ReferenceError):
        recorder.trainer.iter  # noqa: B018


class _Periods(HookBase):
    def __init__(self):
        self.seen = []

    def after_step(self):
        self.seen.append(
            (
                self.trainer.iter,
                self.every_n_iters(3),
                self.every_n_iters(0),
                self.is_last_iter(),
                self.every_n_iters_or_last(3),
            )
        )


def test_every_n_iters_helpers():
    h = _Periods()
    make_trainer(hooks=[h]).train(0, 7)
    every3 = [it for it, e, *_ in h.seen if e]
    assert every3 == [2, 5]
    assert not any(zero for _, _, zero, _, _ in h.seen)
    assert [it for it, _, _, last, _ in h.seen if last] == [6]
    assert [it for it, *_, either in h.seen if either] == [2, 5, 6]


# ---------------------------------------------------------------------------- trainer state


class Counter(HookBase):
    def __init__(self, start):
        self.count = start

    def after_step(self):
        self.count += 1

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def _fp16_trainer(hook_list, init_scale):
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    return make_trainer(hooks=hook_list, precision="fp16", grad_scaler=scaler)


def test_state_dict_round_trip(caplog):
    first = _fp16_trainer([Counter(0), Recorder(), Counter(100)], init_scale=2.0**10)
    first.train(0, 5)
    state = first.state_dict()
    assert state["iteration"] == 4  # the last completed iteration
    assert state["hooks"] == {"Counter": {"count": 5}, "Counter#1": {"count": 105}}
    assert state["samples_consumed"] == 5 * 8
    assert state["grad_scaler"]["scale"] == first.grad_scaler.get_scale()

    second = _fp16_trainer([Counter(0), Recorder(), Counter(0)], init_scale=1.0)
    second.load_state_dict(state)
    assert second.iter == 4
    assert [h.count for h in second.hooks if isinstance(h, Counter)] == [5, 105]
    assert second.samples_consumed == 40
    assert second.grad_scaler.get_scale() == first.grad_scaler.get_scale() != 1.0

    with caplog.at_level(logging.WARNING, logger="engine_lib.engine.train_loop"):
        make_trainer(hooks=[Counter(0)]).load_state_dict(state)
        assert "Counter#1, which is not registered" in caplog.text
        make_trainer(hooks=[Counter(0), Counter(0), Counter(0)]).load_state_dict(state)
        assert "no state for hook Counter#2" in caplog.text


def test_reset_data_loader():
    trainer = make_trainer(data=batches(8))
    trainer.train(0, 2)
    assert trainer.samples_consumed == 16
    trainer.reset_data_loader(lambda: batches(2))
    trainer.train(2, 3)
    trainer.reset_data_loader(batches(3))
    trainer.train(3, 4)
    assert trainer.samples_consumed == 16 + 2 + 3


def test_bad_arguments():
    model = ToyRegressor()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="precision"):
        SimpleTrainer(model, [], opt, precision="fp8")
    with pytest.raises(ConfigError, match="grad_accum_steps"):
        SimpleTrainer(model, [], opt, grad_accum_steps=0)
    with pytest.raises(TypeError, match="GradClip"):
        SimpleTrainer(model, [], opt, clip_grad={"clip_type": "norm"})
    with pytest.raises(ConfigError, match="clip_type"):
        GradClip(clip_type="max")
    with pytest.raises(ConfigError, match="fp16"):
        SimpleTrainer(model, [], opt, grad_scaler=torch.amp.GradScaler("cpu"))
    with pytest.raises(ConfigError, match="AMPTrainer"):
        AMPTrainer(model, [], opt, precision="fp32")
    assert AMPTrainer(model, [], opt).grad_scaler is not None


# ---------------------------------------------------------------------------- the step


def test_grad_accumulation_matches_one_large_batch():
    samples = make_samples(64)
    small = make_trainer(data=batches(4, samples), grad_accum_steps=4, hooks=[hooks.LRScheduler()])
    large = make_trainer(data=batches(16, samples), hooks=[hooks.LRScheduler()])
    small.train(0, 6)
    large.train(0, 6)
    for p_small, p_large in zip(small.model.parameters(), large.model.parameters()):
        torch.testing.assert_close(p_small, p_large, rtol=1e-5, atol=1e-6)
    # Iterations and schedules count optimizer steps, not micro-batches.
    assert small.scheduler.last_epoch == large.scheduler.last_epoch == 6
    assert small.samples_consumed == large.samples_consumed == 96
    loss_small = small.storage.history("loss").values()
    loss_large = large.storage.history("loss").values()
    assert [it for _, it in loss_small] == list(range(6))
    for (a, _), (b, _) in zip(loss_small, loss_large):
        assert a == pytest.approx(b, rel=1e-5)


def _grads(trainer):
    return [p.grad.clone() for p in trainer.model.parameters()]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_clip_grad_norm(precision):
    kwargs = {"zero_grad_before_forward": True, "precision": precision, "lr": 0.0}

    def scaler():  # a small scale: the default one overflows fp16 on the first step
        return torch.amp.GradScaler("cpu", init_scale=64.0) if precision == "fp16" else None

    raw = make_trainer(grad_scaler=scaler(), **kwargs)
    raw.train(0, 1)
    clipped = make_trainer(clip_grad=GradClip("norm", 0.5), grad_scaler=scaler(), **kwargs)
    clipped.train(0, 1)
    # With fp16, the scaler's step unscaled the unclipped gradients in place.
    raw_grads, clipped_grads = _grads(raw), _grads(clipped)
    raw_norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in raw_grads]))
    clipped_norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in clipped_grads]))
    assert raw_norm > 1.0
    assert clipped_norm == pytest.approx(0.5, rel=1e-3)
    for r, c in zip(raw_grads, clipped_grads):
        torch.testing.assert_close(c, r * (0.5 / raw_norm), rtol=2e-3, atol=1e-4)


def test_clip_grad_value():
    raw = make_trainer(zero_grad_before_forward=True, lr=0.0)
    raw.train(0, 1)
    clipped = make_trainer(
        zero_grad_before_forward=True, lr=0.0, clip_grad=GradClip("value", clip_value=0.1)
    )
    clipped.train(0, 1)
    for r, c in zip(_grads(raw), _grads(clipped)):
        torch.testing.assert_close(c, r.clamp(-0.1, 0.1))
    assert max(g.abs().max() for g in _grads(raw)) > 0.1


def test_bf16_autocast_on_cpu():
    model = ToyRegressor(two_losses=True)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = make_trainer(model, precision="bf16")
    assert trainer.grad_scaler is None
    trainer.train(0, 4)
    assert model.last_dtype == torch.bfloat16
    losses = trainer.storage.history("total_loss").values()
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(v)) for v, _ in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_fp16_with_grad_scaler_on_cpu():
    model = ToyRegressor()
    # The scale doubles after every 2 steps without overflow: 3 steps grow it once.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    trainer = AMPTrainer(model, batches(8), optimizer, grad_scaler=scaler)
    before = model.linear.weight.detach().clone()
    trainer.train(0, 3)
    assert model.last_dtype == torch.float16
    assert scaler.get_scale() == 2.0**11
    assert not torch.equal(before, model.linear.weight)  # the unscaled steps were taken
    # The state holds the grown scale and its growth tracker; a resume continues from them.
    state = trainer.state_dict()["grad_scaler"]
    assert state["scale"] == 2.0**11 and state["_growth_tracker"] == 1
    other = ToyRegressor()
    resumed = AMPTrainer(
        other,
        batches(8),
        torch.optim.SGD(other.parameters(), lr=0.05),
        grad_scaler=torch.amp.GradScaler("cpu", init_scale=1.0, growth_interval=2),
    )
    resumed.load_state_dict(trainer.state_dict())
    assert resumed.grad_scaler.get_scale() == 2.0**11


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_on_cuda():
    model = ToyRegressor().cuda()
    samples = [{k: v.cuda() for k, v in s.items()} for s in make_samples(32)]
    trainer = AMPTrainer(model, batches(8, samples), torch.optim.SGD(model.parameters(), lr=0.05))
    trainer.train(0, 3)
    assert model.last_dtype == torch.float16
    assert isinstance(trainer.grad_scaler, torch.amp.GradScaler)
    assert len(trainer.storage.history("loss").values()) == 3


def test_model_returning_a_tensor_reports_total_loss():
    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, batch):
            return (self.w * len(batch)).sum()

    model = Plain()
    trainer = SimpleTrainer(model, batches(2), torch.optim.SGD(model.parameters(), lr=0.1))
    trainer.train(0, 2)
    assert [v for v, _ in trainer.storage.history("total_loss").values()] == pytest.approx([2, 1.6])


# ---------------------------------------------------------------------------- metrics


def test_losses_reach_the_storage_at_their_own_iterations():
    trainer = make_trainer(ToyRegressor(two_losses=True), gather_metric_period=4)
    seen = []

    def record(t):
        buffer = t.storage.histories().get("loss")
        seen.append(sorted(it for _, it in buffer.values()) if buffer else [])

    cb = hooks.CallbackHook(after_step=record)
    trainer.register_hooks([cb])
    trainer.train(0, 10)
    # Nothing before the first gather, then all iterations up to it; the last one is flushed.
    assert seen[0] == [] and seen[3] == [0, 1, 2, 3] and seen[6] == [0, 1, 2, 3]
    assert seen[9] == list(range(10))
    hist = {name: trainer.storage.history(name).values() for name in ("loss", "loss_l1")}
    for (total, _), (a, _), (b, _) in zip(
        trainer.storage.history("total_loss").values(), hist["loss"], hist["loss_l1"]
    ):
        assert total == pytest.approx(a + b)
    assert len(trainer.storage.history("data_time").values()) == 10
    trainer.flush_metrics()  # idempotent
    assert len(trainer.storage.history("loss").values()) == 10


_SYNC_METHODS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")


def _count_host_syncs(monkeypatch, trainer):
    """Count calls of tensor methods that copy to the host, by trainer iteration."""
    calls = collections.Counter()
    for name in _SYNC_METHODS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            calls[trainer.iter] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return calls


def _default_style_trainer(tmp_path, gather_metric_period):
    model = ToyRegressor(two_losses=True)
    trainer = make_trainer(
        model, gather_metric_period=gather_metric_period, clip_grad=GradClip("norm", 1.0)
    )
    checkpointer = Checkpointer(model, str(tmp_path), optimizer=trainer.optimizer, trainer=trainer)
    writers = [JSONWriter(str(tmp_path / "metrics.json")), CommonMetricPrinter(20)]
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(),
            hooks.PeriodicCheckpointer(checkpointer, period=1000),
            hooks.PeriodicWriter(writers, period=5),
        ]
    )
    return trainer


def test_no_host_sync_between_writes(tmp_path, monkeypatch):
    trainer = _default_style_trainer(tmp_path / "a", gather_metric_period=5)
    calls = _count_host_syncs(monkeypatch, trainer)
    trainer.train(0, 20)
    write_iters = {4, 9, 14, 19}
    assert set(calls) <= write_iters | {20}  # 20: after_train
    assert all(calls[it] >= 1 for it in write_iters)
    # The gather is one copy; the last iteration also checks the weights before saving.
    assert calls[4] == calls[9] == calls[14] == 1

    # The counter sees syncs where there are some: gathering every iteration.
    every_step = _default_style_trainer(tmp_path / "b", gather_metric_period=1)
    calls = _count_host_syncs(monkeypatch, every_step)
    every_step.train(0, 20)
    assert all(calls[it] >= 1 for it in range(20))


def test_nonfinite_loss_raises_before_a_checkpoint_is_saved(tmp_path):
    model = ToyRegressor(two_losses=True)
    trainer = make_trainer(model, data=batches(8, nan_at=6), gather_metric_period=20)
    checkpointer = Checkpointer(model, str(tmp_path), optimizer=trainer.optimizer, trainer=trainer)
    trainer.register_hooks([hooks.PeriodicCheckpointer(checkpointer, period=4)])
    with pytest.raises(FloatingPointError, match=r"iteration=6!") as e:
        trainer.train(0, 20)
    assert "'loss': nan" in str(e.value)
    assert trainer.iter == 7  # raised by the checkpointer's flush, before saving
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000003.pth"]
    saved = torch.load(tmp_path / "model_0000003.pth", weights_only=True)
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_nonfinite_loss_raises_at_the_next_gather():
    trainer = make_trainer(data=batches(8, nan_at=6), gather_metric_period=5)
    with pytest.raises(FloatingPointError, match=r"Loss became infinite or NaN at iteration=6!"):
        trainer.train(0, 20)
    assert trainer.iter == 9
    values = dict((it, v) for v, it in trainer.storage.history("loss").values())
    assert sorted(values) == list(range(10)) and values[6] != values[6]  # NaN recorded too


def test_nonfinite_weights_are_not_saved(tmp_path):
    def corrupt(trainer):
        if trainer.iter == 2:
            with torch.no_grad():
                trainer.model.linear.weight[0, 0] = float("inf")

    model = ToyRegressor()
    trainer = make_trainer(model)
    checkpointer = Checkpointer(model, str(tmp_path), trainer=trainer)
    trainer.register_hooks(
        [hooks.CallbackHook(after_step=corrupt), hooks.PeriodicCheckpointer(checkpointer, 3)]
    )
    with pytest.raises(FloatingPointError, match=r"Weights .* iteration=2 .*linear.weight"):
        trainer.train(0, 6)
    assert not os.path.exists(tmp_path / "model_0000002.pth")


# ---------------------------------------------------------------------------- distributed


def _distributed_worker(out_dir):
    rank = comm.get_rank()
    model = ToyRegressor()
    local_losses = []

    class Local(HookBase):
        def after_backward(self):
            local_losses.append(model(batch_log[-1])["loss"].item())

    batch_log = []

    def data():
        for batch in batches(8, make_samples(64, seed=rank), nan_at=3 if rank == 1 else None):
            batch_log.append(batch)
            yield batch

    trainer = make_trainer(model, data=data(), gather_metric_period=10, lr=0.0)
    trainer.register_hooks([Local()])
    error = None
    try:
        trainer.train(0, 10)
    except FloatingPointError as e:
        error = str(e)
    history = trainer.storage.history("loss").values()
    with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump({"error": error, "local": local_losses, "history": history}, f)


def test_distributed_gather_averages_and_raises_on_every_rank(tmp_path):
    from engine_lib.engine import launch

    launch(_distributed_worker, 2, args=(str(tmp_path),), backend="gloo")
    results = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(2)]
    for r in results:
        # Rank 1's NaN at iteration 3 is reported by both ranks at the gather (iteration 9).
        assert r["error"] is not None and "iteration=3!" in r["error"]
        assert [it for _, it in r["history"]] == list(range(10))
    for it in (0, 1, 2):
        mean = (results[0]["local"][it] + results[1]["local"][it]) / 2
        assert results[0]["history"][it][0] == pytest.approx(mean, rel=1e-5)
        assert results[1]["history"][it][0] == pytest.approx(mean, rel=1e-5)


# ---------------------------------------------------------------------------- detectron2 options


def test_gather_all_iterations_false_records_only_gathered_iterations():
    trainer = make_trainer(gather_metric_period=5, gather_all_iterations=False)
    trainer.train(0, 23)
    for name in ("total_loss", "data_time", "loss"):
        iters = [it for _, it in trainer.storage.history(name).values()]
        assert iters == [4, 9, 14, 19]  # detectron2: not the last iteration (22) either


def test_total_loss_is_always_recorded_and_single_losses_keep_their_name():
    trainer = make_trainer()
    trainer.train(0, 3)
    total = trainer.storage.history("total_loss").values()
    assert total == trainer.storage.history("loss").values() and len(total) == 3


def test_async_write_metrics_puts_every_iteration_from_a_background_thread():
    threads = set()
    trainer = make_trainer(gather_metric_period=4, async_write_metrics=True)

    class SeeThreads(HookBase):
        def before_train(self):
            storage = self.trainer.storage
            for method in ("put_scalar", "put_scalar_series"):
                original = getattr(storage, method)

                def recording(*args, original=original, **kwargs):
                    threads.add(threading.current_thread().name)
                    return original(*args, **kwargs)

                setattr(storage, method, recording)

    trainer.register_hooks([SeeThreads()])
    trainer.train(0, 10)
    assert [it for _, it in trainer.storage.history("total_loss").values()] == list(range(10))
    assert any(name.startswith("engine_lib-metrics") for name in threads)
    assert threading.current_thread().name not in threads


def test_async_write_metrics_raises_a_nonfinite_loss_before_a_checkpoint(tmp_path):
    model = ToyRegressor()
    trainer = make_trainer(
        model, data=batches(8, nan_at=6), gather_metric_period=20, async_write_metrics=True
    )
    checkpointer = Checkpointer(model, str(tmp_path), optimizer=trainer.optimizer, trainer=trainer)
    trainer.register_hooks([hooks.PeriodicCheckpointer(checkpointer, period=4)])
    with pytest.raises(FloatingPointError, match=r"iteration=6!"):
        trainer.train(0, 20)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000003.pth"]


def test_detectron2_positional_arguments_and_dtype_precision():
    model = ToyRegressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    trainer = SimpleTrainer(model, batches(8), optimizer, 5, True, False)
    assert (trainer.gather_metric_period, trainer.zero_grad_before_forward) == (5, True)
    amp = AMPTrainer(model, batches(8), optimizer, 2, False, None, torch.bfloat16)
    assert amp.precision == "bf16" and amp.grad_scaler is None
    with pytest.raises(ConfigError, match="AMPTrainer needs"):
        AMPTrainer(model, batches(8), optimizer, precision=torch.float32)


def test_log_grad_scaler_puts_the_scale_at_each_gather():
    model = ToyRegressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    trainer = AMPTrainer(model, batches(8), optimizer, 2, log_grad_scaler=True)
    trainer.train(0, 4)
    values = trainer.storage.history("[metric]grad_scaler").values()
    assert [it for _, it in values] == [1, 3] and values[-1][0] == trainer.grad_scaler.get_scale()


def test_epoch_helpers_without_iters_per_epoch_treat_training_as_one_epoch():
    seen = []

    class Epochs(HookBase):
        def before_step(self):
            seen.append((self.current_epoch(), self.is_epoch_start()))

        def after_step(self):
            seen[-1] += (self.is_epoch_end(),)

    trainer = make_trainer(hooks=[Epochs()])
    assert trainer.iters_per_epoch == 0
    trainer.train(0, 3)
    assert seen == [(0, True, False), (0, False, False), (0, False, True)]
    seen.clear()
    trainer.iters_per_epoch = 2
    trainer.train(0, 3)
    assert seen == [(0, True, False), (0, False, True), (1, True, True)]


def test_infinite_loss_raises_like_nan():
    """+inf is not NaN: the check must be ``isfinite``, not ``isnan``."""

    def data():
        for index, batch in enumerate(batches(8)):
            if index == 4:
                batch[0]["y"] = torch.tensor(float("inf"))
            yield batch

    trainer = make_trainer(data=data(), gather_metric_period=1)
    with pytest.raises(FloatingPointError, match=r"infinite or NaN at iteration=4!") as e:
        trainer.train(0, 20)
    assert "'loss': inf" in str(e.value)


def test_the_step_back_propagates_the_sum_of_all_losses():
    model = ToyRegressor(two_losses=True)
    reference = ToyRegressor(two_losses=True)  # the same seeded initial weights
    batch = next(batches(8))
    trainer = SimpleTrainer(model, iter([batch]), torch.optim.SGD(model.parameters(), lr=0.1))
    trainer.train(0, 1)
    losses = reference(batch)
    (losses["loss"] + losses["loss_l1"]).backward()
    for p, r in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.detach(), r.detach() - 0.1 * r.grad)
