"""Tests of build_optimizer and get_default_optimizer_params on a tiny real model."""

import ast
import re

import pytest
import torch
from torch import nn

from engine_lib.config import get_cfg
from engine_lib.modeling import build_model
from engine_lib.solver import build_optimizer, get_default_optimizer_params, reduce_param_groups
from engine_lib.utils.errors import ConfigError


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(1, 4, 3, bias=False),
            nn.BatchNorm2d(4),
            nn.Conv2d(4, 4, 3),
            nn.GroupNorm(2, 4),
        )
        self.neck = nn.LayerNorm(4)
        self.heads = nn.Linear(4, 3)
        self.heads_aux = nn.Linear(4, 3)  # must not match the prefix "heads"


def _group_of(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict:
    groups = [g for g in optimizer.param_groups if any(p is param for p in g["params"])]
    assert len(groups) == 1, "each parameter must be in exactly one group"
    return groups[0]


def _cfg(**solver):
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 0.1
    cfg.SOLVER.WEIGHT_DECAY = 1e-4
    cfg.SOLVER.WEIGHT_DECAY_NORM = 0.0
    cfg.SOLVER.WEIGHT_DECAY_BIAS = 1e-5
    cfg.SOLVER.BIAS_LR_FACTOR = 2.0
    for key, value in solver.items():
        cfg.SOLVER[key] = value
    return cfg


@pytest.mark.parametrize(
    "name, cls",
    [("SGD", torch.optim.SGD), ("Adam", torch.optim.Adam), ("AdamW", torch.optim.AdamW)],
)
def test_each_optimizer_type_and_hyperparameters(name, cls):
    cfg = _cfg(OPTIMIZER=name, MOMENTUM=0.8, NESTEROV=True, BETAS=[0.8, 0.9])
    model = TinyNet()
    opt = build_optimizer(cfg, model)
    assert type(opt) is cls
    for group in opt.param_groups:
        if name == "SGD":
            assert group["momentum"] == 0.8 and group["nesterov"] is True
        else:
            assert group["betas"] == (0.8, 0.9)
    # the optimizer really steps on CPU
    loss = model.heads(model.neck(torch.randn(2, 4))).sum()
    before = model.heads.weight.detach().clone()
    loss.backward()
    opt.step()
    assert not torch.equal(before, model.heads.weight)


def test_norm_and_bias_weight_decay_and_bias_lr():
    model = TinyNet()
    opt = build_optimizer(_cfg(), model)
    # norm-layer weights and biases: WEIGHT_DECAY_NORM; norm biases still get the bias LR.
    for norm in (model.backbone[1], model.backbone[3], model.neck):
        assert _group_of(opt, norm.weight)["weight_decay"] == 0.0
        assert _group_of(opt, norm.weight)["lr"] == pytest.approx(0.1)
        assert _group_of(opt, norm.bias)["weight_decay"] == 0.0
        assert _group_of(opt, norm.bias)["lr"] == pytest.approx(0.2)
    # ordinary weights and biases
    assert _group_of(opt, model.backbone[0].weight)["weight_decay"] == 1e-4
    assert _group_of(opt, model.backbone[2].bias)["weight_decay"] == 1e-5
    assert _group_of(opt, model.backbone[2].bias)["lr"] == pytest.approx(0.2)
    assert _group_of(opt, model.backbone[2].weight)["lr"] == pytest.approx(0.1)
    # every trainable parameter is in the optimizer exactly once
    n_in_opt = sum(len(g["params"]) for g in opt.param_groups)
    assert n_in_opt == len(list(model.parameters()))


def test_weight_decay_bias_none_means_weight_decay():
    model = TinyNet()
    opt = build_optimizer(_cfg(WEIGHT_DECAY_BIAS=None), model)
    assert _group_of(opt, model.heads.bias)["weight_decay"] == 1e-4


def test_head_lr_factor_longest_prefix_and_bias_factor():
    cfg = _cfg(LR_FACTORS=[["heads", 10.0], ["backbone", 0.5], ["backbone.2", 0.1]])
    model = TinyNet()
    opt = build_optimizer(cfg, model)
    assert _group_of(opt, model.heads.weight)["lr"] == pytest.approx(1.0)
    assert _group_of(opt, model.heads.bias)["lr"] == pytest.approx(2.0)  # 0.1 * 2 (bias) * 10
    assert _group_of(opt, model.heads_aux.weight)["lr"] == pytest.approx(0.1)
    assert _group_of(opt, model.backbone[0].weight)["lr"] == pytest.approx(0.05)
    assert _group_of(opt, model.backbone[2].weight)["lr"] == pytest.approx(0.01)  # longest wins
    assert _group_of(opt, model.neck.weight)["lr"] == pytest.approx(0.1)


def test_lr_factor_prefix_matching_nothing_is_an_error():
    with pytest.raises(ConfigError, match=r"'hedas'.*SOLVER.LR_FACTORS.*heads"):
        build_optimizer(_cfg(LR_FACTORS=[["hedas", 10.0]]), TinyNet())


def test_malformed_lr_factors():
    with pytest.raises(ConfigError, match="SOLVER.LR_FACTORS"):
        build_optimizer(_cfg(LR_FACTORS=[["heads"]]), TinyNet())


def test_shared_parameters_appear_once():
    model = TinyNet()
    model.tied = nn.Linear(4, 3)
    model.tied.weight = model.heads.weight  # weight tying
    groups = get_default_optimizer_params(model, base_lr=0.1, weight_decay=0.0)
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params})
    assert sum(p is model.heads.weight for p in params) == 1
    torch.optim.SGD(groups, lr=0.1)  # torch itself rejects duplicated parameters


def test_frozen_parameters_are_left_out():
    model = TinyNet()
    model.backbone.requires_grad_(False)
    params = [p for g in get_default_optimizer_params(model, base_lr=0.1) for p in g["params"]]
    assert all(p.requires_grad for p in params)
    assert not any(p is model.backbone[0].weight for p in params)


def test_overrides_by_module_path_and_attribute_name():
    model = TinyNet()
    groups = get_default_optimizer_params(
        model,
        base_lr=0.1,
        weight_decay=1e-4,
        overrides={"bias": {"weight_decay": 0.5}, "heads": {"lr": 3.0}},
    )

    def find(param):
        return next(g for g in groups if any(p is param for p in g["params"]))

    assert find(model.backbone[2].bias)["weight_decay"] == 0.5
    assert find(model.heads.bias)["weight_decay"] == 0.5 and find(model.heads.bias)["lr"] == 3.0
    assert find(model.heads.weight)["weight_decay"] == 1e-4


def test_reduce_param_groups_merges_identical_hyperparameters_in_order():
    a, b, c = (nn.Parameter(torch.zeros(1)) for _ in range(3))
    groups = reduce_param_groups(
        [
            {"params": [a], "lr": 0.1, "betas": [0.9, 0.99]},
            {"params": [b], "lr": 0.2},
            {"params": [c], "lr": 0.1, "betas": [0.9, 0.99]},
        ]
    )
    assert len(groups) == 2
    assert groups[0]["params"] == [a, c] and groups[0]["lr"] == 0.1
    assert groups[1]["params"] == [b]


def test_unknown_optimizer_names_value_and_choices():
    with pytest.raises(ConfigError) as info:
        build_optimizer(_cfg(OPTIMIZER="Adamw"), TinyNet())
    message = str(info.value)
    assert "SOLVER.OPTIMIZER" in message and "'Adamw'" in message
    assert all(name in message for name in ("SGD", "Adam", "AdamW"))


def test_nesterov_without_momentum_is_a_config_error():
    with pytest.raises(ConfigError, match="SOLVER.MOMENTUM"):
        build_optimizer(_cfg(NESTEROV=True, MOMENTUM=0.0), TinyNet())


def test_cpu_uses_torchs_default_path_and_cuda_uses_fused():
    cpu_opt = build_optimizer(_cfg(OPTIMIZER="AdamW"), TinyNet())
    assert not cpu_opt.defaults["fused"]
    if not torch.cuda.is_available():
        pytest.skip("the fused path needs a CUDA device")
    for name in ("SGD", "Adam", "AdamW"):
        model = TinyNet().cuda()
        opt = build_optimizer(_cfg(OPTIMIZER=name), model)
        assert opt.defaults["fused"] is True
        model.heads(torch.randn(2, 4, device="cuda")).sum().backward()
        opt.step()


def test_malformed_lr_factors_example_matches_the_builtin_classifier():
    # The message's example must be a prefix the default model really has, so that a user
    # who copies it gets a working config rather than the "matches no parameter" error.
    with pytest.raises(ConfigError) as info:
        build_optimizer(_cfg(LR_FACTORS=[["head"]]), TinyNet())
    example = ast.literal_eval(re.search(r"such as (\[\[.*?\]\])", str(info.value)).group(1))
    cfg = _cfg(LR_FACTORS=example)
    model = build_model(cfg)
    opt = build_optimizer(cfg, model)
    prefix, factor = example[0]
    boosted = [p for n, p in model.named_parameters() if n.startswith(prefix + ".")]
    assert boosted
    assert _group_of(opt, boosted[0])["lr"] == pytest.approx(0.1 * factor)
