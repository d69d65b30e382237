"""The ImageClassification project end to end: train_net.py on a tiny generated ImageFolder."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(PROJECT))
CONFIGS = os.path.join(PROJECT, "configs")
sys.path.insert(0, PROJECT)

from image_classification import (  # noqa: E402
    add_image_classification_config,
    make_synthetic_image_folder,
    register_datasets,
)

from engine_lib.config import get_cfg  # noqa: E402
from engine_lib.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from engine_lib.utils.errors import ConfigError  # noqa: E402

MAX_ITER = 6


def load_cfg(name, *opts):
    cfg = get_cfg()
    add_image_classification_config(cfg)
    cfg.merge_from_file(os.path.join(CONFIGS, name))
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.fixture(autouse=True)
def unregister():
    """Forget the project's data sets after each test, so no test sees another's roots."""
    yield
    for name in ("image_folder_train", "image_folder_val", "cifar10_train", "cifar10_test"):
        if name in DatasetCatalog:
            DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three classes, 8 training and 4 validation images each, 6 iterations of ResNet-18."""
    data = tmp_path_factory.mktemp("stripes")
    make_synthetic_image_folder(str(data), num_classes=3, train_per_class=8, val_per_class=4)
    out = tmp_path_factory.mktemp("out")
    opts = {
        "DATASETS.IMAGE_FOLDER.ROOT": data,
        "MODEL.HEADS.NUM_CLASSES": 3,
        "MODEL.FREEZE_ITERS": 3,
        "SOLVER.MAX_ITER": MAX_ITER,
        "SOLVER.IMS_PER_BATCH": 8,
        "SOLVER.WARMUP_ITERS": 2,
        "SOLVER.LOG_PERIOD": 2,
        "SOLVER.CHECKPOINT_PERIOD": 100,
        "TEST.EVAL_PERIOD": 0,
        "TEST.IMS_PER_BATCH": 12,
        "OUTPUT_DIR": out,
    }
    proc = subprocess.run(
        [sys.executable, os.path.join(PROJECT, "train_net.py"), "--config-file"]
        + [os.path.join(CONFIGS, "resnet18_imagefolder.yaml")]
        + [str(x) for kv in opts.items() for x in kv],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1"),
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_trains_and_evaluates(trained):
    with open(trained / "metrics.json") as f:
        metrics = [json.loads(line) for line in f]
    final = metrics[-1]
    assert final["iteration"] == MAX_ITER
    assert 0.0 <= final["classification/top1"] <= 100.0
    log = (trained / "log.txt").read_text()
    assert "LayerFreeze: froze" in log and "unfroze" in log
    assert "Registered image_folder_train" in log and "Final results" in log


def test_checkpoint_shows_the_configured_features(trained):
    ckpt = torch.load(trained / "model_final.pth", map_location="cpu", weights_only=True)
    assert any(k.startswith("backbone.layer4.") for k in ckpt["model"])  # torchvision ResNet
    # The head's parameter groups learn 10x faster than the backbone's.
    lrs = sorted({group["lr"] for group in ckpt["optimizer"]["param_groups"]})
    assert lrs[-1] == pytest.approx(10 * lrs[0])
    hooks = ckpt["trainer"]["hooks"]
    assert hooks["LayerFreeze"]["frozen_iters"] == 3
    assert hooks["EMA"]["num_updates"] == MAX_ITER
    average, weight = (
        hooks["EMA"]["weights"]["head.linear.weight"],
        ckpt["model"]["head.linear.weight"],
    )
    assert not torch.allclose(average, weight)


def test_register_datasets_checks_roots_and_classes(tmp_path):
    make_synthetic_image_folder(str(tmp_path), num_classes=2, train_per_class=1, val_per_class=1)
    with pytest.raises(ConfigError, match="NUM_CLASSES"):
        register_datasets(
            load_cfg("resnet18_imagefolder.yaml", "DATASETS.IMAGE_FOLDER.ROOT", str(tmp_path))
        )
    with pytest.raises(ConfigError, match="DATASETS.CIFAR10.ROOT is empty"):
        register_datasets(load_cfg("resnet18_cifar10.yaml", "DATASETS.CIFAR10.ROOT", ""))


def test_cifar10_config_registers_a_local_folder(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 2) for i in range(1, 6)] + [("test_batch", 3)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [0] * n}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(meta))
    cfg = load_cfg("resnet18_cifar10.yaml", "DATASETS.CIFAR10.ROOT", str(tmp_path))
    assert (cfg.MODEL.DEVICE, cfg.SOLVER.AMP.DTYPE) == ("cuda", "float16")
    register_datasets(cfg)
    assert len(DatasetCatalog.get("cifar10_train")) == 10
    assert len(DatasetCatalog.get("cifar10_test")) == 3
