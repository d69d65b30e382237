"""DatasetCatalog and MetadataCatalog."""

import pytest

from engine_lib.data import DatasetCatalog, MetadataCatalog
from engine_lib.utils.errors import UnknownNameError


def test_register_get_is_cached(names):
    calls = []

    def load():
        calls.append(1)
        return [{"image": None, "label": 0, "image_id": 0}]

    DatasetCatalog.register("tmp_catalog_a", load)
    names.append("tmp_catalog_a")
    first = DatasetCatalog.get("tmp_catalog_a")
    assert DatasetCatalog.get("tmp_catalog_a") is first
    assert len(calls) == 1
    assert "tmp_catalog_a" in DatasetCatalog.list()


def test_duplicate_registration_is_an_error(names):
    DatasetCatalog.register("tmp_catalog_b", list)
    names.append("tmp_catalog_b")
    with pytest.raises(ValueError, match="'tmp_catalog_b' is already registered"):
        DatasetCatalog.register("tmp_catalog_b", list)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownNameError) as info:
        DatasetCatalog.get("digit_train")
    message = str(info.value)
    assert "'digit_train' is not registered" in message
    assert "Did you mean 'digits_train'" in message
    assert "digits_test" in message  # the list of registered names
    assert isinstance(info.value, KeyError)


def test_remove_drops_function_and_cache(names):
    DatasetCatalog.register("tmp_catalog_c", lambda: [{"label": 1}])
    DatasetCatalog.get("tmp_catalog_c")
    DatasetCatalog.remove("tmp_catalog_c")
    assert "tmp_catalog_c" not in DatasetCatalog.list()
    with pytest.raises(UnknownNameError):
        DatasetCatalog.get("tmp_catalog_c")


def test_loader_returning_wrong_type_is_reported(names):
    DatasetCatalog.register("tmp_catalog_d", lambda: {"label": 1})
    names.append("tmp_catalog_d")
    with pytest.raises(TypeError, match="tmp_catalog_d.*expected a list of dicts"):
        DatasetCatalog.get("tmp_catalog_d")


def test_metadata_attribute_access_and_set_once(names):
    names.append("tmp_catalog_meta")
    meta = MetadataCatalog.get("tmp_catalog_meta")
    meta.set(thing_classes=["cat", "dog"])
    assert MetadataCatalog.get("tmp_catalog_meta").thing_classes == ["cat", "dog"]
    meta.set(thing_classes=["cat", "dog"])  # same value again: fine
    with pytest.raises(ValueError, match="thing_classes.*already"):
        meta.set(thing_classes=["dog", "cat"])
    with pytest.raises(ValueError, match="already"):
        meta.thing_classes = ["x"]
    with pytest.raises(AttributeError, match="has no 'colors'.*thing_classes"):
        _ = meta.colors
    assert meta.get("colors", "none") == "none"
    assert "tmp_catalog_meta" in MetadataCatalog.list()


def test_builtin_digits_metadata():
    assert MetadataCatalog.get("digits_train").thing_classes == [str(d) for d in range(10)]
    assert {"digits_train", "digits_test"} <= set(DatasetCatalog.list())


def test_registering_builtins_again_is_harmless():
    from engine_lib.data.datasets import register_all_builtin

    register_all_builtin()
    assert DatasetCatalog.list().count("digits_train") == 1
