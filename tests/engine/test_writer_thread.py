"""PeriodicWriter's background writes: snapshots, order, flushes, errors; which writers
write where."""

import json
import threading
import time

import pytest
import torch

from engine_lib.engine import hooks
from engine_lib.utils.events import EventStorage, EventWriter, JSONWriter, get_event_storage

from ._toy_training import make_trainer


class _SnapshotRecorder(EventWriter):
    """Records, per write, the thread, the iteration and the latest scalars it saw."""

    def __init__(self, gate: threading.Event = None):
        self.gate = gate
        self.seen = []
        self.closed = False

    def write(self):
        if self.gate is not None:
            self.gate.wait(timeout=30)
        storage = get_event_storage()
        latest = {name: itr for name, (_, itr) in storage.latest().items()}
        self.seen.append((threading.current_thread().name, storage.iter, latest))

    def close(self):
        self.closed = True


def test_snapshot_is_a_copy_at_its_iteration():
    with EventStorage(start_iter=5) as storage:
        for _ in range(30):
            storage.put_scalar("loss", float(storage.iter))
            storage.put_image("img", torch.zeros(1, 2, 2))
            storage.step()
        snap = storage.snapshot(history_length=10)
        storage.put_scalar("loss", 99.0)
        storage.put_scalar("late", 1.0)
        assert snap.iter == 35 and snap.start_iter == 5
        assert snap.latest() == {"loss": (34.0, 34)}
        assert [v for v, _ in snap.history("loss").values()] == [float(i) for i in range(25, 35)]
        assert snap.history("loss").global_avg() == pytest.approx(19.5)
        # The images moved to the snapshot; the live storage queues only new ones.
        assert len(snap.images()) == 30 and storage.images() == []
        with snap.bound_to_this_thread():
            assert get_event_storage() is snap
            seen = []
            t = threading.Thread(target=lambda: seen.append(get_event_storage()))
            t.start()
            t.join()
            assert seen == [storage]  # other threads still see the live storage
        assert get_event_storage() is storage


def test_writes_run_in_order_on_a_thread_each_with_its_own_snapshot():
    gate = threading.Event()
    writer = _SnapshotRecorder(gate)
    trainer = make_trainer(
        gather_metric_period=3, hooks=[hooks.PeriodicWriter([writer], 3, background=True)]
    )
    # The writer blocks until the training is over: every write must still see the storage
    # as it was at its own iteration, not the live one.
    threading.Timer(0.5, gate.set).start()
    trainer.train(0, 10)
    assert writer.closed
    assert [itr for _, itr, _ in writer.seen] == [2, 5, 8, 9, 10]
    for _, itr, latest in writer.seen:
        assert latest["total_loss"] == min(itr, 9)
    assert {name for name, _, _ in writer.seen} != {threading.current_thread().name}


def test_metrics_json_is_the_same_with_and_without_the_thread(tmp_path):
    def run(background):
        path = tmp_path / f"{background}.json"
        writer = JSONWriter(str(path))
        trainer = make_trainer(
            gather_metric_period=4, hooks=[hooks.PeriodicWriter([writer], 4, background=background)]
        )
        trainer.train(0, 13)
        records = [json.loads(line) for line in path.read_text().splitlines()]
        for record in records:
            record.pop("data_time")  # a measured time: it differs between runs
        return records

    threaded = run(True)
    assert threaded == run(False)
    assert [r["iteration"] for r in threaded] == [3, 7, 11, 12]


def test_flush_metrics_waits_for_queued_writes():
    writer = _SnapshotRecorder()
    slow_write = writer.write
    writer.write = lambda: (time.sleep(0.2), slow_write())
    done_at_flush = []

    def flush_then_look(trainer):
        if trainer.iter == 7:
            # The write queued at this iteration is still running (it takes 0.2 s).
            trainer.flush_metrics()  # what a checkpointer or an evaluation does first
            done_at_flush.append([itr for _, itr, _ in writer.seen])

    trainer = make_trainer(
        gather_metric_period=2,
        hooks=[
            hooks.PeriodicWriter([writer], 2, background=True),
            hooks.CallbackHook(after_step=flush_then_look),
        ],
    )
    trainer.train(0, 9)
    assert done_at_flush == [[1, 3, 5, 7]]


class _Broken(EventWriter):
    def __init__(self):
        self.calls = 0

    def write(self):
        self.calls += 1
        if self.calls == 2:
            raise OSError("disk full")


def test_a_writer_error_is_raised_in_the_training_thread():
    writer = _Broken()
    steps = []
    trainer = make_trainer(
        gather_metric_period=2,
        hooks=[
            hooks.PeriodicWriter([writer], 2, background=True),
            hooks.CallbackHook(after_step=lambda t: steps.append(t.iter)),
        ],
    )
    with pytest.raises(OSError, match="disk full") as info:
        trainer.train(0, 50)
    assert "_Broken.write() at iteration 3" in "".join(info.value.__notes__)
    # Raised at a later write or flush, never more than one period after the failing write.
    assert steps[-1] <= 5


def test_writes_queued_before_an_exception_are_written(tmp_path):
    class Failing(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 1)
            self.calls = 0

        def forward(self, batch):
            self.calls += 1
            if self.calls > 6:
                raise RuntimeError("boom")
            return {"loss": self.linear(torch.ones(1, 2)).sum()}

    path = tmp_path / "metrics.json"
    trainer = make_trainer(
        Failing(), gather_metric_period=2, hooks=[hooks.PeriodicWriter([JSONWriter(str(path))], 2)]
    )
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train(0, 20)
    iterations = [json.loads(line)["iteration"] for line in path.read_text().splitlines()]
    assert iterations == [1, 3, 5]


class _SlowTracker(_SnapshotRecorder):
    background = True  # as the experiment trackers declare


def test_auto_writes_local_writers_inline_and_trackers_on_the_thread():
    local, tracker = _SnapshotRecorder(), _SlowTracker()
    trainer = make_trainer(
        gather_metric_period=3, hooks=[hooks.PeriodicWriter([local, tracker], 3)]
    )
    trainer.train(0, 7)
    here = threading.current_thread().name
    assert [itr for _, itr, _ in local.seen] == [2, 5, 6, 7]
    assert {name for name, _, _ in local.seen} == {here}
    assert [itr for _, itr, _ in tracker.seen] == [2, 5, 6, 7]
    assert here not in {name for name, _, _ in tracker.seen}
    assert local.closed and tracker.closed


def test_auto_writes_on_the_thread_when_the_losses_are_read_one_period_late():
    # What SimpleTrainer does on CUDA: an inline write would wait for the loss copy.
    local = _SnapshotRecorder()
    trainer = make_trainer(gather_metric_period=3, hooks=[hooks.PeriodicWriter([local], 3)])
    trainer.defer_metric_read = True
    trainer.train(0, 4)
    assert threading.current_thread().name not in {name for name, _, _ in local.seen}
    assert [itr for _, itr, _ in local.seen] == [2, 3, 4]


def test_the_default_writers_write_inline_and_the_trackers_declare_the_thread():
    from engine_lib.engine.writers.tracker import TrackerWriter
    from engine_lib.utils.events import CommonMetricPrinter, TensorboardXWriter

    assert TrackerWriter.background is True
    for cls in (CommonMetricPrinter, JSONWriter, TensorboardXWriter):
        assert cls.background is False, cls


def test_background_must_be_auto_true_or_false():
    with pytest.raises(ValueError, match="'auto', True or False, got 'yes'"):
        hooks.PeriodicWriter([], 3, background="yes")
