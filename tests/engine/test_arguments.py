"""default_argument_parser: flags, --resume forms, and validation messages."""

import argparse
import os
import re

import pytest

from engine_lib.engine.arguments import (
    default_argument_parser,
    default_dist_url,
    validate_launch_args,
)
from engine_lib.utils.errors import ConfigError


def parse(*argv):
    return default_argument_parser().parse_args(list(argv))


def parse_error(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        parse(*argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_defaults():
    args = parse()
    assert args.config_file == ""
    assert args.resume is False and args.eval_only is False
    assert (args.num_gpus, args.num_machines, args.machine_rank) == (1, 1, 0)
    assert args.dist_url == default_dist_url()
    assert args.opts == []


def test_default_dist_url_port_comes_from_the_user_id():
    match = re.fullmatch(r"tcp://127\.0\.0\.1:(\d+)", default_dist_url())
    assert match is not None
    assert int(match.group(1)) == 10000 + os.getuid() % 20000


def test_all_flags_and_overrides():
    args = parse(
        "--config-file", "a.yaml", "--eval-only", "--num-gpus", "4", "--num-machines", "2",
        "--machine-rank", "1", "--dist-url", "tcp://10.0.0.1:29500",
        "SOLVER.BASE_LR", "0.1", "MODEL.DEVICE", "cpu",
    )  # fmt: skip
    assert args.config_file == "a.yaml" and args.eval_only
    assert (args.num_gpus, args.num_machines, args.machine_rank) == (4, 2, 1)
    assert args.dist_url == "tcp://10.0.0.1:29500"
    assert args.opts == ["SOLVER.BASE_LR", "0.1", "MODEL.DEVICE", "cpu"]


@pytest.mark.parametrize(
    "argv, resume, opts",
    [
        (["--resume"], True, []),
        (["--resume", "--num-gpus", "2"], True, []),
        (["--resume", "out/model_0000999.pth"], "out/model_0000999.pth", []),
        (["--resume", "out/m.pth", "SOLVER.MAX_ITER", "9"], "out/m.pth", ["SOLVER.MAX_ITER", "9"]),
        # A config key right after --resume is an override, not a checkpoint path.
        (["--resume", "MODEL.WEIGHTS", "w.pth"], True, ["MODEL.WEIGHTS", "w.pth"]),
    ],
)
def test_resume_forms(argv, resume, opts):
    args = parse(*argv)
    assert args.resume == resume and type(args.resume) is type(resume)
    assert args.opts == opts


def test_auto_and_file_urls_are_accepted():
    assert parse("--dist-url", "auto", "--num-gpus", "2").dist_url == "auto"
    assert parse("--dist-url", "file:///shared/rdzv", "--num-machines", "2").num_machines == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num-gpus", "0"], "--num-gpus must be at least 1, got 0"),
        (["--num-machines", "0"], "--num-machines must be at least 1, got 0"),
        (
            ["--num-machines", "2", "--machine-rank", "2", "--dist-url", "tcp://10.0.0.1:1234"],
            "--machine-rank 2 is out of range for --num-machines 2: expected 0 to 1",
        ),
        (["--machine-rank", "-1"], "--machine-rank -1 is out of range"),
        (["--num-machines", "2"], "needs --dist-url tcp://HOST:PORT of machine 0"),
        (
            ["--num-machines", "2", "--dist-url", "tcp://localhost:1234"],
            "points to this machine, but --num-machines is 2",
        ),
        (["--num-machines", "2", "--dist-url", "auto"], "--dist-url auto picks a port"),
        (["--dist-url", "10.0.0.1:1234"], "expected tcp://HOST:PORT"),
        (["--dist-url", "tcp://10.0.0.1"], "expected tcp://HOST:PORT"),
        (["--dist-url", "tcp://10.0.0.1:99999"], "expected tcp://HOST:PORT"),
        (["SOLVER.BASE_LR"], "'SOLVER.BASE_LR' has no value"),
        (["SOLVER.BASE_LR", "0.1", "--resume"], "--resume after the config overrides"),
    ],
)
def test_invalid_launch_flags_exit_with_a_clear_message(capsys, argv, message):
    err = parse_error(capsys, *argv)
    assert "usage:" in err
    assert message in err


def test_scripts_can_add_arguments_and_still_get_validation(capsys):
    parser = default_argument_parser(epilog="my epilog")
    parser.add_argument("--my-flag", type=int, default=3)
    assert parser.parse_args(["--my-flag", "4"]).my_flag == 4
    assert parser.epilog == "my epilog"
    with pytest.raises(SystemExit):
        parser.parse_args(["--num-gpus", "0"])
    assert "--num-gpus must be at least 1" in capsys.readouterr().err


def test_validate_launch_args_raises_config_error():
    args = argparse.Namespace(
        resume=False, num_gpus=1, num_machines=1, machine_rank=3, dist_url="auto", opts=[]
    )
    with pytest.raises(ConfigError, match="--machine-rank 3"):
        validate_launch_args(args)


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit):
        parse("--help")
    out = capsys.readouterr().out
    assert "--machine-rank 1 --num-machines 2" in out and "--resume" in out
