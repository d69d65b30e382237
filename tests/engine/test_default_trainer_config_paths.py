"""Config keys that reach DefaultTrainer's hooks and optimizer, each checked by its effect.

PRECISE_BN, PREEMPT_SIGNALS, BEST_CHECKPOINT.MODE and CLIP_GRADIENTS, through the config as a
user sets them, on a few iterations of the bundled digits.
"""

import signal

import pytest
import torch

from engine_lib.engine import PREEMPTED_EXIT_CODE, DefaultTrainer, TrainingPreempted, hooks
from engine_lib.engine.train_loop import HookBase
from tests.engine.test_default_trainer import digits_cfg

__all__ = []


def _train(cfg, trainer_class=DefaultTrainer, extra_hooks=()):
    trainer = trainer_class(cfg)
    trainer.register_hooks(list(extra_hooks))
    trainer.resume_or_load(resume=False)
    trainer.train()
    return trainer


def test_precise_bn_recomputes_only_the_bn_statistics(tmp_path):
    states = {}
    for enabled in (False, True):
        cfg = digits_cfg(
            tmp_path / str(enabled),
            **{"TEST.PRECISE_BN.ENABLED": enabled, "TEST.PRECISE_BN.NUM_ITER": 4},
        )
        torch.manual_seed(0)  # the same initial weights (no default_setup here)
        trainer = _train(cfg)
        assert any(isinstance(h, hooks.PreciseBN) for h in trainer.hooks) is enabled
        states[enabled] = trainer.model.state_dict()
    plain, precise = states[False], states[True]
    params = dict(DefaultTrainer.build_model(digits_cfg(tmp_path)).named_parameters())
    for key in params:  # the same training: PreciseBN leaves the weights alone
        assert torch.equal(plain[key], precise[key]), key
    stats = [k for k in plain if k.endswith(("running_mean", "running_var"))]
    assert stats and all(not torch.equal(plain[k], precise[k]) for k in stats)


class _SignalSeen(HookBase):
    """Records the handler of ``signum`` during training; optionally sends it at ``send_at``."""

    def __init__(self, signum, send_at=None):
        self.signum, self.send_at, self.handler = signum, send_at, None

    def after_step(self):
        self.handler = signal.getsignal(self.signum)
        if self.trainer.iter == self.send_at:
            signal.raise_signal(self.signum)


def test_preempt_signals_empty_installs_no_handler(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    seen = _SignalSeen(signal.SIGTERM)
    trainer = _train(digits_cfg(tmp_path, **{"SOLVER.PREEMPT_SIGNALS": "[]"}), extra_hooks=[seen])
    assert not any(isinstance(h, hooks.PreemptionHandler) for h in trainer.hooks)
    assert seen.handler is before


def test_preempt_signal_sigusr2_saves_and_stops(tmp_path):
    cfg = digits_cfg(tmp_path, **{"SOLVER.PREEMPT_SIGNALS": "['SIGUSR2']", "SOLVER.MAX_ITER": 20})
    before = signal.getsignal(signal.SIGUSR2)
    trainer = DefaultTrainer(cfg)
    trainer.register_hooks([_SignalSeen(signal.SIGUSR2, send_at=3)])
    trainer.resume_or_load(resume=False)
    with pytest.raises(TrainingPreempted) as info:
        trainer.train()
    assert info.value.code == PREEMPTED_EXIT_CODE
    # The signal came after the handler's check of iteration 3: it stops after the next step.
    assert trainer.iter == 4
    saved = torch.load(tmp_path / "model_0000004.pth", weights_only=True)
    assert saved["iteration"] == 4
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    assert signal.getsignal(signal.SIGUSR2) is before  # restored after training


# A validation metric that is lowest at iteration 3 and highest at the last one (5).
VAL_LOSS = [5.0, 3.0, 4.0, 1.0, 2.0, 6.0]


class _PutValLoss(HookBase):
    def after_step(self):
        self.trainer.storage.put_scalar("val/loss", VAL_LOSS[self.trainer.iter])


class _ValLossTrainer(DefaultTrainer):
    """Puts ``val/loss`` each iteration, before the BestCheckpointer reads it."""

    def build_hooks(self):
        built = super().build_hooks()
        index = next(i for i, h in enumerate(built) if isinstance(h, hooks.BestCheckpointer))
        return [*built[:index], _PutValLoss(), *built[index:]]


def test_best_checkpoint_mode_min_keeps_the_lowest(tmp_path):
    cfg = digits_cfg(
        tmp_path,
        **{
            "SOLVER.BEST_CHECKPOINT.ENABLED": True,
            "SOLVER.BEST_CHECKPOINT.METRIC": "val/loss",
            "SOLVER.BEST_CHECKPOINT.MODE": "min",
            "TEST.EVAL_PERIOD": 1,
            "DATASETS.TEST": "()",
        },
    )
    trainer = _train(cfg, _ValLossTrainer)
    best = next(h for h in trainer.hooks if isinstance(h, hooks.BestCheckpointer))
    assert (best.best_metric, best.best_iter) == (1.0, 3)
    assert torch.load(tmp_path / "model_best.pth", weights_only=True)["iteration"] == 3


class _GradNorms(HookBase):
    """The largest per-parameter gradient norm that each optimizer step applied."""

    def __init__(self):
        self.norms = []

    def before_train(self):
        self.trainer.optimizer.register_step_post_hook(self._record)

    def _record(self, optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"]]
        self.norms.append(max(float(g.norm()) for g in grads if g is not None))


@pytest.mark.parametrize("enabled", [True, False])
def test_clip_gradients_from_config_clips_each_parameter_norm(tmp_path, enabled):
    clip = {
        "SOLVER.CLIP_GRADIENTS.ENABLED": enabled,
        "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "norm",
        "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": 0.01,
        "SOLVER.MAX_ITER": 2,
    }
    norms = _GradNorms()
    _train(digits_cfg(tmp_path, **clip), extra_hooks=[norms])
    assert len(norms.norms) == 2
    if enabled:  # detectron2's "norm": each parameter's gradient on its own
        assert 0.001 < max(norms.norms) <= 0.01 * (1 + 1e-5)
    else:  # without clipping the same run has larger gradients: the check above means something
        assert min(norms.norms) > 0.1
