"""EMA and LayerFreeze: what they do during training, and that their state survives a resume."""

import pytest
import torch

from engine_lib.checkpoint import Checkpointer
from engine_lib.engine import hooks
from engine_lib.utils.errors import ConfigError

from ._toy_training import ToyRegressor, batches, make_samples, make_trainer

# The same batch every iteration: a resumed run sees the same data as an uninterrupted one.
_FIXED = make_samples(8)


def _fixed_data():
    return batches(8, _FIXED)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_ema_matches_a_manual_average_and_swaps_weights():
    model = ToyRegressor(bn=True)
    ema = hooks.EMA(model, decay=0.8)
    snapshots = []
    record = hooks.CallbackHook(after_step=lambda t: snapshots.append(_snapshot(model)))
    initial = _snapshot(model)
    trainer = make_trainer(model, data=_fixed_data(), hooks=[ema, record])
    assert ema.state_dict()["weights"] == {}  # no average before training
    trainer.train(0, 6)

    expected = {k: v.float() for k, v in initial.items()}
    for snap in snapshots:
        for k, v in snap.items():
            expected[k] = 0.8 * expected[k] + 0.2 * v if v.is_floating_point() else v
    averaged = ema.averaged_weights
    for k, v in expected.items():
        torch.testing.assert_close(averaged[k], v)
    assert averaged["bn.num_batches_tracked"].item() == 6
    assert ema.num_updates == 6

    live = _snapshot(model)
    with ema.apply_to(model) as swapped:
        assert swapped is model
        torch.testing.assert_close(model.linear.weight, averaged["linear.weight"])
        torch.testing.assert_close(model.bn.running_mean, averaged["bn.running_mean"])
    for k, v in _snapshot(model).items():
        assert torch.equal(v, live[k])


def _ema_run(out_dir, start, stop):
    model = ToyRegressor(bn=True)
    trainer = make_trainer(model, data=_fixed_data())
    checkpointer = Checkpointer(model, str(out_dir), optimizer=trainer.optimizer, trainer=trainer)
    ema = hooks.EMA(model, decay=0.9)
    trainer.register_hooks([ema, hooks.PeriodicCheckpointer(checkpointer, period=4)])
    if start > 0:
        checkpointer.resume_or_load("", resume=True)
        assert trainer.iter + 1 == start
    trainer.train(start, stop)
    return ema


def test_ema_survives_a_resume(tmp_path):
    uninterrupted = _ema_run(tmp_path / "a", 0, 8).averaged_weights
    _ema_run(tmp_path / "b", 0, 5)  # ends with model_final at iteration 4
    resumed = _ema_run(tmp_path / "b", 5, 8).averaged_weights
    for name, value in uninterrupted.items():
        torch.testing.assert_close(resumed[name], value)
    with pytest.raises(RuntimeError, match="no average"):
        hooks.EMA(ToyRegressor()).averaged_weights  # noqa: B018
    with pytest.raises(ConfigError, match="decay"):
        hooks.EMA(ToyRegressor(), decay=1.0)


def _freeze_run(freeze_iters, start, stop, state=None):
    model = ToyRegressor(bn=True)
    freeze = hooks.LayerFreeze(model, ["bn"], freeze_iters)
    seen = []
    model.bn.register_forward_pre_hook(lambda m, _: seen.append(m.training))
    log = []
    hook_list = [
        # Something switching the model back to training mode before each step.
        hooks.CallbackHook(before_step=lambda t: t.model.train()),
        freeze,
        hooks.CallbackHook(
            after_step=lambda t: log.append(
                (t.iter, _snapshot(model), model.bn.weight.requires_grad, seen[-1])
            )
        ),
    ]
    trainer = make_trainer(model, data=_fixed_data(), hooks=hook_list)
    if state is not None:
        trainer.load_state_dict(state)
    trainer.train(start, stop)
    return trainer, freeze, log


def _changed(a, b, key):
    return not torch.equal(a[key], b[key])


def test_layer_freeze_freezes_then_thaws():
    initial = _snapshot(ToyRegressor(bn=True))
    trainer, freeze, log = _freeze_run(3, 0, 6)
    for it, snap, requires_grad, bn_training in log:
        frozen = it < 3
        assert bn_training is not frozen
        for key in ("bn.weight", "bn.bias", "bn.running_mean"):
            assert _changed(snap, initial, key) is not frozen, (it, key)
        assert _changed(snap, initial, "linear.weight")  # the rest trains throughout
        assert requires_grad is (it >= 2)  # thawed at the end of iteration 2
    assert freeze.frozen_iters == 3
    assert trainer.model.bn.weight.requires_grad and trainer.model.bn.training


def test_layer_freeze_counter_survives_a_resume():
    first, freeze, _ = _freeze_run(5, 0, 2)
    state = first.state_dict()
    assert state["hooks"]["LayerFreeze"] == {"frozen_iters": 2}
    assert first.model.bn.weight.requires_grad  # the model is given back unfrozen

    initial = _snapshot(ToyRegressor(bn=True))
    _, freeze, log = _freeze_run(5, 2, 7, state=state)
    assert [it for it, _, _, bn_training in log if not bn_training] == [2, 3, 4]
    assert not _changed(log[2][1], initial, "bn.weight")  # still frozen at iteration 4
    assert _changed(log[3][1], initial, "bn.weight")
    assert freeze.frozen_iters == 5


def test_layer_freeze_rejects_unknown_modules():
    with pytest.raises(ConfigError, match=r"no module named \['backbone'\].*'linear'"):
        hooks.LayerFreeze(ToyRegressor(bn=True), ["backbone"], 10)
