"""DatasetMapper: reading, formats, and augmentations only in training."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from engine_lib.config import get_cfg
from engine_lib.data import DatasetMapper
from engine_lib.data.seeding import seeded_rng
from engine_lib.utils.errors import ConfigError


def _image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)


def _augmenting_cfg():
    cfg = get_cfg()
    cfg.INPUT.SIZE_TRAIN = [16, 16]
    cfg.INPUT.SIZE_TEST = [16, 16]
    cfg.INPUT.FLIP.PROB = 0.5
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.COLOR_JITTER.ENABLED = True
    cfg.INPUT.RANDOM_ERASING.ENABLED = True
    return cfg


def _map(mapper, record, seed):
    with seeded_rng(seed):
        return mapper(record)


def test_test_mapper_resizes_and_keeps_fields():
    cfg = get_cfg()
    cfg.INPUT.SIZE_TEST = [20, 24]
    record = {"image": _image(), "label": np.int64(3), "image_id": 7, "index": 0}
    out = DatasetMapper(cfg, is_train=False)(record)
    assert out["image"].shape == (3, 20, 24) and out["image"].dtype == torch.uint8
    assert type(out["image"]) is torch.Tensor
    assert out["label"] == 3 and type(out["label"]) is int
    assert (out["image_id"], out["index"]) == (7, 0)
    assert record["image"].shape == (12, 10, 3)  # input dict untouched


def test_augmentations_change_training_images_but_not_test_images():
    cfg = _augmenting_cfg()
    record = {"image": _image(), "label": 1}
    train, test = DatasetMapper(cfg, True), DatasetMapper(cfg, False)
    train_images = [_map(train, record, seed)["image"] for seed in range(4)]
    test_images = [_map(test, record, seed)["image"] for seed in range(4)]
    assert all(not torch.equal(train_images[0], image) for image in train_images[1:])
    assert all(torch.equal(test_images[0], image) for image in test_images[1:])
    # Same seed, same augmentation.
    assert torch.equal(_map(train, record, 2)["image"], train_images[2])
    # Without augmentations, training is a plain resize like testing.
    plain = DatasetMapper(get_cfg(), True)
    assert torch.equal(_map(plain, record, 0)["image"], _map(plain, record, 1)["image"])


@pytest.mark.parametrize("image_format", ["BGR", "L"])
def test_image_formats(image_format):
    cfg = get_cfg()
    record = {"image": _image(), "label": 0}
    rgb = DatasetMapper(cfg, False)(record)["image"]
    cfg.INPUT.FORMAT = image_format
    out = DatasetMapper(cfg, False)(record)["image"]
    if image_format == "BGR":
        assert torch.equal(out, rgb.flip(0))
    else:
        assert out.shape == (1, 32, 32)


def test_reads_files_and_gray_arrays(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(_image()).save(path)
    cfg = get_cfg()
    cfg.INPUT.SIZE_TEST = [12, 10]
    mapper = DatasetMapper(cfg, False)
    from_file = mapper({"file_name": str(path), "label": 0})
    from_array = mapper({"image": _image(), "label": 0})
    assert torch.equal(from_file["image"], from_array["image"])
    gray = mapper({"image": _image()[:, :, 0], "label": 0})["image"]
    assert torch.equal(gray[0], gray[2])


def test_unreadable_image_names_the_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not a png")
    with pytest.raises(ConfigError, match="broken.png"):
        DatasetMapper(get_cfg(), False)({"file_name": str(path), "label": 0})


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("INPUT.FORMAT", "RGBA", "INPUT.FORMAT"),
        ("INPUT.SIZE_TRAIN", [0, 3], "INPUT.SIZE_TRAIN"),
        ("INPUT.FLIP.PROB", 1.5, "INPUT.FLIP.PROB"),
    ],
)
def test_bad_input_config_names_the_key(key, value, match):
    cfg = get_cfg()
    node = cfg
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    with pytest.raises(ConfigError, match=match):
        DatasetMapper(cfg, True)


def test_augmentations_input_type_and_same_result_either_way():
    cfg = _augmenting_cfg()
    record = {"image": _image(), "label": 1}
    seen = []

    def custom(image):
        seen.append(type(image))
        return image

    assert type(DatasetMapper(cfg, True, augmentations=custom)(record)["image"]) is torch.Tensor
    assert seen == [tv_tensors.Image]
    # torchvision's own transforms get a plain tensor, with the same draws and result.
    mapper = DatasetMapper(cfg, True)
    wrapped = DatasetMapper(cfg, True, augmentations=v2.Lambda(lambda x: x))
    wrapped.augmentations = v2.Compose([v2.Lambda(lambda x: x), *mapper.augmentations.transforms])
    assert mapper._plain_tensor_input and not wrapped._plain_tensor_input
    for seed in range(4):
        expected = _map(wrapped, record, seed)["image"]
        assert torch.equal(_map(mapper, record, seed)["image"], expected)
