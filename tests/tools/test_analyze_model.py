"""tools/analyze_model.py on the digits config."""

import os

import pytest

from engine_lib.config import get_cfg, load_config_extension
from engine_lib.utils.errors import ConfigError
from tests.tools._load import REPO, load_tool

analyze_tool = load_tool("analyze_model")
CONFIG = os.path.join(REPO, "configs", "Digits", "cnn.yaml")


def run(capsys, *argv):
    analyze_tool.main(analyze_tool.get_parser().parse_args(["--config-file", CONFIG, *argv]))
    return capsys.readouterr().out


def test_parameters_and_flops_of_the_digits_cnn(capsys):
    out = run(capsys)
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    expected = sum(p.numel() for p in analyze_tool.build_model(cfg).parameters())
    assert f"Total parameters: {expected:,} (trainable: {expected:,})" in out
    assert "backbone" in out and "head" in out
    flop_line = next(line for line in out.splitlines() if line.startswith("Total FLOPs per image"))
    flops = int(flop_line.split(":")[1].split("(")[0].replace(",", ""))
    assert flops > 0
    assert "1 image(s) of size (3, 32, 32)" in out  # the dummy batch follows INPUT.SIZE_TEST


def test_flops_scale_with_input_size():
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    model = analyze_tool.build_model(cfg)
    small = analyze_tool.dummy_images(cfg, "cpu")
    _, one = analyze_tool.analyze_flops(model, small, max_depth=1)
    assert one > 0
    cfg.INPUT.SIZE_TEST = [64, 64]
    _, bigger = analyze_tool.analyze_flops(model, analyze_tool.dummy_images(cfg, "cpu"), 1)
    # Convolutions dominate: four times the pixels, about four times the flops.
    assert 3.5 * one < bigger < 4.5 * one


def test_parameter_task_only_and_overrides(capsys):
    out = run(capsys, "--tasks", "parameter", "MODEL.BACKBONE.WIDTH", "8")
    assert "FLOPs" not in out
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.MODEL.BACKBONE.WIDTH = 8
    expected = sum(p.numel() for p in analyze_tool.build_model(cfg).parameters())
    assert f"Total parameters: {expected:,} " in out


def test_a_project_config_with_its_extra_keys(capsys):
    config = os.path.join(REPO, "projects", "MetricLearning", "configs", "digits_triplet.yaml")
    spec = os.path.join(REPO, "projects", "MetricLearning") + (
        ":metric_learning.add_metric_learning_config"
    )
    argv = ["--config-file", config, "--extra-config", spec, "--tasks", "parameter"]
    analyze_tool.main(analyze_tool.get_parser().parse_args(argv))
    out = capsys.readouterr().out
    assert "head.embedding" in out and "head.bnneck" in out  # the project's model was built


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("no_function_here", "expected DIR:MODULE.FUNCTION"),
        ("/no/such/dir:pkg.add_x_config", "does not exist"),
        ("no_such_module_xyz.add_x_config", "cannot import 'no_such_module_xyz'"),
        ("engine_lib.config.add_nothing_config", "has no function 'add_nothing_config'"),
    ],
)
def test_bad_extra_config_names_the_spec_and_the_expected_form(spec, needle):
    with pytest.raises(ConfigError) as info:
        load_config_extension(spec)
    assert spec in str(info.value) and needle in str(info.value)
