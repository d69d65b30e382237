"""detectron2's documented EventStorage / writer behaviour (from its tests/test_events.py)."""

import json
import os
import tempfile
import unittest

import torch

from engine_lib.utils.events import CommonMetricPrinter, EventStorage, JSONWriter

_EVENTS_LOGGER = "engine_lib.utils.events"  # detectron2: "detectron2.utils.events"


def _write_json(put, n=60, period=20, **writer_kwargs):
    with tempfile.TemporaryDirectory(prefix="parity") as d, EventStorage() as storage:
        json_file = os.path.join(d, "test.json")
        writer = JSONWriter(json_file, **writer_kwargs)
        for k in range(n):
            put(storage, k)
            if (k + 1) % period == 0:
                writer.write()
            storage.step()
        writer.close()
        with open(json_file) as f:
            return storage, [json.loads(line) for line in f]


def test_scalar():
    _, data = _write_json(lambda s, k: s.put_scalar("key", k, smoothing_hint=False))
    assert [int(k["key"]) for k in data] == [19, 39, 59]


def test_scalar_mismatched_period():
    def put(storage, k):
        if k % 17 == 0:  # put in a different period
            storage.put_scalar("key2", k, smoothing_hint=False)
        storage.put_scalar("key", k, smoothing_hint=False)

    _, data = _write_json(put)
    assert [int(k.get("key2", 0)) for k in data] == [17, 0, 34, 0, 51, 0]
    assert [int(k.get("key", 0)) for k in data] == [0, 19, 0, 39, 0, 59]
    assert [int(k["iteration"]) for k in data] == [17, 19, 34, 39, 51, 59]


def test_smoothing_with_window_size():
    def put(storage, k):
        storage.put_scalar("key1", k, smoothing_hint=True)
        if (k + 1) % 2 == 0:
            storage.put_scalar("key2", k, smoothing_hint=True)
        if (k + 1) % 5 == 0:
            storage.put_scalar("key3", k, smoothing_hint=True)

    storage, data = _write_json(put, n=20, period=10, window_size=10)
    num_samples = {k: storage.count_samples(k, 10) for k in ["key1", "key2", "key3"]}
    assert num_samples == {"key1": 10, "key2": 5, "key3": 2}
    assert [k["key1"] for k in data] == [4.5, 14.5]
    assert [k["key2"] for k in data] == [5, 15]
    assert [k["key3"] for k in data] == [6.5, 16.5]


def test_print_eta_and_non_losses():
    with EventStorage() as s:
        p1 = CommonMetricPrinter(10)
        p2 = CommonMetricPrinter()
        for _ in range(2):
            s.put_scalar("time", 1.0)
            s.put_scalar("[metric]bn_stat1", 1.0)
            s.put_scalar("[metric]bn_stat2", 2.0, smoothing_hint=False)
            s.step()
        case = unittest.TestCase()
        with case.assertLogs(_EVENTS_LOGGER) as logs:
            p1.write()
        assert "eta" in logs.output[0]
        assert "[metric]bn_stat1" in logs.output[0] and "[metric]bn_stat2" in logs.output[0]
        with case.assertLogs(_EVENTS_LOGGER) as logs:
            p2.write()
        assert "eta" not in logs.output[0]
        assert "[metric]bn_stat1" in logs.output[0] and "[metric]bn_stat2" in logs.output[0]


def test_storage_api():
    with EventStorage(start_iter=5) as storage:
        assert storage.iter == 5
        with storage.name_scope("val"):
            storage.put_scalars(acc=0.5, smoothing_hint=False, cur_iter=3)
        storage.put_scalar("loss", 1.0)
        assert storage.latest() == {"val/acc": (0.5, 3), "loss": (1.0, 5)}
        assert storage.smoothing_hints() == {"val/acc": False, "loss": True}
        assert set(storage.histories()) == {"val/acc", "loss"}
        assert storage.latest_with_smoothing_hint(20)["loss"] == (1.0, 5)
        storage.put_image("img", torch.zeros(3, 2, 2))
        storage.put_histogram("h", torch.arange(4.0), bins=2)
        storage.clear_images()
        storage.clear_histograms()
        assert storage.images() == [] and storage.histogram_data() == []
