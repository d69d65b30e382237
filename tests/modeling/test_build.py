"""Registries, ``build_model`` and the built-in backbones and heads."""

import logging

import pytest
import torch
from torch import nn

from engine_lib.config import get_cfg
from engine_lib.modeling import (
    BACKBONE_REGISTRY,
    HEADS_REGISTRY,
    META_ARCH_REGISTRY,
    ImageClassifier,
    LinearHead,
    ResNet,
    SmallCNN,
    build_model,
    get_norm,
)
from engine_lib.utils.errors import ConfigError, UnknownNameError


def _cfg(**backbone):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.WIDTH = 8
    for key, value in backbone.items():
        setattr(cfg.MODEL.BACKBONE, key, value)
    return cfg


def test_registries_hold_the_builtins():
    assert META_ARCH_REGISTRY.get("ImageClassifier") is ImageClassifier
    assert BACKBONE_REGISTRY.get("SmallCNN") is SmallCNN
    assert BACKBONE_REGISTRY.get("ResNet") is ResNet
    assert HEADS_REGISTRY.get("LinearHead") is LinearHead


@pytest.mark.parametrize(
    "section, key, wrong, meant",
    [
        ("MODEL", "META_ARCHITECTURE", "ImageClassifer", "ImageClassifier"),
        ("MODEL.BACKBONE", "NAME", "resnet", "ResNet"),
        ("MODEL.HEADS", "NAME", "LinearHeads", "LinearHead"),
    ],
)
def test_unknown_names_name_the_key_and_the_closest_entry(section, key, wrong, meant):
    cfg = _cfg()
    node = cfg
    for part in section.split("."):
        node = getattr(node, part)
    setattr(node, key, wrong)
    with pytest.raises(UnknownNameError) as info:
        build_model(cfg)
    message = str(info.value)
    assert f"{section}.{key}" in message
    assert repr(wrong) in message and repr(meant) in message


def test_build_model_small_cnn_logs_parameter_table(caplog):
    with caplog.at_level(logging.INFO, logger="engine_lib.modeling"):
        model = build_model(_cfg())
    assert isinstance(model, ImageClassifier) and model.training
    assert isinstance(model.backbone, SmallCNN)
    assert model.backbone.output_channels == 8 * 4
    assert model.head.linear.out_features == 10
    table = caplog.text
    backbone_params = sum(p.numel() for p in model.backbone.parameters())
    total = sum(p.numel() for p in model.parameters())
    for name in ("backbone", "head", "total", "#trainable"):
        assert name in table
    assert f"{backbone_params:,}" in table and f"{total:,}" in table


def test_parameter_table_counts_frozen_parameters_apart(caplog):
    from engine_lib.modeling import parameter_count_table

    model = build_model(_cfg())
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    head = sum(p.numel() for p in model.head.parameters())
    total_row = [line for line in parameter_count_table(model).splitlines() if "total" in line]
    cells = [c.strip() for c in total_row[0].strip("|").split("|")]
    assert cells[2] == f"{head:,}"


def test_build_model_resnet18_on_a_tiny_input():
    model = build_model(_cfg(NAME="ResNet", DEPTH=18))
    assert isinstance(model.backbone, ResNet) and model.backbone.output_channels == 512
    model.eval()
    outputs = model([{"image": torch.zeros(3, 32, 32, dtype=torch.uint8)}])
    assert outputs[0]["scores"].shape == (10,)


def test_resnet50_width_and_unsupported_depth():
    assert ResNet(depth=50).output_channels == 2048
    with pytest.raises(ConfigError, match="MODEL.BACKBONE.DEPTH=101"):
        build_model(_cfg(NAME="ResNet", DEPTH=101))


@pytest.mark.parametrize("norm", ["GN", ""])
def test_resnet_grayscale_and_other_norms(norm):
    net = ResNet(depth=18, in_channels=1, norm=norm)
    assert net.conv1.in_channels == 1
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 512, 1, 1)


def test_small_cnn_shapes_and_norms():
    assert SmallCNN(in_channels=1, width=4)(torch.zeros(2, 1, 32, 32)).shape == (2, 16, 4, 4)
    no_norm = SmallCNN(width=4, norm="")
    convs = [m for m in no_norm.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is not None for c in convs)


def test_get_norm():
    assert isinstance(get_norm("BN", 8), nn.BatchNorm2d)
    assert isinstance(get_norm("SyncBN", 8), nn.SyncBatchNorm)
    gn = get_norm("GN", 48)
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 16
    assert isinstance(get_norm("", 8), nn.Identity)
    with pytest.raises(ConfigError, match="MODEL.BACKBONE.NORM"):
        get_norm("LN", 8)


def test_head_options():
    x = torch.randn(2, 6, 3, 3)
    head = LinearHead(in_channels=6, num_classes=4, pool="max")
    expected = head.linear(x.amax(dim=(2, 3)))
    torch.testing.assert_close(head(x), expected)
    cfg = _cfg()
    cfg.MODEL.HEADS.POOL = "mean"
    with pytest.raises(ConfigError, match="MODEL.HEADS.POOL"):
        build_model(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_device_without_cuda_is_a_config_error():
    cfg = _cfg()
    cfg.MODEL.DEVICE = "cuda"
    with pytest.raises(ConfigError, match="MODEL.DEVICE"):
        build_model(cfg)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_build_model_moves_to_cuda():
    cfg = _cfg()
    cfg.MODEL.DEVICE = "cuda"
    model = build_model(cfg)
    assert all(p.is_cuda for p in model.parameters()) and model.pixel_mean.is_cuda
    model.eval()
    outputs = model([{"image": torch.zeros(3, 32, 32, dtype=torch.uint8)}])
    assert outputs[0]["scores"].is_cuda
