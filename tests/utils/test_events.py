import json
import logging
import os
import sys

import pytest
import torch

from engine_lib.utils.errors import UnknownNameError
from engine_lib.utils.events import (
    CommonMetricPrinter,
    EventStorage,
    JSONWriter,
    TensorboardXWriter,
    get_event_storage,
    has_event_storage,
)
from tests.helpers import ListHandler


def _read_json_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def printed():
    """Messages of the events logger, whatever other tests did to logging's propagation."""
    logger = logging.getLogger("engine_lib.utils.events")
    handler = ListHandler()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(old_level)


# ---------------------------------------------------------------- EventStorage


def test_storage_is_current_only_inside_its_block():
    assert not has_event_storage()
    with pytest.raises(RuntimeError, match="outside an EventStorage"):
        get_event_storage()
    with EventStorage() as outer:
        assert get_event_storage() is outer
        with EventStorage() as inner:
            assert get_event_storage() is inner
        assert get_event_storage() is outer
    assert not has_event_storage()


def test_iter_start_iter_and_step():
    storage = EventStorage(start_iter=7)
    assert storage.iter == 7 and storage.start_iter == 7
    storage.step()
    storage.iter = 20
    assert storage.iter == 20 and storage.start_iter == 7
    with pytest.raises(AttributeError):
        storage.start_iter = 3


def test_put_scalar_history_latest_and_smoothing():
    storage = EventStorage()
    for i, value in enumerate([1.0, 5.0, 3.0]):
        storage.iter = i
        storage.put_scalar("loss", value)
        storage.put_scalar("lr", 0.1 * (i + 1), smoothing_hint=False)
    assert [v for v, _ in storage.history("loss").values()] == [1.0, 5.0, 3.0]
    assert storage.latest()["loss"] == (3.0, 2)
    smoothed = storage.latest_with_smoothing_hint(window_size=3)
    assert smoothed["loss"] == (3.0, 2)  # median of 1, 5, 3
    assert smoothed["lr"][0] == pytest.approx(0.3)
    assert storage.smoothing_hints() == {"loss": True, "lr": False}
    assert set(storage.histories()) == {"loss", "lr"}


def test_put_scalar_accepts_numbers_and_one_element_tensors_only():
    storage = EventStorage()
    storage.put_scalar("a", 2)
    storage.put_scalar("b", torch.tensor(1.5))
    storage.put_scalars(c=1.0, d=2.0, cur_iter=4)
    assert storage.latest()["a"] == (2.0, 0)
    assert storage.latest()["b"] == (1.5, 0)
    assert storage.latest()["d"] == (2.0, 4)
    with pytest.raises(TypeError, match="put_scalar\\('e'\\) needs a real number, got str"):
        storage.put_scalar("e", "0.5")


def test_smoothing_hint_must_stay_the_same():
    storage = EventStorage()
    storage.put_scalar("x", 1.0, smoothing_hint=True)
    with pytest.raises(ValueError, match="'x' was put with smoothing_hint=True"):
        storage.put_scalar("x", 1.0, smoothing_hint=False)


def test_put_scalar_series_equals_put_scalar_one_at_a_time():
    values = [0.3, 0.1, float("nan"), 2.5, 1e-3]
    one, series = EventStorage(), EventStorage()
    for i, v in enumerate(values):
        one.put_scalar("loss", v, cur_iter=10 + i)
    with series.name_scope("a"), one.name_scope("a"):
        series.put_scalar_series("lr", values[:2], [3, 4], smoothing_hint=False)
        one.put_scalar("lr", values[0], smoothing_hint=False, cur_iter=3)
        one.put_scalar("lr", values[1], smoothing_hint=False, cur_iter=4)
    series.put_scalar_series("loss", values[:2], [10, 11])
    series.put_scalar_series("loss", values[2:], [12, 13, 14])
    for name in ("loss", "a/lr"):
        mine, theirs = series.history(name), one.history(name)
        assert repr(mine.values()) == repr(theirs.values())  # repr: nan == nan
        assert repr(mine.global_avg()) == repr(theirs.global_avg())
    assert repr(sorted(series.latest().items())) == repr(sorted(one.latest().items()))
    assert series.smoothing_hints() == one.smoothing_hints()


def test_put_scalar_series_checks_its_input():
    storage = EventStorage()
    with pytest.raises(ValueError, match="2 values for 1 iterations"):
        storage.put_scalar_series("loss", [1.0, 2.0], [0])
    with pytest.raises(TypeError, match="python floats, got int"):
        storage.put_scalar_series("loss", [1.0, 2], [0, 1])
    storage.put_scalar("lr", 0.1, smoothing_hint=False)
    with pytest.raises(ValueError, match="smoothing_hint=False before"):
        storage.put_scalar_series("lr", [0.2], [1])


def test_history_of_unknown_metric_names_it_and_the_known_ones():
    storage = EventStorage()
    storage.put_scalars(total_loss=1.0, lr=0.1)
    with pytest.raises(UnknownNameError) as info:
        storage.history("accuracy")
    assert "'accuracy'" in str(info.value)
    assert "lr, total_loss" in str(info.value)


def test_name_scope_prefixes_and_nests():
    storage = EventStorage()
    with storage.name_scope("val"):
        storage.put_scalar("acc", 0.9)
        with storage.name_scope("top5/"):
            storage.put_scalar("acc", 0.99)
    storage.put_scalar("acc", 0.5)
    assert set(storage.latest()) == {"val/acc", "val/top5/acc", "acc"}


def test_images_and_histograms_are_queued_and_cleared():
    storage = EventStorage(start_iter=3)
    storage.put_image("img", torch.zeros(3, 4, 4))
    storage.put_histogram("weights", torch.tensor([0.0, 1.0, 1.0, 2.0]), bins=2)
    storage.put_histogram("constant", torch.ones(5), bins=4)
    assert [(name, itr) for name, _, itr in storage.images()] == [("img", 3)]
    hist = storage.histogram_data()[0]
    assert hist["tag"] == "weights" and hist["num"] == 4 and hist["global_step"] == 3
    assert hist["bucket_counts"] == [1.0, 3.0]
    assert hist["sum"] == 4.0 and hist["sum_squares"] == 6.0
    assert sum(storage.histogram_data()[1]["bucket_counts"]) == 5
    storage.clear_images()
    storage.clear_histograms()
    assert storage.images() == [] and storage.histogram_data() == []


# ---------------------------------------------------------------- JSONWriter


def test_json_writer_writes_one_object_per_iteration_only_for_updated_metrics(tmp_path):
    path = tmp_path / "metrics.json"
    writer = JSONWriter(str(path), window_size=1)
    with EventStorage() as storage:
        storage.put_scalars(loss=1.0, lr=0.1)
        writer.write()
        storage.step()
        storage.put_scalar("loss", 0.5)
        writer.write()
        writer.write()  # nothing new: no line
        storage.step()
        storage.put_scalar("acc", 0.9, cur_iter=1)  # already written iteration: skipped
    writer.close()
    assert _read_json_lines(path) == [
        {"iteration": 0, "loss": 1.0, "lr": 0.1},
        {"iteration": 1, "loss": 0.5},
    ]


def test_json_writer_never_repeats_iterations_after_a_resume(tmp_path):
    path = tmp_path / "metrics.json"
    old_lines = [json.dumps({"iteration": i, "loss": float(i)}) + "\n" for i in range(10)]
    # A crash while writing iteration 10 left half a line behind.
    path.write_text("".join(old_lines) + '{"iteration": 10, "lo')

    writer = JSONWriter(str(path))
    with EventStorage(start_iter=5) as storage:
        for _ in range(5, 8):
            storage.put_scalar("loss", 100.0, smoothing_hint=False)
            writer.write()
            storage.step()
    writer.close()

    records = _read_json_lines(path)  # every line parses: the truncated one is gone
    assert [r["iteration"] for r in records] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert [r["loss"] for r in records[:5]] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert all(r["loss"] == 100.0 for r in records[5:])
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temporary file left behind


def test_json_writer_starting_at_zero_replaces_an_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"iteration": 0, "loss": 9.0}\n{"iteration": 1, "loss": 9.0}\n')
    writer = JSONWriter(str(path))
    with EventStorage() as storage:
        storage.put_scalar("loss", 1.0)
        writer.write()
    writer.close()
    assert _read_json_lines(path) == [{"iteration": 0, "loss": 1.0}]


def test_json_writer_leaves_an_intact_file_alone(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"iteration": 0, "loss": 9.0}\n')
    before = os.stat(path).st_ino
    writer = JSONWriter(str(path))
    with EventStorage(start_iter=1) as storage:
        storage.put_scalar("loss", 1.0)
        writer.write()
    writer.close()
    assert os.stat(path).st_ino == before  # appended, not replaced
    assert _read_json_lines(path) == [{"iteration": 0, "loss": 9.0}, {"iteration": 1, "loss": 1.0}]


def test_json_writer_trims_only_once_per_writer(tmp_path):
    path = tmp_path / "metrics.json"
    writer = JSONWriter(str(path))
    with EventStorage(start_iter=2) as storage:
        storage.put_scalar("loss", 1.0)
        writer.write()
        writer.close()  # e.g. PeriodicWriter closes after the last write
        storage.step()
        storage.put_scalar("loss", 2.0)
        writer.write()
    writer.close()
    assert [r["iteration"] for r in _read_json_lines(path)] == [2, 3]


# ---------------------------------------------------------------- TensorboardXWriter


def test_tensorboard_writer_writes_scalars_images_histograms(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = TensorboardXWriter(str(tmp_path), window_size=1)
    with EventStorage() as storage:
        for _ in range(2):
            storage.put_scalar("loss", 1.0 + storage.iter)
            storage.step()
        storage.put_image("sample", torch.rand(3, 8, 8))
        storage.put_histogram("weights", torch.randn(100), bins=10)
        writer.write()
        assert storage.images() == [] and storage.histogram_data() == []
    writer.close()

    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    assert "loss" in tags["scalars"]
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 2.0)]
    assert "sample" in tags["images"]
    assert "weights" in tags["histograms"]


def test_tensorboard_writer_puts_each_scalar_under_its_tag_at_its_iteration(tmp_path):
    # The scalars of an iteration go out as one event of several values.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = TensorboardXWriter(str(tmp_path), window_size=1)
    with EventStorage() as storage:
        for _ in range(2):
            for _ in range(3):
                storage.put_scalar("loss", 1.0 + storage.iter)
                storage.put_scalar("lr", 0.5 * storage.iter, smoothing_hint=False)
                storage.step()
            writer.write()
    writer.close()

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(2, 3.0), (5, 6.0)]
    assert [(e.step, e.value) for e in events.Scalars("lr")] == [(2, 1.0), (5, 2.5)]


def test_tensorboard_writer_writes_its_records_on_the_calling_thread(tmp_path):
    # tensorboard's own writer thread contends for the GIL with the training loop: the
    # records are written where write() runs, and are on disk when it returns.
    import threading

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    before = set(threading.enumerate())
    writer = TensorboardXWriter(str(tmp_path), window_size=1)
    with EventStorage() as storage:
        storage.put_scalar("loss", 3.0)
        storage.step()
        writer.write()
        assert set(threading.enumerate()) - before == set()
        events = EventAccumulator(str(tmp_path))
        events.Reload()
        assert [(e.step, e.value) for e in events.Scalars("loss")] == [(0, 3.0)]
    writer.close()


def test_tensorboard_writer_names_the_package_when_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        TensorboardXWriter(str(tmp_path))


# ---------------------------------------------------------------- CommonMetricPrinter


def test_printer_reports_eta_iteration_losses_times_and_lr(printed):
    printer = CommonMetricPrinter(max_iter=101, window_size=20)
    with EventStorage() as storage:
        storage.iter = 0
        for _ in range(10):
            storage.put_scalars(total_loss=0.75, loss_cls=0.5, accuracy=0.9)
            storage.put_scalar("time", 2.0)
            storage.put_scalar("data_time", 0.25)
            storage.put_scalar("lr", 0.02, smoothing_hint=False)
        printer.write()
        line = printed[-1]
        assert "eta: 0:03:20" in line  # 100 iterations left at 2 s each
        assert "iter: 0" in line
        assert "total_loss: 0.75" in line and "loss_cls: 0.5" in line
        assert "accuracy" not in line
        assert "time: 2.0000" in line and "data_time: 0.2500" in line
        assert "lr: 0.02" in line
        assert storage.latest()["eta_seconds"] == (200.0, 0)


def test_printer_without_time_or_lr_guesses_eta_from_wall_clock(printed):
    printer = CommonMetricPrinter(max_iter=1000)
    with EventStorage() as storage:
        storage.put_scalar("loss", 1.0)
        printer.write()
        assert "eta" not in printed[-1] and "lr" not in printed[-1]
        assert "loss: 1" in printed[-1]
        storage.iter = 10
        printer.write()
        assert "eta: " in printed[-1] and "iter: 10" in printed[-1]


def test_printer_without_max_iter_has_no_eta(printed):
    with EventStorage() as storage:
        storage.put_scalar("time", 1.0)
        CommonMetricPrinter().write()
    assert "eta" not in printed[-1] and "time: 1.0000" in printed[-1]


def test_printer_is_silent_once_training_finished(printed):
    with EventStorage() as storage:
        storage.put_scalar("loss", 1.0)
        storage.iter = 50
        CommonMetricPrinter(max_iter=50).write()
    assert printed == []


def test_history_windows_match_numpy():
    import numpy as np

    values = [float(v) for v in torch.randn(57, generator=torch.Generator().manual_seed(0))]
    with EventStorage() as storage:
        for v in values:
            storage.put_scalar("x", v)
            storage.step()
        history = storage.history("x")
    for window in (1, 2, 20, 57, 1000):
        assert history.median(window) == pytest.approx(np.median(values[-window:]))
        assert history.avg(window) == pytest.approx(np.mean(values[-window:]))


def test_printer_eta_is_robust_to_one_slow_window(printed):
    printer = CommonMetricPrinter(max_iter=1001, window_size=20)
    with EventStorage() as storage:
        for write, seconds in enumerate([1.0, 1.0, 50.0, 1.0]):
            for _ in range(20):
                storage.put_scalar("time", seconds)
            storage.iter = 20 * write
            printer.write()
        # The median of the windows' medians: the slow window (e.g. an evaluation pause
        # counted in one step) does not move the estimate.
        assert storage.latest()["eta_seconds"][0] == pytest.approx(1.0 * (1001 - 60 - 1))


# ---------------------------------------------------------------- windows, helpers, background


def test_count_samples_counts_values_in_the_last_iterations():
    with EventStorage() as storage:
        for k in range(20):
            storage.put_scalar("every", k, cur_iter=k)
            if (k + 1) % 2 == 0:
                storage.put_scalar("second", k, cur_iter=k)
            if (k + 1) % 5 == 0:
                storage.put_scalar("fifth", k, cur_iter=k)
        counts = {n: storage.count_samples(n, 10) for n in ("every", "second", "fifth")}
        assert counts == {"every": 10, "second": 5, "fifth": 2}
        assert storage.count_samples("every", 100) == 20
        # Smoothed values are medians over the same iterations, however often they were put.
        latest = storage.latest_with_smoothing_hint(10)
        assert latest["every"] == (14.5, 19) and latest["second"] == (15, 19)
        assert latest["fifth"] == (16.5, 19)


def test_scalars_since_last_write_reports_each_iteration_once():
    from engine_lib.utils.events import ScalarsSinceLastWrite

    new = ScalarsSinceLastWrite(window_size=1)
    with EventStorage() as storage:
        storage.put_scalar("a", 1.0, cur_iter=0)
        storage.put_scalar("b", 2.0, smoothing_hint=False, cur_iter=1)
        assert new.take(storage) == {0: {"a": 1.0}, 1: {"b": 2.0}}
        assert new.take(storage) == {}
        storage.put_scalar("a", 3.0, cur_iter=5)
        storage.put_scalar("late", 4.0, cur_iter=1)  # at an iteration already written
        assert new.take(storage) == {5: {"a": 3.0}} and new.last_write == 5


def test_background_runner_runs_in_order_and_reraises_on_the_caller():
    from engine_lib.utils.events import BackgroundRunner

    runner = BackgroundRunner()
    done = []

    def fail():
        raise FloatingPointError("boom")

    for i in range(5):
        runner.submit(done.append, i)
    runner.submit(fail)
    runner.submit(done.append, 5)
    with pytest.raises(FloatingPointError, match="boom"):
        runner.wait()
    assert done == list(range(6))
    runner.wait()  # the error was reported once
    runner.close()


def test_printer_shows_metric_scalars_and_has_a_logger(printed):
    with EventStorage() as storage:
        for _ in range(2):
            storage.put_scalar("time", 1.0)
            storage.put_scalar("[metric]bn_stat1", 1.0)
            storage.put_scalar("[metric]bn_stat2", 2.0, smoothing_hint=False)
            storage.put_scalar("accuracy", 0.5)
            storage.step()
        printer = CommonMetricPrinter(10)
        assert printer.logger.name.startswith("engine_lib.utils.events")
        printer.write()
    assert "[metric]bn_stat1: 1" in printed[-1] and "[metric]bn_stat2: 2" in printed[-1]
    assert "accuracy" not in printed[-1]


def test_latest_with_smoothing_hint_is_reused_only_until_the_next_put():
    with EventStorage() as storage:
        storage.put_scalar("loss", 1.0)
        storage.put_scalar("lr", 0.1, smoothing_hint=False)
        first = storage.latest_with_smoothing_hint(20)
        first["loss"] = (99.0, 0)  # the caller's copy: the storage's answer stays
        assert storage.latest_with_smoothing_hint(20) == {"loss": (1.0, 0), "lr": (0.1, 0)}
        storage.step()
        storage.put_scalar("loss", 3.0)
        assert storage.latest_with_smoothing_hint(20) == {"loss": (2.0, 1), "lr": (0.1, 0)}
        assert storage.latest_with_smoothing_hint(1) == {"loss": (3.0, 1), "lr": (0.1, 0)}
        storage.put_scalar_series("loss", [5.0, 7.0], [2, 3])
        assert storage.latest_with_smoothing_hint(2)["loss"] == (6.0, 3)
        assert storage.snapshot().latest_with_smoothing_hint(2)["loss"] == (6.0, 3)


@pytest.mark.parametrize("c_crc", [True, False], ids=["google-crc32c", "tensorboard-crc"])
def test_tensorboard_records_are_framed_as_tensorboard_frames_them(monkeypatch, c_crc):
    # The records written on the calling thread carry tensorboard's framing byte for byte:
    # length, masked CRC-32C of the length, the event, masked CRC-32C of the event. With
    # google-crc32c's C extension the checksums are computed there, else by tensorboard.
    import io

    from tensorboard.summary.writer.record_writer import RecordWriter

    from engine_lib.utils.events.writers import _InlineRecords

    if c_crc:
        pytest.importorskip("google_crc32c")
    else:
        monkeypatch.setitem(sys.modules, "google_crc32c", None)
    payloads = [b"", b"x", bytes(range(256)) * 5, b"\x00\xff" * 61]
    expected, got = io.BytesIO(), io.BytesIO()
    reference = RecordWriter(expected)
    for data in payloads:
        reference.write(data)
    records = _InlineRecords(RecordWriter(got))
    assert (records._crc32c is not None) == c_crc
    for data in payloads:
        records.write(data)
    assert got.getvalue() == expected.getvalue()
    assert len(got.getvalue()) == sum(len(d) + 16 for d in payloads)


def test_tensorboard_records_go_through_a_record_writer_without_a_file_attribute():
    # A tensorboard whose RecordWriter keeps its file elsewhere frames its own records.
    from engine_lib.utils.events.writers import _InlineRecords

    class RecordWriter:
        def __init__(self):
            self.records = []

        def write(self, data):
            self.records.append(data)

        def flush(self):
            pass

    inner = RecordWriter()
    records = _InlineRecords(inner)
    records.write(b"event")
    assert records._crc32c is None
    assert inner.records == [b"event"]
