"""resume_check's comparator: bit for bit, so NaN, infinities and signed zeros are told apart."""

import math

import numpy as np
import pytest
import torch

from tests.tools._load import load_tool

judge = load_tool("resume_judge")
FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", FLOATS)
def test_special_values_differ_from_what_nan_to_num_makes_of_them(dtype):
    finfo = torch.finfo(dtype)
    pairs = [
        (float("nan"), 0.0),  # nan_to_num: 0.0
        (float("inf"), finfo.max),  # nan_to_num: the largest finite float
        (float("-inf"), finfo.min),
        (-0.0, 0.0),
    ]
    for a, b in pairs:
        x, y = torch.tensor([1.0, a], dtype=dtype), torch.tensor([1.0, b], dtype=dtype)
        (diff,) = judge.compare_checkpoints({"w": x}, {"w": y})
        assert diff.startswith("/w: bits differ in 1 element(s)"), (a, b, diff)
        assert judge.compare_checkpoints({"w": x}, {"w": x.clone()}) == []


def test_nan_equals_only_a_nan_with_the_same_bits():
    nan = torch.tensor([float("nan")])
    other_nan = torch.tensor([0x7FC00001], dtype=torch.int32).view(torch.float32)
    assert torch.isnan(other_nan).all()
    assert judge.compare_checkpoints([nan], [nan.clone()]) == []
    assert len(judge.compare_checkpoints([nan], [other_nan])) == 1
    assert judge.compare_checkpoints([torch.complex(nan, nan)], [torch.complex(nan, nan)]) == []


def test_dtypes_and_python_types_must_match():
    (diff,) = judge.compare_checkpoints(torch.tensor([1]), torch.tensor([1.0]))
    assert "torch.int64[1] vs torch.float32[1]" in diff
    assert judge.compare_checkpoints({"it": 1}, {"it": 1.0}) == ["/it: 1 (int) vs 1.0 (float)"]
    assert judge.compare_checkpoints({"f": True}, {"f": 1}) != []
    assert judge.compare_checkpoints({"lr": -0.0}, {"lr": 0.0}) == ["/lr: -0.0 vs 0.0"]
    assert judge.compare_checkpoints({"m": math.nan}, {"m": math.nan}) == []
    assert judge.compare_checkpoints({"m": math.nan}, {"m": 0.0}) != []
    a = np.array([0.0, np.nan])
    assert judge.compare_checkpoints([a], [a.copy()]) == []
    assert judge.compare_checkpoints([a], [np.array([-0.0, np.nan])]) != []


def test_integer_and_bool_tensors_compare_by_value_and_name_the_key():
    a = {"model": {"w": torch.zeros(3)}, "trainer": {"iteration": 4, "mask": torch.ones(2) > 0}}
    b = {"model": {"w": torch.tensor([0.0, 1e-7, 0.0])}, "trainer": {"iteration": 5}}
    diffs = judge.compare_checkpoints(a, b)
    assert diffs[0].startswith("/model/w: bits differ in 1 element(s) (max abs difference 1e-07)")
    assert diffs[1:] == ["/trainer/iteration: 4 vs 5", "/trainer/mask: missing on one side"]
    assert judge.compare_checkpoints(torch.arange(3), torch.tensor([0, 1, 3])) != []
