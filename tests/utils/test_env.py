import logging
import random

import numpy as np
import pytest
import torch
from packaging.version import Version

from engine_lib.utils import collect_env
from engine_lib.utils.env import TORCH_VERSION, seed_all_rng
from engine_lib.utils.errors import ConfigError


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))  # noqa: NPY002


def test_same_seed_same_draws_for_every_generator():
    assert seed_all_rng(123) == 123
    first = _draws()
    seed_all_rng(123)
    assert _draws() == first
    seed_all_rng(124)
    second = _draws()
    assert all(a != b for a, b in zip(first, second))


def test_no_seed_draws_and_logs_one(caplog):
    with caplog.at_level(logging.INFO, logger="engine_lib.utils.env"):
        seed = seed_all_rng()
    assert isinstance(seed, int) and 0 <= seed < 2**32
    assert str(seed) in caplog.text
    first = _draws()
    seed_all_rng(seed)
    assert _draws() == first


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "3"])
def test_bad_seed_is_a_config_error(bad):
    with pytest.raises(ConfigError, match=r"integer in \[0, 2\*\*32\)"):
        seed_all_rng(bad)


def test_torch_version_tuple():
    # packaging parses local versions too ("2.5.1+cu121", "2.6.0a0+git1234"), independently.
    assert TORCH_VERSION == Version(torch.__version__).release[:2]
    assert all(isinstance(part, int) for part in TORCH_VERSION) and TORCH_VERSION >= (2, 0)


def test_collect_env_info_lists_key_packages():
    info = collect_env.collect_env_info()
    labels = [line.split()[0] for line in info.splitlines()]
    for label in [
        "Python",
        "engine_lib",
        "PyTorch",
        "CUDA",
        "torchvision",
        "fvcore",
        "iopath",
        "yacs",
        "numpy",
        "PIL",
        "tensorboard",
        "scikit-learn",
    ]:
        assert label in labels, label
    assert torch.__version__ in info
    assert np.__version__ in info


def test_collect_env_info_survives_a_missing_package(monkeypatch):
    monkeypatch.setattr(
        collect_env, "_PACKAGES", collect_env._PACKAGES + [("ghost", "no-such-dist-xyz", None)]
    )
    info = collect_env.collect_env_info()
    assert any("ghost" in line and "not found" in line for line in info.splitlines())
