"""docs/config_reference.md is generated from defaults.py and kept up to date."""

import importlib.util
import inspect
import os

import pytest

from engine_lib.config import defaults as defaults_module
from engine_lib.config import get_cfg
from engine_lib.utils.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_generator():
    path = os.path.join(REPO, "tools", "gen_config_reference.py")
    spec = importlib.util.spec_from_file_location("gen_config_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = load_generator()


def leaf_keys(node, prefix=""):
    keys = []
    for name, value in node.items():
        full = f"{prefix}{name}"
        if isinstance(value, type(node)):
            keys += leaf_keys(value, full + ".")
        else:
            keys.append(full)
    return keys


def test_reference_is_up_to_date():
    path = gen.reference_path()
    with open(path) as f:
        on_disk = f.read()
    assert on_disk == gen.build_reference(), (
        "docs/config_reference.md is out of date: run `python tools/gen_config_reference.py`"
    )


def test_every_key_is_documented_with_its_default():
    keys = gen.parse_defaults(inspect.getsource(defaults_module), defaults_module._C)
    assert sorted(k.name for k in keys) == sorted(leaf_keys(get_cfg()))
    by_name = {k.name: k for k in keys}
    assert by_name["SOLVER.BASE_LR"].default == 0.01
    assert by_name["SOLVER.BASE_LR"].comment.startswith("Base learning rate")
    # A comment of several lines is joined into one description.
    assert "longest matching prefix wins" in by_name["SOLVER.LR_FACTORS"].comment
    text = gen.generate(keys)
    assert "| `SOLVER.BASE_LR` | `0.01` | Base learning rate" in text
    assert "| `DATASETS.TRAIN` | `[digits_train]` |" in text


def test_a_new_key_changes_the_reference_and_fails_the_check(tmp_path):
    source = inspect.getsource(defaults_module)
    cfg = get_cfg()
    cfg.SOLVER.NEW_KNOB = 3
    added = (
        source + "\n# A knob added without regenerating the reference.\n_C.SOLVER.NEW_KNOB = 3\n"
    )
    text = gen.generate(gen.parse_defaults(added, cfg))
    assert "| `SOLVER.NEW_KNOB` | `3` | A knob added without regenerating" in text
    assert text != gen.build_reference()
    # The --check mode compares the file with the reference generated now.
    stale = tmp_path / "config_reference.md"
    stale.write_text(text)
    assert not gen.is_up_to_date(str(stale))
    with pytest.raises(gen.UserError, match="out of date"):
        gen.main(gen.get_parser().parse_args(["--check", "--output", str(stale)]))
    gen.main(gen.get_parser().parse_args(["--output", str(stale)]))
    assert gen.is_up_to_date(str(stale))


def test_a_key_without_comment_is_an_error():
    source = "_C = CN()\n_C.SOLVER = CN()\n\n_C.SOLVER.BASE_LR = 0.01\n"
    with pytest.raises(ConfigError, match="SOLVER.BASE_LR has no"):
        gen.parse_defaults(source, get_cfg())
