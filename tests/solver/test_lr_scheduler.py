"""Tests of the LR schedules: values at given iterations, state round trip, errors."""

import io
import logging
import math

import pytest
import torch
from fvcore.common.param_scheduler import CosineParamScheduler
from torch import nn

from engine_lib.config import get_cfg
from engine_lib.solver import LRMultiplier, WarmupParamScheduler, build_lr_scheduler
from engine_lib.utils.errors import ConfigError

MAX_ITER = 100


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=lr, momentum=0.9)


def _cfg(**solver):
    cfg = get_cfg()
    cfg.SOLVER.MAX_ITER = MAX_ITER
    cfg.SOLVER.WARMUP_ITERS = 10
    cfg.SOLVER.WARMUP_FACTOR = 0.1
    for key, value in solver.items():
        cfg.SOLVER[key] = value
    return cfg


def _lrs(scheduler: LRMultiplier, optimizer: torch.optim.Optimizer, n: int) -> list:
    """LR used at each of iterations 0..n-1, stepping the way the LRScheduler hook does."""
    lrs = []
    for _ in range(n):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_multistep_with_linear_warmup(caplog):
    opt = _optimizer()
    with caplog.at_level(logging.WARNING):
        sched = build_lr_scheduler(_cfg(STEPS=(30, 60, 200), GAMMA=0.1), opt)
    assert "200" in caplog.text and "SOLVER.MAX_ITER" in caplog.text
    lrs = _lrs(sched, opt, MAX_ITER + 3)
    expected = {0: 0.1, 5: 0.55, 9: 0.91, 10: 1.0, 29: 1.0, 30: 0.1, 59: 0.1, 60: 0.01, 99: 0.01}
    for it, lr in expected.items():
        assert lrs[it] == pytest.approx(lr), it
    # stepping past MAX_ITER keeps the final value instead of failing
    assert lrs[-1] == pytest.approx(0.01)


def test_constant_warmup_then_constant():
    opt = _optimizer(lr=0.5)
    sched = build_lr_scheduler(
        _cfg(LR_SCHEDULER_NAME="WarmupConstantLR", WARMUP_METHOD="constant"), opt
    )
    lrs = _lrs(sched, opt, MAX_ITER + 1)
    assert lrs[0] == lrs[9] == pytest.approx(0.05)
    assert lrs[10] == lrs[99] == lrs[100] == pytest.approx(0.5)


def test_cosine_decays_to_base_lr_end_without_warmup():
    opt = _optimizer(lr=2.0)
    cfg = _cfg(LR_SCHEDULER_NAME="WarmupCosineLR", BASE_LR_END=0.01, WARMUP_ITERS=0)
    lrs = _lrs(build_lr_scheduler(cfg, opt), opt, MAX_ITER)

    def cosine(it):
        return 2.0 * (0.01 + 0.5 * 0.99 * (1 + math.cos(math.pi * it / MAX_ITER)))

    for it in (0, 25, 50, 99):
        assert lrs[it] == pytest.approx(cosine(it)), it
    assert lrs[50] == pytest.approx(2.0 * 0.505)
    assert lrs[99] == pytest.approx(0.02, rel=0.03)  # close to BASE_LR * BASE_LR_END


def test_cosine_with_linear_warmup_is_continuous():
    opt = _optimizer()
    cfg = _cfg(LR_SCHEDULER_NAME="WarmupCosineLR", BASE_LR_END=0.0)
    lrs = _lrs(build_lr_scheduler(cfg, opt), opt, MAX_ITER)
    at_10 = 0.5 * (1 + math.cos(math.pi * 0.1))
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[5] == pytest.approx((0.1 + at_10) / 2)
    assert lrs[10] == pytest.approx(at_10)
    assert lrs[60] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.6)))


def test_warmup_rescale_interval_runs_the_whole_schedule_after_warmup():
    sched = WarmupParamScheduler(
        CosineParamScheduler(1.0, 0.0), 0.5, 0.2, "linear", rescale_interval=True
    )
    assert sched(0.0) == pytest.approx(0.5)
    assert sched(0.1) == pytest.approx(0.75)
    assert sched(0.2) == pytest.approx(1.0)
    assert sched(0.6) == pytest.approx(0.5)


def test_every_param_group_scaled_from_its_own_initial_lr():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    opt = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 1.0},
            {"params": model[1].parameters(), "lr": 10.0},
        ]
    )
    sched = build_lr_scheduler(_cfg(STEPS=(30,)), opt)
    _lrs(sched, opt, 40)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 1.0])


def test_state_dict_round_trip_with_weights_only():
    opt = _optimizer()
    sched = build_lr_scheduler(_cfg(LR_SCHEDULER_NAME="WarmupCosineLR"), opt)
    _lrs(sched, opt, 37)
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert state["last_epoch"] == 37

    opt2 = _optimizer()
    sched2 = build_lr_scheduler(_cfg(LR_SCHEDULER_NAME="WarmupCosineLR"), opt2)
    sched2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert _lrs(sched2, opt2, 20) == _lrs(sched, opt, 20)


@pytest.mark.parametrize(
    "key, value",
    [("LR_SCHEDULER_NAME", "WarmupPolyLR"), ("WARMUP_METHOD", "exponential")],
)
def test_unknown_names(key, value):
    with pytest.raises(ConfigError) as info:
        build_lr_scheduler(_cfg(**{key: value}), _optimizer())
    message = str(info.value)
    assert f"SOLVER.{key}" in message and repr(value) in message
    expected = "WarmupCosineLR" if key == "LR_SCHEDULER_NAME" else "linear"
    assert expected in message


def test_unsorted_steps_are_a_config_error():
    with pytest.raises(ConfigError, match="SOLVER.STEPS"):
        build_lr_scheduler(_cfg(STEPS=(60, 30)), _optimizer())
