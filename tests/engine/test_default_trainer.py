"""DefaultTrainer, default_setup and DefaultPredictor, in process, on the bundled digits."""

import os
import random

import numpy as np
import pytest
import torch
from PIL import Image

from engine_lib.checkpoint import Checkpointer
from engine_lib.config import get_cfg
from engine_lib.data.build import get_training_sampler
from engine_lib.data.datasets import load_digits_dicts
from engine_lib.engine import (
    DefaultPredictor,
    DefaultTrainer,
    default_argument_parser,
    default_setup,
    hooks,
    train_or_evaluate,
)
from engine_lib.engine.reproducibility import capture_rng_state, restore_rng_state
from engine_lib.evaluation import ResultsVerificationError
from engine_lib.modeling import build_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def digits_cfg(output_dir, **overrides):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "Digits", "cnn.yaml"))
    cfg.merge_from_list(
        [
            "OUTPUT_DIR",
            str(output_dir),
            "MODEL.BACKBONE.WIDTH",
            "4",
            "SOLVER.IMS_PER_BATCH",
            "16",
            "SOLVER.MAX_ITER",
            "6",
            "SOLVER.WARMUP_ITERS",
            "2",
            "SOLVER.CHECKPOINT_PERIOD",
            "3",
            "SOLVER.LOG_PERIOD",
            "3",
            "TEST.EVAL_PERIOD",
            "0",
        ]
    )
    for key, value in overrides.items():
        cfg.merge_from_list([key, str(value)])
    cfg.freeze()
    return cfg


def test_default_setup_dumps_config_and_seeds(tmp_path):
    cfg = digits_cfg(tmp_path, SEED=5)
    default_setup(cfg)
    dumped = get_cfg()
    dumped.merge_from_file(str(tmp_path / "config.yaml"))
    assert dumped.SEED == 5 and dumped.OUTPUT_DIR == str(tmp_path)
    # The thread count (CPU results depend on it) heads config.yaml and is in the log.
    threads = f"torch CPU threads: {torch.get_num_threads()} (OMP_NUM_THREADS="
    assert (tmp_path / "config.yaml").read_text().startswith(f"# {threads}")
    assert threads in (tmp_path / "log.txt").read_text()
    first = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(first, torch.rand(3))
    assert os.path.isfile(tmp_path / "log.txt")


def test_default_hooks_in_documented_order(tmp_path):
    cfg = digits_cfg(
        tmp_path,
        **{
            "MODEL.EMA.ENABLED": True,
            "MODEL.FREEZE_LAYERS": "['backbone']",
            "MODEL.FREEZE_ITERS": 2,
            "SOLVER.BEST_CHECKPOINT.ENABLED": True,
            "TEST.EVAL_PERIOD": 3,
        },
    )
    trainer = DefaultTrainer(cfg)
    names = [type(h).__name__ for h in trainer.hooks]
    assert names == [
        "IterationTimer",
        "LayerFreeze",
        "LRScheduler",
        "EMA",
        "EvalHook",
        "PeriodicWriter",
        "BestCheckpointer",
        "PeriodicCheckpointer",
        "PreemptionHandler",
    ]


def test_train_then_resume_from_state(tmp_path):
    cfg = digits_cfg(tmp_path, **{"MODEL.EMA.ENABLED": True})
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 0
    results = trainer.train()
    assert "classification" in results
    assert trainer.samples_consumed == 6 * 16
    state = trainer.state_dict()
    assert len(state["rng"]) == 1 and state["sampler"]["seed"] == cfg.SEED

    # A new trainer resumes from the last checkpoint: iteration, sampler position, hooks.
    resumed = DefaultTrainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 6
    assert resumed.samples_consumed == 6 * 16
    assert get_training_sampler(resumed.data_loader).position == 6 * 16
    ema = next(h for h in resumed.hooks if isinstance(h, hooks.EMA))
    assert ema.num_updates == 6


def test_resume_from_explicit_path(tmp_path):
    cfg = digits_cfg(tmp_path)
    trainer = DefaultTrainer(cfg)
    trainer.train()
    other = DefaultTrainer(cfg)
    other.resume_or_load(resume=str(tmp_path / "model_0000002.pth"))
    assert other.start_iter == 3
    assert other.samples_consumed == 3 * 16


def test_rng_state_round_trip_is_weights_only_loadable(tmp_path):
    state = capture_rng_state()
    path = tmp_path / "rng.pth"
    torch.save(state, path)
    expected = (random.random(), np.random.rand(), torch.rand(2))  # noqa: NPY002
    restore_rng_state(torch.load(path, weights_only=True))
    got = (random.random(), np.random.rand(), torch.rand(2))  # noqa: NPY002
    assert expected[0] == got[0] and expected[1] == got[1]
    assert torch.equal(expected[2], got[2])


def test_auto_scale_workers(tmp_path):
    cfg = digits_cfg(
        tmp_path,
        **{"SOLVER.REFERENCE_WORLD_SIZE": 2, "SOLVER.STEPS": "(100, 200)", "SOLVER.MAX_ITER": 300},
    )
    assert DefaultTrainer.auto_scale_workers(cfg, 2) is cfg
    scaled = DefaultTrainer.auto_scale_workers(cfg, 4)
    assert scaled.SOLVER.IMS_PER_BATCH == 32
    assert scaled.SOLVER.BASE_LR == pytest.approx(cfg.SOLVER.BASE_LR * 2)
    assert scaled.SOLVER.MAX_ITER == 150 and scaled.SOLVER.STEPS == (50, 100)
    assert scaled.is_frozen() and cfg.SOLVER.IMS_PER_BATCH == 16


def test_predictor_on_array_and_path(tmp_path):
    cfg = digits_cfg(tmp_path)
    model = build_model(cfg)
    Checkpointer(model, str(tmp_path)).save("weights")
    cfg.defrost()
    cfg.MODEL.WEIGHTS = str(tmp_path / "weights.pth")
    cfg.freeze()
    predictor = DefaultPredictor(cfg)
    for p_model, p_pred in zip(model.state_dict().values(), predictor.model.state_dict().values()):
        assert torch.equal(p_model, p_pred)

    record = load_digits_dicts("test")[0]
    rgb = record["image"]
    path = tmp_path / "digit.png"
    Image.fromarray(rgb).save(path)
    from_rgb = predictor(rgb, format="RGB")
    from_bgr = predictor(np.ascontiguousarray(rgb[:, :, ::-1]), format="BGR")
    from_gray = predictor(rgb[:, :, 0], format="L")
    from_path = predictor(str(path))
    for out in (from_bgr, from_gray, from_path):
        assert torch.allclose(out["scores"], from_rgb["scores"], atol=1e-6)
    assert from_rgb["scores"].shape == (10,)
    assert int(from_rgb["pred_class"]) == int(from_rgb["scores"].argmax())


def _scheduler_states(tree):
    """Every dict in a checkpoint that is an LR scheduler's state."""
    if isinstance(tree, dict):
        own = [tree] if "last_epoch" in tree and "base_lrs" in tree else []
        return own + [s for v in tree.values() for s in _scheduler_states(v)]
    if isinstance(tree, (list, tuple)):
        return [s for v in tree for s in _scheduler_states(v)]
    return []


def test_the_lr_schedule_is_saved_once_and_old_checkpoints_with_two_copies_resume(tmp_path):
    cfg = digits_cfg(tmp_path)
    trainer = DefaultTrainer(cfg)
    trainer.train()
    checkpoint = torch.load(tmp_path / "model_0000002.pth", weights_only=True)
    states = _scheduler_states(checkpoint)
    assert len(states) == 1 and states[0]["last_epoch"] == 3
    assert "scheduler" not in checkpoint  # the LRScheduler hook's state is the one copy

    # A checkpoint of the former layout holds it twice (top level and hook): still resumes.
    checkpoint["scheduler"] = dict(states[0])
    torch.save(checkpoint, tmp_path / "old.pth")
    resumed = DefaultTrainer(cfg)
    resumed.resume_or_load(resume=str(tmp_path / "old.pth"))
    assert resumed.start_iter == 3 and resumed.scheduler.last_epoch == 3


@pytest.mark.parametrize("resume", [True, "auto"])
def test_eval_only_follows_the_trainers_resume_rules(tmp_path, resume):
    cfg = digits_cfg(tmp_path)
    trained = DefaultTrainer(cfg)
    trained.train()
    args = default_argument_parser().parse_args(["--eval-only"])
    args.resume = resume
    evaluated = {}

    class Recording(DefaultTrainer):
        @classmethod
        def test(cls, cfg, model, evaluators=None):
            evaluated.update(model.state_dict())
            return {}

    train_or_evaluate(cfg, args, Recording)
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)["model"]
    assert evaluated.keys() == final.keys()
    assert all(torch.equal(evaluated[k], v) for k, v in final.items())


def test_a_missed_expected_result_fails_training_and_eval_only(tmp_path):
    # Unreachable on purpose: top-1 can't exceed 100.
    miss = "[['classification', 'top1', 101.0, 0.5]]"
    cfg = digits_cfg(tmp_path, **{"TEST.EXPECTED_RESULTS": miss})
    trainer = DefaultTrainer(cfg)
    with pytest.raises(ResultsVerificationError, match=r"classification/top1: got .*101\.0"):
        trainer.train()
    # The run itself finished: the miss is judged after the final checkpoint.
    assert os.path.isfile(tmp_path / "model_final.pth")
    top1 = trainer.last_eval_results["classification"]["top1"]
    args = default_argument_parser().parse_args(["--eval-only", "--resume"])
    with pytest.raises(ResultsVerificationError):
        train_or_evaluate(cfg, args, DefaultTrainer)
    hit = f"[['classification', 'top1', {top1}, 0.01]]"
    cfg = digits_cfg(tmp_path, **{"TEST.EXPECTED_RESULTS": hit})
    assert train_or_evaluate(cfg, args, DefaultTrainer)["classification"]["top1"] == top1


def test_seed_minus_one_replays_from_config_yaml_even_if_default_setup_is_not_reassigned(
    tmp_path,
):
    # As a subclassing snippet may do: default_setup's returned config (with the drawn
    # seed) is dropped, and the trainer gets the config with SEED -1.
    cfg = digits_cfg(tmp_path / "drawn", SEED=-1)
    default_setup(cfg)
    DefaultTrainer(cfg).train()
    replay = get_cfg()
    replay.merge_from_file(str(tmp_path / "drawn" / "config.yaml"))
    assert replay.SEED >= 0
    replay.OUTPUT_DIR = str(tmp_path / "replay")
    replay.freeze()
    DefaultTrainer(default_setup(replay)).train()
    drawn = torch.load(tmp_path / "drawn" / "model_final.pth", weights_only=True)["model"]
    again = torch.load(tmp_path / "replay" / "model_final.pth", weights_only=True)["model"]
    assert all(torch.equal(drawn[k], again[k]) for k in drawn)
