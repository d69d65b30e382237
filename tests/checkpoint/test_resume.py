"""The one resume dispatch: what each ``resume`` value means, for training and evaluation."""

import pytest
import torch

from engine_lib.checkpoint import Checkpointer, UnreadableCheckpointError
from engine_lib.checkpoint.resume import parse_resume, resume_order


@pytest.mark.parametrize(
    "resume, expected",
    [
        (True, True),
        ("auto", True),
        (False, False),
        ("", False),
        (None, False),
        ("out/model_0000009.pth", "out/model_0000009.pth"),
    ],
)
def test_parse_resume(resume, expected):
    assert parse_resume(resume) == expected


def test_parse_resume_rejects_other_types():
    with pytest.raises(TypeError, match="resume must be"):
        parse_resume(3)


class _Counter:
    def __init__(self, value=0):
        self.value = value

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.value = state["value"]


def _checkpointer(directory, weight, counter):
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(model.weight, weight)
    return Checkpointer(model, str(directory), counter=_Counter(counter))


@pytest.fixture
def saved(tmp_path):
    """A run directory with a checkpoint (weight 2, counter 7) and separate weights (weight 5)."""
    _checkpointer(tmp_path / "run", 2.0, 7).save("model_0000004", iteration=4)
    _checkpointer(tmp_path / "w", 5.0, 0).save("weights")
    return tmp_path


@pytest.mark.parametrize(
    "resume, weight, counter",
    [
        (True, 2.0, 7),  # the run's checkpoint, everything restored
        ("auto", 2.0, 7),
        (False, 5.0, 0),  # the weights only
        ("", 5.0, 0),
    ],
)
def test_resume_or_load_follows_the_rules(saved, resume, weight, counter):
    checkpointer = _checkpointer(saved / "run", 0.0, 0)
    checkpointer.resume_or_load(str(saved / "w" / "weights.pth"), resume=resume)
    assert checkpointer.model.weight.item() == weight
    assert checkpointer.checkpointables["counter"].value == counter


def test_resume_from_a_path_restores_everything_from_that_file(saved):
    checkpointer = _checkpointer(saved / "elsewhere", 0.0, 0)
    extra = checkpointer.resume_or_load(
        str(saved / "w" / "weights.pth"), resume=str(saved / "run" / "model_0000004.pth")
    )
    assert checkpointer.model.weight.item() == 2.0 and extra["iteration"] == 4
    assert checkpointer.checkpointables["counter"].value == 7
    with pytest.raises(UnreadableCheckpointError, match="nope.pth"):
        checkpointer.resume_or_load("", resume=str(saved / "nope.pth"))


def test_resume_without_a_checkpoint_loads_the_weights(saved):
    checkpointer = _checkpointer(saved / "empty", 0.0, 0)
    checkpointer.resume_or_load(str(saved / "w" / "weights.pth"), resume=True)
    assert checkpointer.model.weight.item() == 5.0
    assert checkpointer.checkpointables["counter"].value == 0


def test_resume_order():
    periodic = ["d/model_0000001.pth", "d/model_0000003.pth", "d/model_0000005.pth"]
    assert resume_order(periodic, "", "") == periodic[::-1]
    assert resume_order(periodic, "d/model_final.pth", "d/model_0000003.pth") == [
        "d/model_0000003.pth",
        "d/model_0000001.pth",
    ]
    assert resume_order(periodic, "", "d/model_best.pth")[0] == "d/model_best.pth"
