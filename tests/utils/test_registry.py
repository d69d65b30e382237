import pytest

from engine_lib.utils.errors import UnknownNameError, UserError
from engine_lib.utils.registry import Registry


@pytest.fixture
def backbones():
    registry = Registry("BACKBONE")

    @registry.register()
    class ResNet:
        pass

    class MobileNet:
        pass

    registry.register(MobileNet)
    return registry


def test_register_decorator_and_call_forms(backbones):
    assert backbones.get("ResNet").__name__ == "ResNet"
    assert backbones.get("MobileNet").__name__ == "MobileNet"
    assert "ResNet" in backbones
    assert sorted(name for name, _ in backbones) == ["MobileNet", "ResNet"]


def test_unknown_name_suggests_closest_and_lists_all(backbones):
    with pytest.raises(UnknownNameError) as info:
        backbones.get("ResNte")
    message = str(info.value)
    assert "'ResNte'" in message
    assert "BACKBONE" in message
    assert "Did you mean 'ResNet'?" in message
    assert "MobileNet, ResNet" in message
    assert isinstance(info.value, KeyError) and isinstance(info.value, UserError)


def test_suggestion_ignores_case(backbones):
    with pytest.raises(KeyError, match="Did you mean 'ResNet'"):
        backbones.get("resnet")


def test_no_suggestion_for_unrelated_name(backbones):
    with pytest.raises(UnknownNameError) as info:
        backbones.get("Transformer")
    assert "Did you mean" not in str(info.value)
    assert "Registered names: MobileNet, ResNet" in str(info.value)


def test_empty_registry_says_so():
    with pytest.raises(UnknownNameError, match=r"Registered names: \(none\)"):
        Registry("EMPTY").get("x")


def test_duplicate_registration_names_both(backbones):
    class ResNet:
        pass

    with pytest.raises(ValueError, match="'ResNet' is already registered in the BACKBONE"):
        backbones.register(ResNet)


def test_register_under_a_given_name_and_lookup_for_a_config_key(backbones):
    from engine_lib.utils.errors import ConfigError

    @backbones.register("Tiny")
    def build_tiny():
        return "tiny"

    assert backbones.get("Tiny") is build_tiny and build_tiny() == "tiny"
    assert backbones.get_for_key("MODEL.BACKBONE.NAME", "ResNet").__name__ == "ResNet"
    with pytest.raises(ConfigError) as info:
        backbones.get_for_key("MODEL.BACKBONE.NAME", "Tiyn")
    message = str(info.value)
    assert message.startswith("MODEL.BACKBONE.NAME: ") and "Did you mean 'Tiny'?" in message
    assert isinstance(info.value, UnknownNameError)
