"""Tests of the MetricLearning project: triplet loss, retrieval metrics, end-to-end training."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(PROJECT))
# The project is not installed: its package sits next to train_net.py.
sys.path.insert(0, PROJECT)

from metric_learning import (  # noqa: E402
    DIGITS_REID_NAMES,
    RetrievalEvaluator,
    add_metric_learning_config,
    load_digits_query_gallery,
    register_digits_query_gallery,
    retrieval_metrics,
    triplet_loss_hard_mining,
)

from engine_lib.config import get_cfg  # noqa: E402
from engine_lib.data import build_train_loader  # noqa: E402
from engine_lib.engine import DefaultPredictor, launch  # noqa: E402
from engine_lib.evaluation import inference_on_dataset  # noqa: E402
from engine_lib.utils.errors import ConfigError  # noqa: E402

CONFIG = os.path.join(PROJECT, "configs", "digits_triplet.yaml")

# 1-D embeddings: pairwise distances d01=1, d02=3, d03=4.5, d12=2, d13=3.5, d23=1.5.
POINTS = torch.tensor([[0.0], [1.0], [3.0], [4.5]])
IDS = torch.tensor([0, 0, 1, 1])
# Hardest positive minus hardest negative per anchor: 1-3, 1-2, 1.5-2, 1.5-3.5.
GAPS = [-2.0, -1.0, -0.5, -2.0]


def test_triplet_loss_uses_hardest_positive_and_negative():
    # margin 2: relu(gap + 2) = 0, 1, 1.5, 0 -> 0.625 (batch-all would average all triplets).
    loss = triplet_loss_hard_mining(POINTS, IDS, margin=2.0)
    assert loss.item() == pytest.approx(0.625, abs=1e-5)
    soft = triplet_loss_hard_mining(POINTS, IDS, margin=0.0)
    expected = sum(math.log1p(math.exp(g)) for g in GAPS) / 4
    assert soft.item() == pytest.approx(expected, abs=1e-5)
    # Normalized 2-D points on a circle: distances are chords, 2 sin(angle / 2).
    angles = torch.tensor([0.0, 0.5, 2.0, 2.6])
    circle = torch.stack([angles.cos(), angles.sin()], dim=1) * torch.tensor(
        [[1.0], [3.0], [2.0], [5.0]]
    )
    chord = lambda a: 2 * math.sin(a / 2)  # noqa: E731
    gaps = [
        chord(0.5) - chord(2.0),
        chord(0.5) - chord(1.5),
        chord(0.6) - chord(1.5),
        chord(0.6) - chord(2.1),
    ]
    normalized = triplet_loss_hard_mining(circle, IDS, margin=1.0, normalize=True)
    assert normalized.item() == pytest.approx(sum(max(g + 1.0, 0) for g in gaps) / 4, abs=1e-5)
    with pytest.raises(ValueError, match="margin"):
        triplet_loss_hard_mining(POINTS, IDS, margin=-1.0)


def test_triplet_loss_gradients_stay_finite_for_identical_embeddings():
    x = torch.ones(4, 3, requires_grad=True)
    triplet_loss_hard_mining(x, torch.tensor([0, 0, 1, 2]), margin=0.3).backward()
    assert torch.isfinite(x.grad).all()


def _unit(degrees, norm=1.0):
    radians = math.radians(degrees)
    return [norm * math.cos(radians), norm * math.sin(radians)]


# Gallery at 10, 20, 50 and 80 degrees with identities 1, 0, 0, 1 (norms vary: cosine
# ignores them). The query at 0 degrees (identity 0) ranks it [1, 0, 0, 1]:
# Rank-1 miss, AP = (1/2 + 2/3) / 2 = 7/12. The query at 90 degrees (identity 1) ranks it
# [3, 2, 1, 0] -> matches [1, 0, 0, 1]: Rank-1 hit, AP = (1 + 2/4) / 2 = 3/4.
# A query of identity 7 has no match and is left out.
GALLERY = torch.tensor([_unit(10, 2.0), _unit(20), _unit(50, 0.5), _unit(80, 3.0)])
GALLERY_IDS = torch.tensor([1, 0, 0, 1])
QUERY = torch.tensor([_unit(0), _unit(90, 4.0), _unit(45)])
QUERY_IDS = torch.tensor([0, 1, 7])
EXPECTED = {"Rank-1": 50.0, "Rank-2": 100.0, "mAP": 100.0 * (7 / 12 + 3 / 4) / 2}


def test_retrieval_metrics_on_hand_made_embeddings():
    metrics = retrieval_metrics(QUERY, QUERY_IDS, GALLERY, GALLERY_IDS, topk=(1, 2))
    assert metrics == pytest.approx(EXPECTED)
    assert retrieval_metrics(QUERY[2:], QUERY_IDS[2:], GALLERY, GALLERY_IDS) == {}


def _samples():
    items = [(q, int(i), True) for q, i in zip(QUERY, QUERY_IDS)]
    items += [(g, int(i), False) for g, i in zip(GALLERY, GALLERY_IDS)]
    return [{"embedding": e, "label": label, "query": is_query} for e, label, is_query in items]


def _echo_embeddings(inputs):
    return [{"embedding": x["embedding"]} for x in inputs]


def test_evaluator_splits_query_and_gallery():
    samples = _samples()
    evaluator = RetrievalEvaluator("hand", topk=(1, 2))
    loader = [samples[i : i + 3] for i in range(0, len(samples), 3)]
    results = inference_on_dataset(_echo_embeddings, loader, evaluator)
    assert results["retrieval"] == pytest.approx(EXPECTED)
    with pytest.raises(KeyError, match="query"):
        evaluator.process([{"label": 0}], [{"embedding": torch.zeros(2)}])


def _distributed_worker(samples, out_dir):
    from engine_lib.utils import comm

    rank = comm.get_rank()
    shard = samples[:4] if rank == 0 else samples[4:]
    results = inference_on_dataset(
        _echo_embeddings, [shard], RetrievalEvaluator("dist", topk=(1, 2))
    )
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)


def test_evaluator_gathers_embeddings_of_all_ranks(tmp_path):
    launch(_distributed_worker, 2, args=(_samples(), str(tmp_path)), backend="gloo")
    assert json.loads((tmp_path / "rank0.json").read_text())["retrieval"] == pytest.approx(EXPECTED)
    assert json.loads((tmp_path / "rank1.json").read_text()) == {}


def _cfg(*opts):
    cfg = get_cfg()
    add_metric_learning_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(list(opts))
    return cfg


def test_identity_sampler_from_config_gives_p_by_k_batches():
    batch = next(
        iter(build_train_loader(_cfg("SOLVER.IMS_PER_BATCH", "16", "DATALOADER.NUM_INSTANCE", "4")))
    )
    labels = [d["label"] for d in batch]
    assert sorted(labels.count(label) for label in set(labels)) == [4, 4, 4, 4]


def test_query_gallery_split_is_disjoint_and_complete():
    from engine_lib.data import DatasetCatalog, MetadataCatalog

    register_digits_query_gallery(3)
    try:
        query, gallery = DatasetCatalog.get("digits_query"), DatasetCatalog.get("digits_gallery")
        both = DatasetCatalog.get("digits_query_gallery")
    finally:
        for name in DIGITS_REID_NAMES:
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    assert len(query) == 30 and len(query) + len(gallery) == 360
    assert {d["image_id"] for d in query}.isdisjoint(d["image_id"] for d in gallery)
    assert all(d["query"] for d in query) and not any(d["query"] for d in gallery)
    assert [d["image_id"] for d in both] == [d["image_id"] for d in query + gallery]
    with pytest.raises(ConfigError, match="NUM_QUERY_PER_ID"):
        load_digits_query_gallery(0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("metric_learning")
    opts = [
        "SOLVER.MAX_ITER",
        "20",
        "SOLVER.WARMUP_ITERS",
        "5",
        "SOLVER.LOG_PERIOD",
        "10",
        "SOLVER.CHECKPOINT_PERIOD",
        "20",
        "TEST.EVAL_PERIOD",
        "10",
        "OUTPUT_DIR",
        str(out),
    ]
    proc = subprocess.run(
        [sys.executable, os.path.join(PROJECT, "train_net.py"), "--config-file", CONFIG, *opts],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1"),
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_train_net_writes_losses_and_retrieval_metrics(trained):
    with open(trained / "metrics.json") as f:
        metrics = [json.loads(line) for line in f]
    assert all("loss_triplet" in m and "loss_cls" in m for m in metrics if m["iteration"] < 20)
    evaluations = [m for m in metrics if "retrieval/mAP" in m]
    # One evaluation at iteration 10, and the final one.
    assert len(evaluations) == 2
    for m in evaluations:
        for key in ("retrieval/Rank-1", "retrieval/Rank-5", "retrieval/mAP"):
            assert 0.0 <= m[key] <= 100.0
    # Random initial weights give an mAP of about 31%; 20 iterations reach about 70%.
    assert evaluations[-1]["retrieval/mAP"] > max(50.0, evaluations[0]["retrieval/mAP"])


def test_default_predictor_returns_a_unit_embedding(trained):
    from engine_lib.data.datasets import load_digits_dicts

    cfg = _cfg("MODEL.WEIGHTS", str(trained / "model_final.pth"))
    predictor = DefaultPredictor(cfg)
    output = predictor(load_digits_dicts("test")[0]["image"], format="RGB")
    assert output["embedding"].shape == (cfg.MODEL.HEADS.EMBEDDING_DIM,)
    assert output["embedding"].norm().item() == pytest.approx(1.0, abs=1e-5)


def test_project_registrations_train_without_engine_edits(tmp_path):
    """RMSprop, WarmupLinearLR and RetrievalEvaluator come from the project's registrations."""
    from engine_lib.evaluation import build_evaluator
    from engine_lib.modeling import build_model
    from engine_lib.solver import build_optimizer

    rmsprop = os.path.join(PROJECT, "configs", "digits_triplet_rmsprop.yaml")
    cfg = get_cfg()
    add_metric_learning_config(cfg)
    cfg.merge_from_file(rmsprop)
    cfg.MODEL.DEVICE = "cpu"
    assert isinstance(build_optimizer(cfg, build_model(cfg)), torch.optim.RMSprop)
    assert isinstance(build_evaluator(cfg, "digits_query_gallery"), RetrievalEvaluator)

    opts = ["SOLVER.MAX_ITER", "10", "SOLVER.WARMUP_ITERS", "0", "SOLVER.LOG_PERIOD", "5"]
    opts += ["SOLVER.CHECKPOINT_PERIOD", "10", "TEST.EVAL_PERIOD", "0", "OUTPUT_DIR", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, os.path.join(PROJECT, "train_net.py"), "--config-file", rmsprop, *opts],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1"),
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(tmp_path / "metrics.json") as f:
        metrics = [json.loads(line) for line in f]
    lrs = {m["iteration"]: m["lr"] for m in metrics if "lr" in m}
    # WarmupLinearLR: from BASE_LR 0.001 down to 0.001 * BASE_LR_END (0.01) over 10 iterations.
    for it, lr in lrs.items():
        assert lr == pytest.approx(0.001 * (1 - 0.99 * it / 10))
    assert sorted(lrs) == [4, 9]
    assert "retrieval/mAP" in metrics[-1]
