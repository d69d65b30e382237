"""Exact resume in process: the RNG, the sampler position and the EMA weights evaluated.

The slow subprocess tests in ``tests/reliability`` kill real runs; these run in seconds and
depend on each piece of state a resume restores. The head has dropout 0.5, so the weights
after a resume depend on the restored global RNG (the subprocess tests' configs draw nothing
from it).
"""

import random

import numpy as np
import torch

from engine_lib.data.build import get_training_sampler
from engine_lib.engine import DefaultTrainer, hooks
from tests.engine.test_default_trainer import digits_cfg

__all__ = []

# 16 images per iteration; the checkpoint of iteration 2 (model_0000002.pth) is 3 steps in.
BATCH, RESUME_ITER = 16, 3
DROPOUT = {"MODEL.HEADS.DROPOUT": 0.5, "MODEL.EMA.ENABLED": True, "MODEL.EMA.DECAY": 0.5}


def _scramble_global_rng():
    """Leave every global generator somewhere an uninterrupted run never was."""
    torch.manual_seed(987654)
    random.seed(987654)
    np.random.seed(987654)  # noqa: NPY002


def _float_weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}


def test_resume_repeats_the_run_with_dropout_sampler_position_and_ema(tmp_path):
    cfg = digits_cfg(tmp_path, **DROPOUT)
    straight = DefaultTrainer(cfg)
    straight.resume_or_load(resume=True)
    straight.train()
    expected = _float_weights(straight.model)
    expected_ema = straight.hooks[[type(h) for h in straight.hooks].index(hooks.EMA)]
    expected_ema = {k: v.clone() for k, v in expected_ema.averaged_weights.items()}

    resumed = DefaultTrainer(cfg)
    _scramble_global_rng()
    resumed.resume_or_load(resume=str(tmp_path / "model_0000002.pth"))
    assert resumed.start_iter == RESUME_ITER
    # The position the sampler will iterate from, not only the trainer's count.
    assert get_training_sampler(resumed.data_loader).position == RESUME_ITER * BATCH == 48
    assert resumed.samples_consumed == 48
    resumed.train()

    got = _float_weights(resumed.model)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    ema = next(h for h in resumed.hooks if isinstance(h, hooks.EMA))
    for key, value in expected_ema.items():
        assert torch.equal(ema.averaged_weights[key], value), key


def test_dropout_makes_the_weights_depend_on_the_global_rng(tmp_path):
    """Without this the test above could not tell a restored RNG from a lost one."""
    runs = []
    for name in ("a", "b"):
        trainer = DefaultTrainer(digits_cfg(tmp_path / name, **DROPOUT))
        trainer.resume_or_load(resume=False)
        torch.manual_seed(len(runs))  # the sampler and the init are seeded by SEED, not this
        trainer.train()
        runs.append(_float_weights(trainer.model))
    assert any(not torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


class _RecordingTrainer(DefaultTrainer):
    """Records the weights each evaluation sees."""

    seen = []

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        cls.seen.append(_float_weights(model))
        return super().test(cfg, model, evaluators)


def _evaluated_weights(output_dir, eval_with_ema):
    cfg = digits_cfg(output_dir, **DROPOUT, **{"MODEL.EMA.EVAL_WITH_EMA": eval_with_ema})
    _RecordingTrainer.seen = []
    trainer = _RecordingTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    ema = next(h for h in trainer.hooks if isinstance(h, hooks.EMA))
    assert len(_RecordingTrainer.seen) == 1  # TEST.EVAL_PERIOD 0: the final evaluation only
    return _RecordingTrainer.seen[0], _float_weights(trainer.model), ema.averaged_weights


def test_eval_with_ema_evaluates_the_averaged_weights(tmp_path):
    seen, raw, average = _evaluated_weights(tmp_path / "ema", True)
    assert all(torch.equal(seen[k], average[k].to(seen[k].dtype)) for k in seen)
    assert any(not torch.equal(seen[k], raw[k]) for k in seen)
    # The swap is undone after the evaluation: the model keeps training on its own weights.
    seen, raw, average = _evaluated_weights(tmp_path / "raw", False)
    assert all(torch.equal(seen[k], raw[k]) for k in seen)
    assert any(not torch.equal(seen[k], average[k].to(seen[k].dtype)) for k in seen)
