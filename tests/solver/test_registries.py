"""OPTIMIZER_REGISTRY and LR_SCHEDULER_REGISTRY: built-ins, additions, and their errors."""

import pytest
import torch
from fvcore.common.param_scheduler import LinearParamScheduler
from torch import nn

from engine_lib.config import get_cfg
from engine_lib.solver import (
    LR_SCHEDULER_REGISTRY,
    OPTIMIZER_REGISTRY,
    build_lr_scheduler,
    build_optimizer,
)
from engine_lib.utils.errors import ConfigError


@pytest.fixture
def registered():
    """Register a test optimizer and schedule; unregister them afterwards."""

    @OPTIMIZER_REGISTRY.register("TestRMSprop")
    def build_rmsprop(cfg, params):
        return torch.optim.RMSprop(params, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM)

    @LR_SCHEDULER_REGISTRY.register("TestLinearLR")
    def build_linear(cfg):
        return LinearParamScheduler(1.0, cfg.SOLVER.BASE_LR_END)

    yield
    del OPTIMIZER_REGISTRY._obj_map["TestRMSprop"]
    del LR_SCHEDULER_REGISTRY._obj_map["TestLinearLR"]


def _cfg(**solver):
    cfg = get_cfg()
    cfg.SOLVER.MAX_ITER = 10
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.BASE_LR = 0.5
    for key, value in solver.items():
        cfg.SOLVER[key] = value
    return cfg


def test_builtins_are_registered():
    assert {"SGD", "Adam", "AdamW"} <= {name for name, _ in OPTIMIZER_REGISTRY}
    expected = {"WarmupMultiStepLR", "WarmupCosineLR", "WarmupConstantLR"}
    assert expected <= {name for name, _ in LR_SCHEDULER_REGISTRY}


def test_registered_optimizer_gets_the_default_param_groups(registered):
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    cfg = _cfg(OPTIMIZER="TestRMSprop", WEIGHT_DECAY=1e-3, WEIGHT_DECAY_NORM=0.0, MOMENTUM=0.5)
    opt = build_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.RMSprop) and opt.defaults["momentum"] == 0.5
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 1e-3]


def test_registered_schedule_gets_the_warmup_and_the_multiplier(registered):
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.5)
    cfg = _cfg(LR_SCHEDULER_NAME="TestLinearLR", BASE_LR_END=0.0, WARMUP_ITERS=2)
    sched = build_lr_scheduler(cfg, opt)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5 * 0.001)  # SOLVER.WARMUP_FACTOR
    assert lrs[2:] == pytest.approx([0.5 * (1 - i / 10) for i in range(2, 10)])


def test_unknown_names_are_config_errors_with_suggestions(registered):
    with pytest.raises(ConfigError, match=r"SOLVER.OPTIMIZER: .*'TestRMSProp'.*'TestRMSprop'"):
        build_optimizer(_cfg(OPTIMIZER="TestRMSProp"), nn.Linear(2, 1))
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.5)
    with pytest.raises(ConfigError, match=r"SOLVER.LR_SCHEDULER_NAME: .*'TestLinearLR'"):
        build_lr_scheduler(_cfg(LR_SCHEDULER_NAME="TestLinerLR"), opt)


def test_delay_epochs_is_refused_by_schedules_that_do_not_support_it(registered):
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.5)
    cfg = _cfg(LR_SCHEDULER_NAME="TestLinearLR", DELAY_EPOCHS=1, ITERS_PER_EPOCH=2)
    with pytest.raises(ConfigError, match="DELAY_EPOCHS=1.*'TestLinearLR'"):
        build_lr_scheduler(cfg, opt)


def test_step_with_fixed_gamma_and_rescaled_warmup():
    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=1.0)
    cfg = _cfg(LR_SCHEDULER_NAME="WarmupStepWithFixedGammaLR", BASE_LR=1.0, GAMMA=0.5)
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.NUM_DECAYS = 12, 3
    sched = build_lr_scheduler(cfg, opt)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0] * 3 + [0.5] * 3 + [0.25] * 3 + [0.125] * 3)

    opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=1.0)
    cfg = _cfg(LR_SCHEDULER_NAME="WarmupStepWithFixedGammaLR", BASE_LR=1.0, GAMMA=0.5)
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.NUM_DECAYS, cfg.SOLVER.WARMUP_ITERS = 12, 2, 4
    cfg.SOLVER.WARMUP_FACTOR, cfg.SOLVER.RESCALE_INTERVAL = 1.0, True
    sched = build_lr_scheduler(cfg, opt)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # After the 4 warmup iterations the schedule starts afresh: 8 iterations, 2 decays.
    assert lrs[4:] == pytest.approx([1.0] * 3 + [0.5] * 3 + [0.25] * 2)
