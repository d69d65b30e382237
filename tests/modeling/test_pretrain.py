"""``MODEL.BACKBONE.PRETRAIN_PATH``: loading backbone weights from a local file."""

import logging
import os

import pytest
import torch
import torchvision

from engine_lib.config import get_cfg
from engine_lib.modeling import SmallCNN, build_model, load_pretrained_backbone
from engine_lib.utils.errors import ConfigError


def _cfg(path="", **backbone):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.WIDTH = 8
    cfg.MODEL.BACKBONE.PRETRAIN_PATH = str(path)
    for key, value in backbone.items():
        setattr(cfg.MODEL.BACKBONE, key, value)
    return cfg


def test_torchvision_state_dict_loads_into_resnet(tmp_path, caplog):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    reference.bn1.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    torch.manual_seed(2)
    with caplog.at_level(logging.WARNING, logger="engine_lib.modeling"):
        model = build_model(_cfg(path, NAME="ResNet", DEPTH=18))
    torch.testing.assert_close(
        model.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight
    )
    torch.testing.assert_close(model.backbone.bn1.running_var, reference.bn1.running_var)
    assert "fc.weight" in caplog.text and "fc.bias" in caplog.text


def test_shape_mismatch_is_skipped_and_reported(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    from engine_lib.modeling import ResNet

    net = ResNet(depth=18, in_channels=1)
    before = net.conv1.weight.clone()
    result = load_pretrained_backbone(net, str(path))
    assert result.mismatched_keys == ["conv1.weight"]
    assert result.unexpected_keys == ["fc.bias", "fc.weight"]
    assert result.missing_keys == []
    torch.testing.assert_close(net.conv1.weight, before)
    torch.testing.assert_close(net.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)


def test_whole_model_checkpoint_loads_its_backbone(tmp_path):
    torch.manual_seed(3)
    trained = build_model(_cfg())
    path = tmp_path / "model_final.pth"
    torch.save({"model": trained.state_dict(), "iteration": 10}, path)
    torch.manual_seed(4)
    model = build_model(_cfg(path))
    for key, value in trained.backbone.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value)
    # Only the backbone is loaded; the head keeps its own initialization.
    assert not torch.equal(model.head.linear.weight, trained.head.linear.weight)


def test_missing_keys_are_reported(tmp_path):
    net = SmallCNN(width=4)
    state = net.state_dict()
    state.pop("stages.0.0.weight")
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    result = load_pretrained_backbone(SmallCNN(width=4), str(path))
    assert result.missing_keys == ["stages.0.0.weight"]


def test_missing_file_names_the_key_and_path(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(ConfigError) as info:
        build_model(_cfg(path))
    assert "MODEL.BACKBONE.PRETRAIN_PATH" in str(info.value) and str(path) in str(info.value)


def test_unreadable_file_is_a_config_error(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="MODEL.BACKBONE.PRETRAIN_PATH"):
        build_model(_cfg(path))


class _RunsCodeWhenUnpickled:
    """Unpickling this creates ``marker``: what a hostile weights file could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_pickle_only_file_is_refused_without_running_its_code(tmp_path):
    marker = str(tmp_path / "code_ran")
    state = SmallCNN(width=8).state_dict()
    state["payload"] = _RunsCodeWhenUnpickled(marker)
    path = tmp_path / "hostile.pth"
    torch.save(state, path)
    with pytest.raises(ConfigError, match="weights-only"):
        build_model(_cfg(path))
    assert not os.path.exists(marker)
