"""``ImageClassifier``: losses, predictions, normalization and config checks."""

import math

import pytest
import torch

from engine_lib.config import get_cfg
from engine_lib.modeling import build_model
from engine_lib.utils.errors import ConfigError


def _cfg(**heads):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.WIDTH = 8
    cfg.MODEL.HEADS.NUM_CLASSES = 5
    for key, value in heads.items():
        setattr(cfg.MODEL.HEADS, key, value)
    return cfg


def _batch(n=4, channels=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.randint(0, 256, (channels, size, size), dtype=torch.uint8, generator=g),
            "label": i % 5,
        }
        for i in range(n)
    ]


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg)


def test_training_returns_a_finite_loss_and_gradients_reach_every_parameter():
    model = _model(_cfg())
    losses = model(_batch())
    assert set(losses) == {"loss_cls"}
    loss = losses["loss_cls"]
    assert loss.dim() == 0 and math.isfinite(loss.item())
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_eval_returns_probabilities_and_the_predicted_class():
    model = _model(_cfg()).eval()
    outputs = model(_batch(n=3))
    assert len(outputs) == 3
    for out in outputs:
        assert out["scores"].shape == (5,)
        torch.testing.assert_close(out["scores"].sum(), torch.tensor(1.0))
        assert (out["scores"] >= 0).all()
        assert int(out["pred_class"]) == int(out["scores"].argmax())


def test_label_smoothing_changes_the_loss():
    batch = _batch()
    plain = _model(_cfg())(batch)["loss_cls"]
    smoothed = _model(_cfg(LABEL_SMOOTHING=0.2))(batch)["loss_cls"]
    assert not torch.isclose(plain, smoothed)
    with pytest.raises(ConfigError, match="MODEL.HEADS.LABEL_SMOOTHING"):
        build_model(_cfg(LABEL_SMOOTHING=1.5))


def test_labels_may_be_tensors():
    batch = _batch()
    as_tensors = [dict(x, label=torch.tensor(x["label"])) for x in batch]
    model = _model(_cfg())
    torch.testing.assert_close(model(batch)["loss_cls"], model(as_tensors)["loss_cls"])


def test_normalization_uses_pixel_mean_and_std():
    cfg = _cfg()
    cfg.MODEL.PIXEL_MEAN = [10.0, 20.0, 30.0]
    cfg.MODEL.PIXEL_STD = [2.0, 4.0, 5.0]
    model = build_model(cfg)
    image = torch.full((3, 2, 2), 50, dtype=torch.uint8)
    x = model.preprocess_image([{"image": image}])
    assert x.dtype == torch.float32
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([20.0, 7.5, 4.0]))
    # Statistics come from the config, so checkpoints do not carry them.
    assert "pixel_mean" not in model.state_dict()


def test_uint8_and_float_images_give_the_same_output():
    model = _model(_cfg()).eval()
    batch = _batch(n=2)
    as_float = [dict(x, image=x["image"].float()) for x in batch]
    torch.testing.assert_close(model(batch)[0]["scores"], model(as_float)[0]["scores"])


def test_pixel_statistics_must_match_the_backbone_channels():
    cfg = _cfg()
    cfg.MODEL.BACKBONE.IN_CHANNELS = 1
    with pytest.raises(ConfigError) as info:
        build_model(cfg)
    assert "MODEL.PIXEL_MEAN" in str(info.value) and "MODEL.BACKBONE.IN_CHANNELS" in str(info.value)
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [0.0], [255.0, 255.0]
    with pytest.raises(ConfigError, match="MODEL.PIXEL_STD"):
        build_model(cfg)
    cfg.MODEL.PIXEL_STD = [255.0]
    with pytest.raises(ConfigError, match="INPUT.FORMAT"):
        build_model(cfg)
    cfg.INPUT.FORMAT = "L"
    model = build_model(cfg)
    assert model(_batch(channels=1))["loss_cls"].isfinite()


def test_batch_errors_are_clear():
    model = _model(_cfg())
    mixed = _batch(n=2) + _batch(n=1, size=8)
    with pytest.raises(ValueError, match="one size"):
        model(mixed)
    with pytest.raises(ValueError, match="channels"):
        model(_batch(channels=1))
