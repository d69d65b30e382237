"""The writer registry and the MLflow / W&B tracker writers, on real (local, offline) stores."""

import glob
import json
import os
import struct
import sys

import pytest

from engine_lib.config import get_cfg
from engine_lib.engine import DefaultTrainer
from engine_lib.engine.writers import WRITER_REGISTRY, build_writers_from_config
from engine_lib.utils.errors import ConfigError
from engine_lib.utils.events import CommonMetricPrinter, JSONWriter

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

mlflow = pytest.importorskip("mlflow", reason='needs pip install -e ".[mlflow]"')
wandb = pytest.importorskip("wandb", reason='needs pip install -e ".[wandb]"')


def tiny_cfg(output_dir, max_iter, writers=("json", "mlflow", "wandb")):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "Digits", "cnn.yaml"))
    cfg.merge_from_list(
        ["OUTPUT_DIR", str(output_dir), "MODEL.BACKBONE.WIDTH", "4", "SOLVER.IMS_PER_BATCH", "16"]
        + ["SOLVER.MAX_ITER", str(max_iter), "SOLVER.WARMUP_ITERS", "1", "SOLVER.LOG_PERIOD", "2"]
        + ["SOLVER.CHECKPOINT_PERIOD", "4", "TEST.EVAL_PERIOD", "4", "WRITERS", str(writers)]
        + ["TRACKER.WANDB.MODE", "offline"]
    )
    cfg.freeze()
    return cfg


def wandb_history(output_dir):
    """{run id: [(step, {key: value})]} from the offline run files (W&B's record log)."""
    from wandb.proto import wandb_internal_pb2 as pb

    runs = {}
    for path in sorted(glob.glob(os.path.join(output_dir, "wandb", "offline-run-*", "*.wandb"))):
        data = open(path, "rb").read()
        run_id = os.path.basename(path)[len("run-") : -len(".wandb")]
        for payload in _records(data):
            rec = pb.Record()
            rec.ParseFromString(payload)
            if rec.WhichOneof("record_type") == "history":
                values = {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in rec.history.item
                }
                runs.setdefault(run_id, []).append((rec.history.step.num, values))
    return runs


def _records(data, block=32768):
    """The payloads of W&B's log file: a 7-byte header, then leveldb-style records."""
    pos, chunks = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # the rest of a block is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full, last
            yield chunks
            chunks = b""
        elif kind == 0:
            break


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """A run of 8 iterations, "killed" after its checkpoint of iteration 3 (later files
    removed), then resumed up to 12 iterations."""
    out = tmp_path_factory.mktemp("tracked")
    trainer = DefaultTrainer(tiny_cfg(out, 8))
    trainer.resume_or_load(resume=False)
    trainer.train()
    for name in ("model_final.pth", "model_0000007.pth"):
        os.remove(out / name)
    (out / "last_checkpoint").write_text("model_0000003.pth")
    resumed = DefaultTrainer(tiny_cfg(out, 12))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 4
    resumed.train()
    return out


def test_mlflow_run_read_back_with_its_client(resumed_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri="file:" + str(resumed_run / "mlruns"))
    experiment = client.get_experiment_by_name("engine_lib")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, "the resumed training continues the same MLflow run"
    run_id = runs[0].info.run_id
    loss_steps = [m.step for m in client.get_metric_history(run_id, "total_loss")]
    assert loss_steps == [1, 3, 5, 7, 9, 11], "each iteration once, at its iteration"
    top1 = client.get_metric_history(run_id, "classification/top1")
    # 8: the first run's final evaluation; the resumed run's at 7 is not logged again.
    assert [m.step for m in top1] == [3, 8, 12]
    assert all(0.0 <= m.value <= 100.0 for m in top1)
    params = runs[0].data.params
    assert params["SOLVER.MAX_ITER"] == "8" and params["MODEL.BACKBONE.NAME"] == "SmallCNN"
    assert [a.path for a in client.list_artifacts(run_id)] == ["config.yaml"]
    metrics = [json.loads(line) for line in open(resumed_run / "metrics.json")]
    json_loss = {r["iteration"]: r["total_loss"] for r in metrics if "total_loss" in r}
    mlflow_loss = {m.step: m.value for m in client.get_metric_history(run_id, "total_loss")}
    # 5 and 7 were logged by the first run, before the "crash"; the resumed run (trained to
    # 12, with another schedule) rewrote them in metrics.json only.
    assert {i: mlflow_loss[i] for i in (1, 3, 9, 11)} == pytest.approx(
        {i: json_loss[i] for i in (1, 3, 9, 11)}
    )


def test_wandb_offline_run_continues_on_resume(resumed_run):
    runs = wandb_history(str(resumed_run))
    assert len(runs) == 1, f"one W&B run id for the resumed training, got {sorted(runs)}"
    history = next(iter(runs.values()))
    steps = [step for step, values in history if "total_loss" in values]
    # The resumed part starts after the checkpoint's last written iteration (3).
    assert steps == [1, 3, 5, 7, 5, 7, 9, 11]
    assert len(glob.glob(str(resumed_run / "wandb" / "offline-run-*" / "files" / "config.yaml")))


def test_registry_names_and_errors(tmp_path, monkeypatch):
    writers = build_writers_from_config(tiny_cfg(tmp_path, 2, ("console", "json")), str(tmp_path))
    assert [type(w) for w in writers] == [CommonMetricPrinter, JSONWriter]
    with pytest.raises(ConfigError, match=r"WRITERS: .*'mlfow'.*Did you mean 'mlflow'"):
        build_writers_from_config(tiny_cfg(tmp_path, 2, ("mlfow",)), str(tmp_path))
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ConfigError) as e:
        build_writers_from_config(tiny_cfg(tmp_path, 2, ("mlflow",)), str(tmp_path))
    assert str(e.value) == (
        "WRITERS: 'mlflow' needs the mlflow package, which is not installed: "
        'pip install -e ".[mlflow]"'
    )
    assert {"console", "json", "tensorboard", "mlflow", "wandb"} <= set(WRITER_REGISTRY._obj_map)
