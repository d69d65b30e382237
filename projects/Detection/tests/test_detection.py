"""Tests of the Detection project: data, mapper, evaluator, and a short end-to-end run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(PROJECT))
sys.path.insert(0, PROJECT)

from detection import (  # noqa: E402
    SHAPE_CLASSES,
    DetectionMapper,
    VOCDetectionEvaluator,
    add_detection_config,
    load_shapes_dicts,
    render_shapes,
)

from engine_lib.config import get_cfg  # noqa: E402
from engine_lib.engine import DefaultPredictor  # noqa: E402


def _evaluate(gt, predictions, class_names=SHAPE_CLASSES):
    evaluator = VOCDetectionEvaluator(class_names=class_names)
    evaluator.reset()
    inputs = [
        {"boxes": torch.tensor(b, dtype=torch.float32), "labels": torch.tensor(c)} for b, c in gt
    ]
    outputs = [
        {
            "boxes": torch.tensor(b, dtype=torch.float32),
            "scores": torch.tensor(s),
            "labels": torch.tensor(c),
        }
        for b, s, c in predictions
    ]
    evaluator.process(inputs, outputs)
    return evaluator.evaluate()["bbox"]


def test_ap_on_hand_made_boxes():
    # Class 0: 2 ground-truth boxes. Detections by score: hit (0.9), miss (0.8, IoU 0),
    # duplicate of the first hit (0.7, a false positive), hit of the second box (0.6).
    # Precision after each: 1, 1/2, 1/3, 2/4; recall: 1/2, 1/2, 1/2, 1.
    # All-point AP = 1/2 * 1 + 1/2 * (2/4) = 0.75.
    # Class 1: one ground-truth box, one detection with IoU 0.25 < 0.5: AP 0.
    gt = [
        ([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0]),
        ([[0, 0, 10, 10]], [1]),
    ]
    predictions = [
        (
            [[0, 0, 10, 10], [40, 40, 50, 50], [1, 1, 10, 10], [20, 20, 30, 31]],
            [0.9, 0.8, 0.7, 0.6],
            [0, 0, 0, 0],
        ),
        ([[0, 0, 5, 5]], [0.95], [1]),
    ]
    results = _evaluate(gt, predictions)
    assert results["AP50-rectangle"] == pytest.approx(75.0)
    assert results["AP50-circle"] == pytest.approx(0.0)
    # Classes without ground truth (triangle) do not count in the mean.
    assert "AP50-triangle" not in results
    assert results["AP50"] == pytest.approx(37.5)


def _color_box(image, color):
    ys, xs = np.nonzero(np.all(image == np.array(color, np.uint8), axis=2))
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_boxes_lie_on_the_drawn_shapes():
    records = load_shapes_dicts(20, seed=5)
    assert records == load_shapes_dicts(20, seed=5)  # deterministic
    seen = set()
    for record in records:
        image = render_shapes(record)
        assert image.shape == (64, 64, 3)
        for box, label, color in zip(record["boxes"], record["labels"], record["colors"]):
            # Each shape's pixels (its colour) span exactly its box.
            assert _color_box(image, color) == list(box)
            seen.add(label)
    assert seen == set(range(len(SHAPE_CLASSES)))


def test_flip_flips_image_and_boxes():
    record = load_shapes_dicts(1, seed=3)[0]
    plain = DetectionMapper(is_train=False)(record)
    flipped = DetectionMapper(is_train=True, flip_prob=1.0)(record)
    assert torch.equal(flipped["image"], plain["image"].flip(-1))
    image = flipped["image"].permute(1, 2, 0).numpy()
    for box, color in zip(flipped["boxes"].tolist(), record["colors"]):
        assert _color_box(image, color) == [int(v) for v in box]
    assert flipped["labels"].tolist() == record["labels"]
    assert plain["boxes"].dtype == torch.float32 and plain["labels"].dtype == torch.long


def _shapes_cfg(tmp_path):
    cfg = get_cfg()
    add_detection_config(cfg)
    cfg.merge_from_file(os.path.join(PROJECT, "configs", "faster_rcnn_shapes.yaml"))
    cfg.OUTPUT_DIR = str(tmp_path)
    return cfg


def test_predictor_returns_boxes_on_the_given_image(tmp_path):
    torch.manual_seed(0)
    predictor = DefaultPredictor(_shapes_cfg(tmp_path))
    # Random weights: lower the score threshold so that there are boxes to compare.
    predictor.model.detector.roi_heads.score_thresh = 0.0
    image = render_shapes(load_shapes_dicts(1, seed=0, image_size=128)[0])
    out = predictor(image, format="RGB")
    assert set(out) == {"boxes", "scores", "labels"} and len(out["boxes"]) > 0
    assert out["labels"].min() >= 0 and out["labels"].max() < len(SHAPE_CLASSES)
    # The predictor resizes 128 -> 64 (INPUT.SIZE_TEST); the model maps boxes back to 128.
    small = predictor.model([{"image": predictor.mapper({"image": image})["image"]}])[0]
    assert torch.allclose(out["boxes"], small["boxes"] * 2)


def test_train_net_end_to_end(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    overrides = [
        "SOLVER.MAX_ITER",
        "4",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "SOLVER.WARMUP_ITERS",
        "2",
        "SOLVER.LOG_PERIOD",
        "2",
        "MODEL.DETECTOR.MIN_SIZE",
        "64",
        "MODEL.DETECTOR.MAX_SIZE",
        "64",
        "DATASETS.TEST",
        "('shapes_mini',)",
        "OUTPUT_DIR",
        str(tmp_path),
    ]
    config = os.path.join(PROJECT, "configs", "faster_rcnn_shapes.yaml")
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(PROJECT, "train_net.py"),
            "--config-file",
            config,
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "metrics.json") as f:
        metrics = [json.loads(line) for line in f]
    assert "loss_classifier" in metrics[0]
    final = metrics[-1]
    assert final["iteration"] == 4 and 0.0 <= final["bbox/AP50"] <= 100.0
    assert (tmp_path / "model_final.pth").is_file()
