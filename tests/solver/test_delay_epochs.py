"""fastreid's SOLVER.DELAY_EPOCHS: constant LR before the cosine decay; epochs in schedules."""

import math

import pytest
import torch
from torch import nn

from engine_lib.config import get_cfg
from engine_lib.config.epochs import resolve_epochs
from engine_lib.solver import build_lr_scheduler
from engine_lib.utils.errors import ConfigError


def _cfg(**solver):
    cfg = get_cfg()
    cfg.SOLVER.MAX_EPOCH = 10
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupCosineLR"
    cfg.SOLVER.BASE_LR_END = 0.0
    cfg.SOLVER.WARMUP_FACTOR = 0.1
    for key, value in solver.items():
        cfg.SOLVER[key] = value
    return resolve_epochs(cfg, iters_per_epoch=10)  # MAX_ITER = 100


def _lrs(cfg, n=100):
    optimizer = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=1.0)
    scheduler = build_lr_scheduler(cfg, optimizer)
    lrs = []
    for _ in range(n):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_delay_holds_the_lr_then_decays_along_a_cosine():
    lrs = _lrs(_cfg(WARMUP_ITERS="1ep", DELAY_EPOCHS=3))
    assert lrs[0] == pytest.approx(0.1)  # warmup from WARMUP_FACTOR
    assert lrs[5] == pytest.approx(0.1 + 0.9 * 0.5)  # linear, halfway through the warmup
    assert lrs[10:31] == pytest.approx([1.0] * 21)  # constant until epoch 3 (iteration 30)
    for it in (40, 65, 99):
        # The cosine spans the 70 iterations that are left.
        assert lrs[it] == pytest.approx(0.5 * (1 + math.cos(math.pi * (it - 30) / 70)))


def test_without_delay_the_cosine_starts_at_zero_as_before():
    lrs = _lrs(_cfg(WARMUP_ITERS=0, DELAY_EPOCHS=0))
    assert lrs[30] == pytest.approx(0.5 * (1 + math.cos(math.pi * 30 / 100)))


def test_steps_and_warmup_in_epochs_reach_the_multistep_schedule():
    cfg = _cfg(LR_SCHEDULER_NAME="WarmupMultiStepLR", WARMUP_ITERS=0, STEPS=("4ep", "7ep"))
    lrs = _lrs(cfg)
    assert (lrs[39], lrs[40], lrs[69], lrs[70]) == pytest.approx((1.0, 0.1, 0.1, 0.01))


@pytest.mark.parametrize(
    "solver, match",
    [
        ({"DELAY_EPOCHS": 2, "LR_SCHEDULER_NAME": "WarmupMultiStepLR"}, "WarmupCosineLR"),
        ({"DELAY_EPOCHS": 10}, r"DELAY_EPOCHS=10 \(100 iterations\).*MAX_ITER=100"),
    ],
)
def test_delay_errors(solver, match):
    with pytest.raises(ConfigError, match=match):
        _lrs(_cfg(**solver), n=1)


def test_unresolved_epochs_are_refused_by_the_schedule():
    cfg = get_cfg()
    cfg.SOLVER.MAX_ITER = 100
    cfg.SOLVER.WARMUP_ITERS = "1ep"
    with pytest.raises(ConfigError, match=r"SOLVER\.WARMUP_ITERS.*resolve_epochs"):
        _lrs(cfg, n=1)
    cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.DELAY_EPOCHS = 0, 2
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupCosineLR"
    with pytest.raises(ConfigError, match=r"DELAY_EPOCHS.*ITERS_PER_EPOCH"):
        _lrs(cfg, n=1)
