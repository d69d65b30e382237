"""Tests of the config tree, merges and their error messages."""

import ast
import inspect
import os

import pytest
import yaml

from engine_lib.config import (
    CfgNode,
    configurable,
    get_cfg,
    register_validator,
    register_value_check,
)
from engine_lib.config import defaults as defaults_module
from engine_lib.utils.errors import ConfigError, ConfigKeyError, UserError


def write(path, text):
    path.write_text(text)
    return str(path)


def test_get_cfg_returns_independent_copies():
    a, b = get_cfg(), get_cfg()
    a.SOLVER.BASE_LR = 123.0
    assert b.SOLVER.BASE_LR != 123.0
    assert isinstance(a, CfgNode)


def test_required_groups_and_keys_exist():
    cfg = get_cfg()
    for key in [
        "VERSION",
        "MODEL.DEVICE",
        "MODEL.META_ARCHITECTURE",
        "MODEL.WEIGHTS",
        "MODEL.PIXEL_MEAN",
        "MODEL.PIXEL_STD",
        "MODEL.BACKBONE.NAME",
        "MODEL.HEADS.NUM_CLASSES",
        "INPUT.FORMAT",
        "DATASETS.TRAIN",
        "DATASETS.TEST",
        "DATALOADER.NUM_WORKERS",
        "DATALOADER.SAMPLER_TRAIN",
        "SOLVER.OPTIMIZER",
        "SOLVER.BASE_LR",
        "SOLVER.MOMENTUM",
        "SOLVER.WEIGHT_DECAY",
        "SOLVER.WEIGHT_DECAY_NORM",
        "SOLVER.BIAS_LR_FACTOR",
        "SOLVER.LR_SCHEDULER_NAME",
        "SOLVER.STEPS",
        "SOLVER.GAMMA",
        "SOLVER.WARMUP_ITERS",
        "SOLVER.WARMUP_FACTOR",
        "SOLVER.WARMUP_METHOD",
        "SOLVER.MAX_ITER",
        "SOLVER.IMS_PER_BATCH",
        "SOLVER.CHECKPOINT_PERIOD",
        "SOLVER.MAX_TO_KEEP",
        "SOLVER.CLIP_GRADIENTS.ENABLED",
        "SOLVER.AMP.ENABLED",
        "SOLVER.GRAD_ACCUM_STEPS",
        "TEST.EVAL_PERIOD",
        "TEST.EXPECTED_RESULTS",
        "TEST.PRECISE_BN.ENABLED",
        "OUTPUT_DIR",
        "SEED",
        "CUDNN_BENCHMARK",
    ]:
        node = cfg
        for part in key.split("."):
            assert part in node, key
            node = node[part]


def test_every_default_key_has_a_comment():
    """Each assignment to the defaults tree is directly preceded by a comment line."""
    source = inspect.getsource(defaults_module).splitlines()
    missing = []
    for i, line in enumerate(source):
        if line.startswith("_C.") and "= CN()" not in line:
            above = source[i - 1].strip()
            if not above.startswith("#"):
                missing.append(line)
    assert not missing, f"keys without a comment: {missing}"
    # And the file is valid python with at least one comment per key group.
    ast.parse("\n".join(source))


def test_merge_from_list_coerces_and_validates():
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", "1", "SOLVER.STEPS", "[10, 20]", "MODEL.DEVICE", "cpu"])
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    assert cfg.SOLVER.STEPS == (10, 20)
    with pytest.raises(ConfigError, match=r"SOLVER\.MAX_ITER.*expected int.*got str 'many'"):
        cfg.merge_from_list(["SOLVER.MAX_ITER", "many"])


def test_unknown_key_on_command_line_names_key_suggestion_and_source():
    cfg = get_cfg()
    with pytest.raises(ConfigKeyError) as info:
        cfg.merge_from_list(["SOLVER.BASE_LRR", "0.1"])
    msg = str(info.value)
    assert "SOLVER.BASE_LRR" in msg
    assert "Did you mean: SOLVER.BASE_LR" in msg
    assert "command line" in msg
    assert isinstance(info.value, UserError) and isinstance(info.value, KeyError)


def test_unknown_top_level_key_suggests_nested_key():
    cfg = get_cfg()
    with pytest.raises(ConfigKeyError, match=r"'WEIGHTS'.*Did you mean: MODEL\.WEIGHTS"):
        cfg.merge_from_list(["WEIGHTS", "x.pth"])


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    path = write(tmp_path / "bad.yaml", "MODEL:\n  WIEGHTS: x.pth\n")
    cfg = get_cfg()
    with pytest.raises(ConfigKeyError) as info:
        cfg.merge_from_file(path)
    msg = str(info.value)
    assert "MODEL.WIEGHTS" in msg and "MODEL.WEIGHTS" in msg and "bad.yaml" in msg


def test_unknown_key_in_base_file_names_the_base(tmp_path):
    write(tmp_path / "base.yaml", "SOLVER:\n  MAX_ITERS: 3\n")
    path = write(tmp_path / "child.yaml", "_BASE_: base.yaml\nSOLVER:\n  BASE_LR: 0.5\n")
    with pytest.raises(ConfigKeyError, match=r"SOLVER\.MAX_ITERS.*base\.yaml.*SOLVER\.MAX_ITER"):
        get_cfg().merge_from_file(path)


def test_wrong_type_in_yaml(tmp_path):
    path = write(tmp_path / "t.yaml", "SOLVER:\n  IMS_PER_BATCH: [1, 2]\n")
    with pytest.raises(ConfigError) as info:
        get_cfg().merge_from_file(path)
    msg = str(info.value)
    assert "SOLVER.IMS_PER_BATCH" in msg and "expected int" in msg and "[1, 2]" in msg
    assert "t.yaml" in msg


def test_group_given_a_value(tmp_path):
    path = write(tmp_path / "g.yaml", "SOLVER: 3\n")
    with pytest.raises(ConfigError, match=r"'SOLVER'.*group of keys"):
        get_cfg().merge_from_file(path)


def test_odd_number_of_opts():
    with pytest.raises(ConfigError, match=r"odd number \(3\).*'SOLVER.GAMMA' has no value"):
        get_cfg().merge_from_list(["SOLVER.BASE_LR", "0.1", "SOLVER.GAMMA"])


def test_base_string_and_list_relative_to_including_file(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "a.yaml", "SOLVER:\n  BASE_LR: 0.5\n  MAX_ITER: 7\n")
    write(tmp_path / "b.yaml", "SOLVER:\n  MAX_ITER: 9\nSEED: 3\n")
    write(tmp_path / "sub" / "mid.yaml", "_BASE_: ../a.yaml\nSOLVER:\n  GAMMA: 0.5\n")
    path = write(
        tmp_path / "sub" / "top.yaml",
        "_BASE_: [mid.yaml, ../b.yaml]\nSEED: 11\n",
    )
    cfg = get_cfg()
    cfg.merge_from_file(path)
    assert cfg.SOLVER.BASE_LR == 0.5  # from a.yaml via mid.yaml
    assert cfg.SOLVER.GAMMA == 0.5  # from mid.yaml
    assert cfg.SOLVER.MAX_ITER == 9  # b.yaml comes after mid.yaml in the list
    assert cfg.SEED == 11  # the including file wins


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path / "m.yaml", "SOLVER:\n  BASE_LR: 0.1\n  STEPS: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        get_cfg().merge_from_file(path)
    msg = str(info.value)
    assert "m.yaml" in msg and "line" in msg and "Malformed YAML" in msg


def test_unsafe_yaml_tag_is_refused(tmp_path):
    path = write(tmp_path / "u.yaml", "SEED: !!python/object/apply:os.getpid []\n")
    with pytest.raises(ConfigError, match="u.yaml"):
        get_cfg().merge_from_file(path)


@pytest.mark.parametrize(
    "text,pattern",
    [("", "is empty"), ("# only a comment\n", "is empty"), ("- 1\n- 2\n", "holds a list")],
)
def test_empty_or_non_mapping_yaml(tmp_path, text, pattern):
    path = write(tmp_path / "e.yaml", text)
    with pytest.raises(ConfigError, match=pattern):
        get_cfg().merge_from_file(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"Config file not found: '.*nope\.yaml'"):
        get_cfg().merge_from_file(str(tmp_path / "nope.yaml"))


def test_missing_base_names_the_including_file(tmp_path):
    path = write(tmp_path / "child.yaml", "_BASE_: missing_base.yaml\n")
    with pytest.raises(ConfigError) as info:
        get_cfg().merge_from_file(path)
    msg = str(info.value)
    assert "missing_base.yaml" in msg and "included from" in msg and "child.yaml" in msg


def test_base_cycle_shows_the_chain(tmp_path):
    write(tmp_path / "a.yaml", "_BASE_: b.yaml\n")
    write(tmp_path / "b.yaml", "_BASE_: c.yaml\n")
    write(tmp_path / "c.yaml", "_BASE_: a.yaml\n")
    with pytest.raises(ConfigError) as info:
        get_cfg().merge_from_file(str(tmp_path / "a.yaml"))
    msg = str(info.value)
    assert "cycle" in msg
    assert msg.index("a.yaml") < msg.index("b.yaml") < msg.index("c.yaml")


def test_bad_base_value(tmp_path):
    path = write(tmp_path / "x.yaml", "_BASE_: 3\n")
    with pytest.raises(ConfigError, match=r"_BASE_ in '.*x\.yaml' must be a file name"):
        get_cfg().merge_from_file(path)


def test_freeze_defrost_and_frozen_merge():
    cfg = get_cfg()
    cfg.freeze()
    with pytest.raises(ConfigError, match="frozen"):
        cfg.merge_from_list(["SEED", "1"])
    with pytest.raises(AttributeError):
        cfg.SEED = 3
    cfg.defrost()
    cfg.merge_from_list(["SEED", "1"])
    assert cfg.SEED == 1


def test_dump_round_trip(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.BASE_LR", "0.25", "DATASETS.TRAIN", "('a', 'b')"])
    path = tmp_path / "config.yaml"
    path.write_text(cfg.dump())
    assert yaml.safe_load(path.read_text())["SOLVER"]["BASE_LR"] == 0.25
    other = get_cfg()
    other.merge_from_file(str(path))
    assert other == cfg


def test_project_keys_via_add_config_function(tmp_path):
    def add_my_project_config(cfg):
        cfg.MY_PROJECT = CfgNode()
        cfg.MY_PROJECT.ALPHA = 0.5

    cfg = get_cfg()
    add_my_project_config(cfg)
    cfg.merge_from_file(write(tmp_path / "p.yaml", "MY_PROJECT:\n  ALPHA: 2\n"))
    assert cfg.MY_PROJECT.ALPHA == 2.0
    with pytest.raises(ConfigKeyError, match=r"MY_PROJECT\.ALPHAA.*MY_PROJECT\.ALPHA"):
        cfg.merge_from_list(["MY_PROJECT.ALPHAA", "1"])


def test_new_allowed_nodes_accept_new_keys():
    cfg = get_cfg()
    cfg.EXTRA = CfgNode(new_allowed=True)
    cfg.merge_from_list(["EXTRA.ANYTHING", "5"])
    assert cfg.EXTRA.ANYTHING == 5


class _Widget:
    @configurable
    def __init__(self, width: int, depth: int = 2):
        self.width, self.depth = width, depth

    @classmethod
    def from_config(cls, cfg, depth=3):
        return {"width": cfg.MODEL.BACKBONE.WIDTH, "depth": depth}


def test_configurable_class_both_ways():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.WIDTH = 7
    assert vars(_Widget(5)) == {"width": 5, "depth": 2}
    assert vars(_Widget(cfg)) == {"width": 7, "depth": 3}
    assert vars(_Widget(cfg, depth=9)) == {"width": 7, "depth": 9}
    assert vars(_Widget(cfg=cfg)) == {"width": 7, "depth": 3}


def test_configurable_function_and_overrides():
    def from_cfg(cfg):
        return {"lr": cfg.SOLVER.BASE_LR, "steps": cfg.SOLVER.MAX_ITER}

    @configurable(from_config=from_cfg)
    def make(lr, steps, name="x"):
        return lr, steps, name

    cfg = get_cfg()
    assert make(0.5, 3) == (0.5, 3, "x")
    assert make(cfg) == (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, "x")
    assert make(cfg, name="y", steps=1) == (cfg.SOLVER.BASE_LR, 1, "y")


def test_configurable_requires_from_config():
    class NoBuilder:
        @configurable
        def __init__(self, a):
            self.a = a

    assert NoBuilder(1).a == 1
    with pytest.raises(TypeError, match="from_config"):
        NoBuilder(get_cfg())


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The projects that add config keys: (package, function adding them).
PROJECT_KEYS = {
    "Detection": ("detection", "add_detection_config"),
    "ImageClassification": ("image_classification", "add_image_classification_config"),
    "MetricLearning": ("metric_learning", "add_metric_learning_config"),
}


def _shipped_configs():
    """Every YAML under configs/ and projects/*/configs/, with its project (None: engine)."""
    found = []
    for project in [None, *sorted(os.listdir(os.path.join(REPO, "projects")))]:
        root = (
            os.path.join(REPO, "configs")
            if project is None
            else os.path.join(REPO, "projects", project, "configs")
        )
        for d, _, names in os.walk(root):
            found += [(os.path.join(d, n), project) for n in sorted(names) if n.endswith(".yaml")]
    return found


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        elif key != "_BASE_":
            yield f"{prefix}{key}", value


def _plain(value):
    """A YAML value as the config holds it: yacs parses strings like "('a',)", keeps tuples."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def test_shipped_configs_load_with_every_key_they_set(monkeypatch):
    from engine_lib.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY

    files = _shipped_configs()
    assert {p for _, p in files} >= {None, *PROJECT_KEYS, "Distillation"}
    for path, project in files:
        cfg = get_cfg()
        if project in PROJECT_KEYS:
            package, function = PROJECT_KEYS[project]
            monkeypatch.syspath_prepend(os.path.join(REPO, "projects", project))
            getattr(__import__(package), function)(cfg)
        with open(path) as f:
            own = yaml.safe_load(f) or {}
        cfg.merge_from_file(path)
        # Each key the file itself sets holds the file's value (not a base's, not a default).
        for key, value in _leaves(own):
            node = cfg
            for part in key.split("."):
                node = node[part]
            assert _plain(node) == _plain(value), f"{path}: {key}"
        assert cfg.MODEL.META_ARCHITECTURE in META_ARCH_REGISTRY, path
        assert cfg.MODEL.BACKBONE.NAME in BACKBONE_REGISTRY, path


def test_rules_of_a_group_are_registered_by_its_owner(tmp_path):
    def at_most_one_mode(incoming, current, describe):
        if incoming.get("FAST") and incoming.get("SAFE"):
            raise ConfigError(f"MYPROJECT.FAST and MYPROJECT.SAFE ({describe('MYPROJECT.SAFE')})")
        if incoming.get("FAST"):
            incoming["SAFE"] = False

    def ratio(value, default, key, source):
        if not 0 <= float(value) <= 1:
            raise ConfigError(f"Config key '{key}' ({source}) must be in [0, 1], got {value!r}")
        return float(value)

    register_validator("MYPROJECT", at_most_one_mode)
    register_value_check("MYPROJECT.RATIO", ratio)
    cfg = get_cfg()
    cfg.MYPROJECT = CfgNode({"FAST": False, "SAFE": True, "RATIO": 0.5})
    cfg.merge_from_list(["MYPROJECT.FAST", "True", "MYPROJECT.RATIO", "1"])
    assert (cfg.MYPROJECT.FAST, cfg.MYPROJECT.SAFE, cfg.MYPROJECT.RATIO) == (True, False, 1.0)
    with pytest.raises(ConfigError, match=r"FAST and MYPROJECT\.SAFE \(from the command line"):
        cfg.merge_from_list(["MYPROJECT.FAST", "True", "MYPROJECT.SAFE", "True"])
    path = tmp_path / "p.yaml"
    path.write_text("MYPROJECT:\n  RATIO: 2\n")
    with pytest.raises(ConfigError, match=r"MYPROJECT\.RATIO.*p\.yaml.*\[0, 1\]"):
        cfg.merge_from_file(str(path))
