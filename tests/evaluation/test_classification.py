"""``ClassificationEvaluator``: exact metrics on hand-made predictions, in 1 and 2 processes."""

import json
import logging

import pytest
import torch

from engine_lib.engine.launch import launch
from engine_lib.evaluation import ClassificationEvaluator, classification, inference_on_dataset
from engine_lib.utils import comm


def _scores(ranking, num_classes):
    """Probabilities whose classes sorted by score are ``ranking`` (best first)."""
    scores = torch.zeros(num_classes)
    for place, cls in enumerate(ranking):
        scores[cls] = float(num_classes - place)
    return scores / scores.sum()


# (label, classes ranked by score): top-1 hits 0, 2, 4; top-5 misses only sample 3.
CASES = [
    (0, [0, 1, 2, 3, 4, 5]),
    (1, [2, 1, 0, 3, 4, 5]),
    (1, [1, 0, 2, 3, 4, 5]),
    (2, [0, 1, 3, 4, 5, 2]),
    (5, [5, 0, 1, 2, 3, 4]),
]


def _samples(cases=CASES, num_classes=6):
    return [
        {"label": label, "image_id": i, "scores": _scores(ranking, num_classes)}
        for i, (label, ranking) in enumerate(cases)
    ]


def _evaluate(evaluator, samples, batch_size=2):
    evaluator.reset()
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        evaluator.process(batch, [{"scores": s["scores"]} for s in batch])
    return evaluator.evaluate()


def test_metrics_on_hand_made_predictions(caplog):
    evaluator = ClassificationEvaluator(class_names=["zero", "one", "two", "3", "4", "five"])
    with caplog.at_level(logging.INFO, logger="engine_lib.evaluation"):
        results = _evaluate(evaluator, _samples())
    metrics = results["classification"]
    assert metrics["top1"] == pytest.approx(60.0)
    assert metrics["top5"] == pytest.approx(80.0)
    # Classes 0, 1, 2, 5: 100, 50, 0, 100.
    assert metrics["mean_class_acc"] == pytest.approx(62.5)
    assert list(metrics) == ["top1", "top5", "mean_class_acc"]
    table = caplog.text
    for cell in ("zero", "one", "two", "five", "50.00", "#samples"):
        assert cell in table


def test_evaluate_resets_and_respects_custom_topk():
    evaluator = ClassificationEvaluator(topk=(2, 1, 3))
    _evaluate(evaluator, _samples()[:1])
    metrics = _evaluate(evaluator, _samples())["classification"]
    assert [metrics[k] for k in ("top1", "top2", "top3")] == pytest.approx([60.0, 80.0, 80.0])


def test_topk_is_capped_by_the_number_of_classes():
    cases = [(0, [1, 2, 0]), (2, [2, 0, 1])]
    metrics = _evaluate(ClassificationEvaluator(), _samples(cases, 3))["classification"]
    assert metrics["top1"] == pytest.approx(50.0)
    assert metrics["top5"] == pytest.approx(100.0)


def test_class_names_from_metadata(caplog):
    from engine_lib.data import MetadataCatalog

    MetadataCatalog.get("test_classification_names").set(thing_classes=list("abcdeZ"))
    evaluator = ClassificationEvaluator("test_classification_names")
    with caplog.at_level(logging.INFO, logger="engine_lib.evaluation"):
        _evaluate(evaluator, _samples())
    assert "| Z " in caplog.text


def test_predictions_are_written_atomically(tmp_path):
    evaluator = ClassificationEvaluator("tiny", output_dir=str(tmp_path / "inference"))
    _evaluate(evaluator, _samples())
    files = list((tmp_path / "inference").iterdir())
    assert [f.name for f in files] == ["tiny_predictions.json"]
    records = json.loads(files[0].read_text())
    assert [r["image_id"] for r in records] == list(range(len(CASES)))
    assert records[1]["label"] == 1 and records[1]["topk"] == [2, 1, 0, 3, 4]
    assert records[1]["scores"][0] == pytest.approx(6 / 21, abs=1e-6)


def test_no_predictions_gives_empty_results(caplog):
    evaluator = ClassificationEvaluator()
    evaluator.reset()
    with caplog.at_level(logging.WARNING, logger="engine_lib.evaluation"):
        assert evaluator.evaluate() == {}
    assert "no predictions" in caplog.text
    with pytest.raises(ValueError, match="topk"):
        ClassificationEvaluator(topk=(0,))


def _echo_scores(inputs):
    return [{"scores": x["scores"]} for x in inputs]


def _distributed_worker(samples, out_dir):
    rank, world_size = comm.get_rank(), comm.get_world_size()
    # Contiguous, uneven shards (as InferenceSampler makes): each sample on exactly one rank.
    per_rank = -(-len(samples) // world_size)
    shard = samples[rank * per_rank : (rank + 1) * per_rank]
    loader = [shard[i : i + 2] for i in range(0, len(shard), 2)]
    evaluator = ClassificationEvaluator("dist", output_dir=out_dir)
    results = inference_on_dataset(_echo_scores, loader, evaluator)
    with open(f"{out_dir}/results_rank{rank}.json", "w") as f:
        json.dump({"results": results, "shard": len(shard)}, f)


def test_two_processes_match_one_process(tmp_path):
    torch.manual_seed(0)
    # 11 samples: one rank gets 6, the other 5.
    cases = [(int(torch.randint(6, ())), torch.randperm(6).tolist()) for _ in range(11)]
    samples = _samples(cases)
    expected = _evaluate(ClassificationEvaluator(distributed=False), samples)

    launch(_distributed_worker, 2, args=(samples, str(tmp_path)), backend="gloo")

    rank0 = json.loads((tmp_path / "results_rank0.json").read_text())
    rank1 = json.loads((tmp_path / "results_rank1.json").read_text())
    assert (rank0["shard"], rank1["shard"]) == (6, 5)
    assert rank1["results"] == {}
    assert rank0["results"]["classification"] == pytest.approx(expected["classification"])
    records = json.loads((tmp_path / "dist_predictions.json").read_text())
    assert sorted(r["image_id"] for r in records) == list(range(11))


def test_a_crash_while_writing_predictions_keeps_the_previous_file(tmp_path, monkeypatch):
    """A plain ``open`` would truncate the old file before the crash."""
    evaluator = ClassificationEvaluator("tiny", output_dir=str(tmp_path))
    _evaluate(evaluator, _samples())
    path = tmp_path / "tiny_predictions.json"
    before = path.read_text()

    def dump_then_crash(obj, f):
        f.write('[{"image_id": 0, "lab')
        f.flush()
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(classification.json, "dump", dump_then_crash)
    with pytest.raises(KeyboardInterrupt):
        _evaluate(evaluator, _samples(CASES[:2]))
    assert path.read_text() == before
    assert [f.name for f in tmp_path.iterdir()] == ["tiny_predictions.json"]  # no temp file left
