"""Sharded (DCP) checkpoints in one process: save, resume, asynchronous completion,
incomplete directories, MAX_TO_KEEP, weights loading, and the conversion tool."""

import os
import shutil
import sys

import pytest
import torch
from torch import nn

from engine_lib.checkpoint import Checkpointer, PeriodicCheckpointer
from engine_lib.checkpoint.sharded import read_sharded_weights
from engine_lib.data.samplers import TrainingSampler

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))

import convert_checkpoint  # noqa: E402


class Counter:
    """A stateful checkpointable that is neither model nor optimizer."""

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.value = int(state["value"])


def _parts(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    return model, optimizer, Counter()


def _train(model, optimizer, steps: int = 2) -> None:
    for _ in range(steps):
        model(torch.randn(4, 6)).square().sum().backward()
        optimizer.step()
        optimizer.zero_grad()


def _checkpointer(out, model, optimizer, counter, **kwargs):
    return Checkpointer(
        model, str(out), checkpoint_format="dcp", optimizer=optimizer, counter=counter, **kwargs
    )


def _assert_same_state(a_model, a_opt, b_model, b_opt):
    for (name, a), b in zip(a_model.state_dict().items(), b_model.state_dict().values()):
        assert torch.equal(a, b), name
    for i, state in a_opt.state_dict()["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b_opt.state_dict()["state"][i][key]), (i, key)


def test_save_and_resume_restore_everything(tmp_path):
    model, optimizer, counter = _parts(0)
    _train(model, optimizer)
    counter.value = 7
    _checkpointer(tmp_path, model, optimizer, counter).save("model_0000004", iteration=4)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004"
    assert (tmp_path / "model_0000004" / ".metadata").is_file()
    assert not list(tmp_path.glob("*.incomplete"))

    model2, optimizer2, counter2 = _parts(1)
    extra = _checkpointer(tmp_path, model2, optimizer2, counter2).resume_or_load("", resume=True)
    assert extra["iteration"] == 4 and counter2.value == 7
    _assert_same_state(model, optimizer, model2, optimizer2)


def test_async_save_moves_last_checkpoint_only_when_finished(tmp_path):
    model, optimizer, counter = _parts(0)
    checkpointer = _checkpointer(tmp_path, model, optimizer, counter, async_save=True)
    checkpointer.save("model_0000004", iteration=4)
    checkpointer.wait()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004"
    _train(model, optimizer)
    checkpointer.save("model_0000009", iteration=9)
    # In flight, or written but not yet finished by the training thread: not a resume point.
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004"
    assert not (tmp_path / "model_0000009").exists()
    assert (tmp_path / "model_0000009.incomplete").is_dir()
    checkpointer.wait()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009"
    assert not checkpointer.poll()
    assert not (tmp_path / "model_0000009.incomplete").exists()


def test_resume_skips_incomplete_directories(tmp_path, caplog):
    model, optimizer, counter = _parts(0)
    _checkpointer(tmp_path, model, optimizer, counter).save("model_0000004", iteration=4)
    # A save killed before its rename, and a directory with metadata but no trainer state.
    shutil.copytree(tmp_path / "model_0000004", tmp_path / "model_0000014.incomplete")
    shutil.copytree(tmp_path / "model_0000004", tmp_path / "model_0000009")
    os.remove(tmp_path / "model_0000009" / "extra_state.pth")
    (tmp_path / "last_checkpoint").write_text("model_0000009")
    model2, optimizer2, counter2 = _parts(1)
    with caplog.at_level("WARNING"):
        extra = _checkpointer(tmp_path, model2, optimizer2, counter2).resume_or_load("")
    assert extra["iteration"] == 4
    assert "model_0000009 is incomplete" in caplog.text
    _assert_same_state(model, optimizer, model2, optimizer2)


def test_max_to_keep_deletes_old_directories(tmp_path):
    model, optimizer, counter = _parts(0)
    periodic = PeriodicCheckpointer(
        _checkpointer(tmp_path, model, optimizer, counter), period=1, max_iter=4, max_to_keep=2
    )
    for iteration in range(4):
        periodic.step(iteration)
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert names == ["model_0000002", "model_0000003", "model_final"]


def test_directory_loads_as_weights_and_converts_both_ways(tmp_path):
    model, optimizer, counter = _parts(0)
    _checkpointer(tmp_path, model, optimizer, counter).save("model_final")
    other, _, _ = _parts(1)
    assert Checkpointer(other).load(str(tmp_path / "model_final")) == {}
    _assert_same_state(model, optimizer, other, optimizer)

    as_file = tmp_path / "weights.pth"
    assert convert_checkpoint.main([str(tmp_path / "model_final"), str(as_file)]) == 0
    assert set(torch.load(as_file, weights_only=True)) == {"model"}
    back = tmp_path / "weights_dcp"
    assert convert_checkpoint.main([str(as_file), str(back)]) == 0
    weights = read_sharded_weights(str(back))
    for name, value in model.state_dict().items():
        assert torch.equal(weights[name], value), name
    assert convert_checkpoint.main([str(as_file), str(back)]) == 2  # refuses to overwrite


def test_bad_format_is_a_one_line_error():
    with pytest.raises(ValueError, match="checkpoint_format must be 'torch' or 'dcp'"):
        Checkpointer(nn.Linear(1, 1), checkpoint_format="zip")


@pytest.mark.parametrize("new_world", [1, 4, 3])
def test_sampler_continues_the_global_stream_on_another_world_size(new_world):
    """2 ranks took 6 samples each; M ranks continue at global position 12 with nothing
    skipped or repeated (3 ranks: 12 is divisible by 3 too)."""
    old = [TrainingSampler(10, seed=3, rank=r, world_size=2) for r in range(2)]
    single = TrainingSampler(10, seed=3, rank=0, world_size=1)
    global_stream = [i for _, i in zip(range(40), single)]
    taken = [[i for _, i in zip(range(6), iter(s))] for s in old]
    assert sorted(taken[0] + taken[1]) == sorted(global_stream[:12])
    state = {**old[0].state_dict(), "position": 6}
    new = [TrainingSampler(10, seed=0, rank=r, world_size=new_world) for r in range(new_world)]
    for sampler in new:
        sampler.load_state_dict(state)
        assert sampler.position == 12 // new_world
    nxt = [[i for _, i in zip(range(4), iter(s))] for s in new]
    # Round-robin over the ranks gives back the global stream from position 12 on.
    merged = [nxt[k % new_world][k // new_world] for k in range(4 * new_world)]
    assert merged == global_stream[12 : 12 + 4 * new_world]
