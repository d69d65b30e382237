"""SimpleTrainer's defer_metric_read: losses read one period late, never lost or unchecked.

On CUDA the deferral avoids draining the GPU's queue; its logic (what the storage and the
writers see, and when) is the same on the CPU, where these tests force it on.
"""

import os
import threading

import pytest
import torch

from engine_lib.checkpoint import Checkpointer
from engine_lib.engine import hooks
from engine_lib.utils.events import EventStorage, EventWriter, get_event_storage

from ._toy_training import ToyRegressor, batches, make_trainer


def _loss_iterations(storage):
    return [it for _, it in storage.history("total_loss").values()]


def test_the_live_storage_gets_the_losses_one_period_late_and_all_at_the_end():
    seen = {}

    def look(trainer):
        if trainer.iter % 4 == 3:
            latest = trainer.storage.latest().get("total_loss")
            seen[trainer.iter] = None if latest is None else latest[1]

    trainer = make_trainer(
        gather_metric_period=4,
        defer_metric_read=True,
        hooks=[hooks.CallbackHook(after_step=look)],
    )
    trainer.train(0, 14)
    assert seen == {3: None, 7: 3, 11: 7}
    assert _loss_iterations(trainer.storage) == list(range(14))
    reference = make_trainer(gather_metric_period=4)
    reference.train(0, 14)
    got = trainer.storage.history("total_loss").values()
    want = reference.storage.history("total_loss").values()
    assert [it for _, it in got] == [it for _, it in want]
    assert [v for v, _ in got] == pytest.approx([v for v, _ in want])


class _LossRecorder(EventWriter):
    def __init__(self):
        self.seen = []

    def write(self):
        storage = get_event_storage()
        latest = storage.latest().get("total_loss")
        self.seen.append((storage.iter, None if latest is None else latest[1]))


def test_writers_see_the_losses_of_their_own_iteration():
    for background in (True, False):
        writer = _LossRecorder()
        trainer = make_trainer(
            gather_metric_period=4,
            defer_metric_read=True,
            hooks=[hooks.PeriodicWriter([writer], 4, background=background)],
        )
        trainer.train(0, 10)
        assert writer.seen == [(3, 3), (7, 7), (9, 9), (10, 9)], background


def test_flush_metrics_reads_at_once_and_a_nonfinite_loss_stops_the_save(tmp_path):
    model = ToyRegressor()
    trainer = make_trainer(
        model, data=batches(8, nan_at=6), gather_metric_period=4, defer_metric_read=True
    )
    checkpointer = Checkpointer(model, str(tmp_path), optimizer=trainer.optimizer, trainer=trainer)
    trainer.register_hooks([hooks.PeriodicCheckpointer(checkpointer, period=5)])
    # The gather at iteration 7 only starts the copy of iterations 4..7; the checkpoint at
    # iteration 9 flushes and finds the NaN of iteration 6 before saving.
    with pytest.raises(FloatingPointError, match=r"iteration=6!"):
        trainer.train(0, 20)
    assert trainer.iter == 9
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000004.pth"]


def test_deferral_is_off_by_default_on_the_cpu():
    assert make_trainer().defer_metric_read is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_deferral_is_the_default_and_reads_from_pinned_memory():
    model = ToyRegressor().cuda()
    data = ([{k: v.cuda() for k, v in sample.items()} for sample in batch] for batch in batches(8))
    copies = []
    trainer = make_trainer(model, data=data, gather_metric_period=4)
    assert trainer.defer_metric_read is True
    trainer.register_hooks(
        [
            hooks.CallbackHook(
                after_step=lambda t: copies.extend(
                    c._losses.is_pinned() for c in t.storage._deferred_puts
                )
            )
        ]
    )
    trainer.train(0, 12)
    assert copies and all(copies)
    assert _loss_iterations(trainer.storage) == list(range(12))
    assert threading.current_thread() is threading.main_thread()


def test_a_gather_puts_each_loss_at_its_iteration_when_the_loss_names_change():
    # The gather's fast path (the same losses every iteration) and its general path (a model
    # whose losses differ between iterations) put the same histories, and both name the
    # first iteration with a non-finite total.
    from engine_lib.engine.train_loop.device_metrics import DeviceMetrics

    def gather(steps):
        metrics, storage = DeviceMetrics(), EventStorage()
        for iteration, losses in enumerate(steps):
            names = tuple(sorted(losses))
            metrics.append(iteration, names, [torch.tensor(losses[n]) for n in names], 0.5)
        metrics.flush(storage)
        return {name: buf.values() for name, buf in storage.histories().items()}

    same = gather([{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}])
    assert same == {
        "total_loss": [(3.0, 0), (7.0, 1)],
        "a": [(1.0, 0), (3.0, 1)],
        "b": [(2.0, 0), (4.0, 1)],
        "data_time": [(0.5, 0), (0.5, 1)],
    }
    mixed = gather([{"a": 1.0, "b": 2.0}, {"a": 3.0}])
    assert mixed == {
        "total_loss": [(3.0, 0), (3.0, 1)],
        "a": [(1.0, 0), (3.0, 1)],
        "b": [(2.0, 0)],
        "data_time": [(0.5, 0), (0.5, 1)],
    }
    for steps in (
        [{"a": 1.0}, {"a": float("inf")}, {"a": float("nan")}],
        [{"a": 1.0, "b": 1.0}, {"a": float("inf")}, {"a": float("nan")}],
    ):
        with pytest.raises(FloatingPointError, match="iteration=1!"):
            gather(steps)
