"""detectron2's solver helpers: param-group expansion, optimizer-side clipping, the older
closed-form schedulers, and ``lr_factor_func``."""

import math

import pytest
import torch
from torch import nn

from engine_lib.config import get_cfg
from engine_lib.solver import (
    WarmupCosineLR,
    WarmupMultiStepLR,
    get_default_optimizer_params,
    maybe_add_gradient_clipping,
    reduce_param_groups,
)
from engine_lib.solver.build import _expand_param_groups, build_lr_scheduler

PARAMS = [
    {"params": ["p1", "p2", "p3", "p4"], "lr": 1.0, "weight_decay": 3.0},
    {"params": ["p2", "p3", "p5"], "lr": 2.0, "momentum": 2.0},
    {"params": ["p1"], "weight_decay": 4.0},
]


def test_expand_param_groups_later_groups_win():
    out = {
        g["params"][0]: {k: v for k, v in g.items() if k != "params"}
        for g in _expand_param_groups(PARAMS)
    }
    assert out == {
        "p1": {"lr": 1.0, "weight_decay": 4.0},
        "p2": {"lr": 2.0, "weight_decay": 3.0, "momentum": 2.0},
        "p3": {"lr": 2.0, "weight_decay": 3.0, "momentum": 2.0},
        "p4": {"lr": 1.0, "weight_decay": 3.0},
        "p5": {"lr": 2.0, "momentum": 2.0},
    }
    assert build_lr_scheduler is not None  # detectron2 imports it from solver.build too


def test_reduce_param_groups_expands_overlapping_groups_first():
    assert reduce_param_groups(PARAMS) == [
        {"lr": 1.0, "weight_decay": 4.0, "params": ["p1"]},
        {"lr": 2.0, "weight_decay": 3.0, "momentum": 2.0, "params": ["p2", "p3"]},
        {"lr": 1.0, "weight_decay": 3.0, "params": ["p4"]},
        {"lr": 2.0, "momentum": 2.0, "params": ["p5"]},
    ]


def test_lr_factor_func_multiplies_by_parameter_name():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    groups = get_default_optimizer_params(
        model, base_lr=1.0, lr_factor_func=lambda name: 0.5 if name.startswith("0.") else 1.0
    )
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert [lr_of[id(p)] for p in model.parameters()] == [0.5, 0.5, 1.0, 1.0]


@pytest.mark.parametrize("clip_type", ["value", "norm"])
def test_maybe_add_gradient_clipping(clip_type):
    cfg = get_cfg()
    assert maybe_add_gradient_clipping(cfg, torch.optim.SGD) is torch.optim.SGD
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = clip_type
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.1
    param = nn.Parameter(torch.zeros(4))
    opt = maybe_add_gradient_clipping(cfg, torch.optim.SGD)([param], lr=1.0)
    assert isinstance(opt, torch.optim.SGD)
    param.grad = torch.full((4,), 3.0)
    opt.step()
    if clip_type == "value":
        assert torch.allclose(param.detach(), torch.full((4,), -0.1))
    else:
        assert param.detach().norm().item() == pytest.approx(0.1, rel=1e-4)
    with pytest.raises(TypeError, match="optimizer class"):
        maybe_add_gradient_clipping(cfg, opt)


def _lrs(sched, opt, n):
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_warmup_multistep_lr_values():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=5.0)
    sched = WarmupMultiStepLR(opt, [10, 15, 20], gamma=0.1, warmup_factor=0.001, warmup_iters=5)
    lrs = _lrs(sched, opt, 25)
    assert lrs[0] == pytest.approx(5.0 * 0.001)
    assert lrs[2] == pytest.approx(5.0 * (0.001 * 0.6 + 0.4))
    assert lrs[5:10] == pytest.approx([5.0] * 5)
    assert lrs[10:15] == pytest.approx([0.5] * 5) and lrs[15:20] == pytest.approx([0.05] * 5)
    assert lrs[20:] == pytest.approx([0.005] * 5)


def test_constant_warmup_holds_the_factor_until_the_warmup_ends():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=5.0)
    sched = WarmupMultiStepLR(
        opt, [10], warmup_factor=0.1, warmup_iters=3, warmup_method="constant"
    )
    assert _lrs(sched, opt, 5) == pytest.approx([0.5, 0.5, 0.5, 5.0, 5.0])


def test_warmup_cosine_lr_values():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=5.0)
    sched = WarmupCosineLR(opt, max_iters=100, warmup_factor=0.001, warmup_iters=5)
    lrs = _lrs(sched, opt, 100)
    for it in (5, 50, 99):
        assert lrs[it] == pytest.approx(5.0 * 0.5 * (1 + math.cos(math.pi * it / 100)))
    assert lrs[0] == pytest.approx(5.0 * 0.001)
