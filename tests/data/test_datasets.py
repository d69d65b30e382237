"""Built-in digits, ImageFolder directories and the CIFAR-10 python format."""

import os
import pickle
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from engine_lib.data import (
    DatasetCatalog,
    MetadataCatalog,
    load_digits_dicts,
    register_cifar10,
    register_image_folder,
)
from engine_lib.utils.errors import ConfigError


def test_digits_split_is_fixed_complete_and_stratified():
    train = DatasetCatalog.get("digits_train")
    test = DatasetCatalog.get("digits_test")
    assert (len(train), len(test)) == (1437, 360)
    train_ids = {d["image_id"] for d in train}
    test_ids = {d["image_id"] for d in test}
    assert not train_ids & test_ids and train_ids | test_ids == set(range(1797))
    train_counts = Counter(d["label"] for d in train)
    test_counts = Counter(d["label"] for d in test)
    assert sorted(test_counts) == list(range(10))
    for label in range(10):
        share = test_counts[label] / (train_counts[label] + test_counts[label])
        assert share == pytest.approx(360 / 1797, abs=0.01)
    sample = train[0]
    assert sample["image"].shape == (8, 8, 3) and sample["image"].dtype == np.uint8
    assert (sample["image"][..., 0] == sample["image"][..., 2]).all()  # gray as RGB
    assert max(int(d["image"].max()) for d in train[:50]) == 255
    assert [d["image_id"] for d in load_digits_dicts("test")] == [d["image_id"] for d in test]


def test_digits_size_argument_resizes():
    dicts = load_digits_dicts("test", size=16)
    assert dicts[0]["image"].shape == (16, 16, 3)
    with pytest.raises(ValueError, match="'val'"):
        load_digits_dicts("val")


def _write_png(path, color):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (5, 4), color).save(path)


def test_image_folder(tmp_path, names):
    root = tmp_path / "imgs"
    _write_png(str(root / "cat" / "a.png"), (255, 0, 0))
    _write_png(str(root / "cat" / "b.PNG"), (255, 0, 0))
    _write_png(str(root / "dog" / "c.png"), (0, 0, 255))
    (root / "dog" / "notes.txt").write_text("not an image")
    register_image_folder("tmp_folder", str(root))
    names.append("tmp_folder")
    assert MetadataCatalog.get("tmp_folder").thing_classes == ["cat", "dog"]
    dicts = DatasetCatalog.get("tmp_folder")
    assert [(d["image_id"], d["label"]) for d in dicts] == [
        (os.path.join("cat", "a.png"), 0),
        (os.path.join("cat", "b.PNG"), 0),
        (os.path.join("dog", "c.png"), 1),
    ]
    assert all(os.path.isfile(d["file_name"]) for d in dicts)


def test_image_folder_errors_name_the_folder(tmp_path, names):
    with pytest.raises(ConfigError, match="does not exist"):
        register_image_folder("tmp_missing", str(tmp_path / "nope"))
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "cat" / "x.txt").write_text("")
    register_image_folder("tmp_empty", str(tmp_path / "empty"))
    names.append("tmp_empty")
    with pytest.raises(ConfigError, match=r"empty.*contains no images"):
        DatasetCatalog.get("tmp_empty")


def _fake_cifar(folder, per_batch=3):
    """Write tiny pickles in the real CIFAR-10 python format."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for file in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        batch = {b"batch_label": file.encode(), b"data": data, b"labels": [1, 2, 9][:per_batch]}
        with open(os.path.join(folder, file), "wb") as f:
            pickle.dump(batch, f, protocol=2)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=2)


def test_cifar10(tmp_path, names):
    _fake_cifar(str(tmp_path / "cifar-10-batches-py"))
    register_cifar10("tmp_cifar_train", str(tmp_path), train=True)
    register_cifar10("tmp_cifar_test", str(tmp_path / "cifar-10-batches-py"), train=False)
    names += ["tmp_cifar_train", "tmp_cifar_test"]
    train, test = DatasetCatalog.get("tmp_cifar_train"), DatasetCatalog.get("tmp_cifar_test")
    assert (len(train), len(test)) == (15, 3)
    assert MetadataCatalog.get("tmp_cifar_test").thing_classes[9] == "truck"
    assert [d["label"] for d in test] == [1, 2, 9]
    # Rows hold 1024 red, then green, then blue values, row-major: check one pixel.
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as f:
        row = pickle.load(f, encoding="bytes")[b"data"][1]
    image = test[1]["image"]
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    y, x = 5, 7
    assert list(image[y, x]) == [row[c * 1024 + y * 32 + x] for c in range(3)]
    assert test[1]["image_id"] == "test_batch/1" and train[14]["index"] == 14


def test_cifar10_errors_name_the_missing_file(tmp_path, names):
    with pytest.raises(ConfigError, match="does not exist"):
        register_cifar10("tmp_cifar_none", str(tmp_path / "none"), train=True)
    _fake_cifar(str(tmp_path))
    os.remove(tmp_path / "data_batch_3")
    register_cifar10("tmp_cifar_partial", str(tmp_path), train=True)
    names.append("tmp_cifar_partial")
    with pytest.raises(ConfigError, match="'data_batch_3' is missing"):
        DatasetCatalog.get("tmp_cifar_partial")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar10_refuses_pickles_that_run_code(tmp_path, names):
    _fake_cifar(str(tmp_path))
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": _Exploit(), b"labels": []}, f)
    register_cifar10("tmp_cifar_evil", str(tmp_path), train=False)
    names.append("tmp_cifar_evil")
    with pytest.raises(ConfigError, match="not a valid CIFAR-10 batch.*refusing"):
        DatasetCatalog.get("tmp_cifar_evil")
