"""Tests of Checkpointer: round trip, atomic saves, safe loading, resume fallback, errors."""

import logging
import os

import numpy as np
import pytest
import torch
from torch import nn

from engine_lib.checkpoint import (
    Checkpointer,
    CheckpointError,
    UnreadableCheckpointError,
    atomic_write,
)
from engine_lib.config import get_cfg
from engine_lib.solver import build_lr_scheduler, build_optimizer
from engine_lib.utils.errors import UserError


class Pickled:
    """An arbitrary python object: weights_only must refuse to unpickle it."""

    def __init__(self) -> None:
        self.value = 42


def _model(out: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, out))


def _trainer_state(seed: int = 0):
    """A model, optimizer and scheduler after a few real SGD steps."""
    torch.manual_seed(seed)
    cfg = get_cfg()
    cfg.SOLVER.MAX_ITER = 20
    cfg.SOLVER.WARMUP_ITERS = 5
    cfg.SOLVER.STEPS = (10,)
    model = _model()
    opt = build_optimizer(cfg, model)
    sched = build_lr_scheduler(cfg, opt)
    return model, opt, sched


def _train(model, opt, sched, steps: int) -> None:
    for _ in range(steps):
        loss = model(torch.randn(6, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def _files(directory) -> list:
    return sorted(os.listdir(directory))


def test_round_trip_model_optimizer_scheduler_and_extra_data(tmp_path):
    model, opt, sched = _trainer_state()
    _train(model, opt, sched, 7)
    Checkpointer(model, str(tmp_path), optimizer=opt, scheduler=sched).save(
        "model_0000006", iteration=6, hook_states={"best": 0.5, "name": "acc"}
    )
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000006.pth"
    # loadable by anyone with weights_only=True
    torch.load(tmp_path / "model_0000006.pth", weights_only=True)

    model2, opt2, sched2 = _trainer_state(seed=1)
    extra = Checkpointer(model2, str(tmp_path), optimizer=opt2, scheduler=sched2).resume_or_load(
        "", resume=True
    )
    assert extra == {"iteration": 6, "hook_states": {"best": 0.5, "name": "acc"}}
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert sched2.last_epoch == sched.last_epoch == 7
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    # the momentum buffers came back: both continue identically
    torch.manual_seed(3)
    _train(model, opt, sched, 3)
    torch.manual_seed(3)
    _train(model2, opt2, sched2, 3)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_not_resuming_loads_weights_only(tmp_path):
    model, opt, sched = _trainer_state()
    _train(model, opt, sched, 3)
    Checkpointer(model, str(tmp_path), optimizer=opt).save("model_final", iteration=2)
    model2, opt2, _ = _trainer_state(seed=1)
    checkpointer = Checkpointer(model2, str(tmp_path / "new"), optimizer=opt2)
    extra = checkpointer.resume_or_load(str(tmp_path / "model_final.pth"), resume=True)
    assert torch.equal(model2[0].weight, model[0].weight)
    assert opt2.state_dict()["state"] == {}  # the optimizer was not restored
    assert "optimizer" in extra  # ... and is handed back unprocessed


def test_crash_while_writing_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """The crash rewrites the same name: a file written in place would be lost with it."""
    model = _model()
    checkpointer = Checkpointer(model, str(tmp_path))
    checkpointer.save("model_final", iteration=0)
    good = {k: v.clone() for k, v in model.state_dict().items()}

    real_save = torch.save

    def half_write_then_crash(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.seek(0)
        f.truncate(100)  # leave a half-written file behind, then die
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_write_then_crash)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        checkpointer.save("model_final", iteration=1)
    monkeypatch.undo()

    assert _files(tmp_path) == ["last_checkpoint", "model_final.pth"]  # no temp file left
    model2 = _model()
    extra = Checkpointer(model2, str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 0
    assert torch.equal(model2[0].weight, good["0.weight"])


def test_crash_before_last_checkpoint_update(tmp_path, monkeypatch):
    checkpointer = Checkpointer(_model(), str(tmp_path))
    checkpointer.save("model_0000000", iteration=0)
    real_replace = os.replace

    def fail_on_tag(src, dst):
        if os.path.basename(dst) == "last_checkpoint":
            raise OSError("killed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_tag)
    with pytest.raises(OSError, match="killed"):
        checkpointer.save("model_0000001", iteration=1)
    monkeypatch.undo()

    # the new file is complete, but last_checkpoint still names the old one
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000000.pth"
    assert _files(tmp_path) == ["last_checkpoint", "model_0000000.pth", "model_0000001.pth"]
    assert Checkpointer(_model(), str(tmp_path)).resume_or_load("")["iteration"] == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork to kill a writer mid-write")
def test_process_killed_mid_write_leaves_nothing_referenced(tmp_path):
    checkpointer = Checkpointer(_model(), str(tmp_path))
    checkpointer.save("model_0000000", iteration=0)
    pid = os.fork()
    if pid == 0:  # the child writes half a checkpoint and dies without any cleanup
        try:
            with atomic_write(str(tmp_path / "model_0000001.pth")) as f:
                f.write(b"PK\x03\x04 half a zip")
                f.flush()
                os._exit(9)
        finally:
            os._exit(9)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 9
    leftovers = [f for f in _files(tmp_path) if f.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".model_0000001.pth.")
    assert checkpointer.get_all_checkpoint_files() == [str(tmp_path / "model_0000000.pth")]
    assert Checkpointer(_model(), str(tmp_path)).resume_or_load("")["iteration"] == 0


def test_resume_skips_truncated_newest_with_warning(tmp_path, caplog):
    model, opt, sched = _trainer_state()
    checkpointer = Checkpointer(model, str(tmp_path), optimizer=opt, scheduler=sched)
    _train(model, opt, sched, 2)
    checkpointer.save("model_0000001", iteration=1)
    at_iter_1 = model[3].weight.detach().clone()
    _train(model, opt, sched, 2)
    checkpointer.save("model_0000003", iteration=3)
    newest = tmp_path / "model_0000003.pth"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])

    model2, opt2, sched2 = _trainer_state(seed=1)
    with caplog.at_level(logging.WARNING):
        extra = Checkpointer(
            model2, str(tmp_path), optimizer=opt2, scheduler=sched2
        ).resume_or_load("", resume=True)
    assert extra["iteration"] == 1
    assert torch.equal(model2[3].weight, at_iter_1)
    assert sched2.last_epoch == 2
    assert str(newest) in caplog.text and "model_0000001.pth" in caplog.text


def test_resume_with_nothing_readable_raises(tmp_path):
    checkpointer = Checkpointer(_model(), str(tmp_path))
    checkpointer.save("model_0000001", iteration=1)
    (tmp_path / "model_0000001.pth").write_bytes(os.urandom(256))
    with pytest.raises(UnreadableCheckpointError, match="model_0000001.pth"):
        checkpointer.resume_or_load("", resume=True)


def test_resume_without_last_checkpoint_takes_newest_file(tmp_path):
    checkpointer = Checkpointer(_model(), str(tmp_path))
    for it in (9, 19):
        checkpointer.save(f"model_{it:07d}", iteration=it)
    os.remove(tmp_path / "last_checkpoint")
    assert checkpointer.has_checkpoint()
    assert checkpointer.resume_or_load("")["iteration"] == 19


@pytest.mark.parametrize("content", ["missing", "random", "not_a_dict", "no_model"])
def test_bad_files_raise_a_clear_error_naming_the_file(tmp_path, content):
    path = tmp_path / "weights.pth"
    if content == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif content == "not_a_dict":
        torch.save([torch.zeros(2)], path)
    elif content == "no_model":
        torch.save({"optimizer": {}, "iteration": 3}, path)
    with pytest.raises(UnreadableCheckpointError) as info:
        Checkpointer(_model()).load(str(path))
    assert isinstance(info.value, UserError)
    message = str(info.value)
    assert str(path) in message
    expected = {
        "missing": "does not exist",
        "random": "truncated, corrupt or not a PyTorch checkpoint",
        "not_a_dict": "holds a list; expected a dict",
        "no_model": "no 'model' entry",
    }[content]
    assert expected in message


def test_mismatched_shapes_load_what_fits(tmp_path, caplog):
    source = _model(out=3)
    Checkpointer(source, str(tmp_path)).save("model_final")
    target = _model(out=5)
    head_before = target[3].weight.detach().clone()
    with caplog.at_level(logging.WARNING):
        Checkpointer(target).load(str(tmp_path / "model_final.pth"))
    assert torch.equal(target[0].weight, source[0].weight)
    assert torch.equal(target[1].running_mean, source[1].running_mean)
    assert torch.equal(target[3].weight, head_before)  # kept its own initialisation
    # One table: a row per skipped parameter with its shape in the file and in the model.
    rows = [line for line in caplog.text.splitlines() if line.startswith("| 3.")]
    assert len(rows) == 2, caplog.text
    assert "3.weight" in rows[0] and "(3, 8)" in rows[0] and "(5, 8)" in rows[0]
    assert "3.bias" in rows[1] and "(3)" in rows[1] and "(5)" in rows[1]
    assert "not found in the checkpoint" not in caplog.text  # reported once, as a shape issue


def test_resuming_with_a_different_model_is_an_error_naming_the_parameters(tmp_path):
    source = _model(out=3)
    Checkpointer(source, str(tmp_path)).save("model_0000009")
    target = _model(out=5)
    with pytest.raises(CheckpointError) as info:
        Checkpointer(target, str(tmp_path)).resume_or_load("", resume=True)
    message = str(info.value)
    assert "Cannot resume" in message and "model_0000009.pth" in message
    assert "3.weight is (3, 8) in the checkpoint, (5, 8) in the model and 1 more" in message
    with pytest.raises(CheckpointError, match="different model"):
        Checkpointer(target).load(str(tmp_path / "model_0000009.pth"), for_resume=True)


def test_optimizer_state_that_does_not_fit_its_parameters_is_an_error(tmp_path):
    model, opt, sched = _trainer_state()
    _train(model, opt, sched, 2)  # momentum buffers exist
    Checkpointer(model, str(tmp_path), optimizer=opt).save("model_final")
    # The same parameters and group sizes, but listed in another order: torch pairs the saved
    # states with parameters by position, so every buffer would land on the wrong tensor.
    other = _model()
    name_of = {id(p): name for name, p in model.named_parameters()}
    param_of = dict(other.named_parameters())
    reordered = [
        {"params": [param_of[name_of[id(p)]] for p in reversed(group["params"])]}
        for group in opt.param_groups
    ]
    shuffled = torch.optim.SGD(reordered, lr=0.1)
    with pytest.raises(CheckpointError) as info:
        Checkpointer(other, str(tmp_path), optimizer=shuffled).resume_or_load("", resume=True)
    assert "'optimizer'" in str(info.value) and "momentum_buffer" in str(info.value)


def test_pickled_objects_are_refused_unless_allowed(tmp_path):
    path = tmp_path / "model_final.pth"
    torch.save({"model": _model().state_dict(), "extra": Pickled()}, path)
    with pytest.raises(CheckpointError) as info:
        Checkpointer(_model()).load(str(path))
    assert not isinstance(info.value, UnreadableCheckpointError)
    assert str(path) in str(info.value) and "allow_pickle=True" in str(info.value)
    extra = Checkpointer(_model(), allow_pickle=True).load(str(path))
    assert extra["extra"].value == 42


def test_save_refuses_state_that_weights_only_cannot_load(tmp_path):
    checkpointer = Checkpointer(_model(), str(tmp_path))
    with pytest.raises(TypeError, match=r"\['rng'\]\[1\] is a numpy.ndarray"):
        checkpointer.save("model_final", rng=("MT19937", np.zeros(3)))
    assert _files(tmp_path) == []
    Checkpointer(_model(), str(tmp_path), allow_pickle=True).save("model_final", rng=np.zeros(3))


def test_bare_state_dict_loads_as_weights(tmp_path):
    source = _model()
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    target = _model()
    Checkpointer(target).load(str(tmp_path / "weights.pth"))
    assert torch.equal(target[3].bias, source[3].bias)


def test_wrapped_model_is_saved_without_module_prefix(tmp_path):
    model = _model()
    checkpointer = Checkpointer(model, str(tmp_path))
    checkpointer.model = nn.DataParallel(model)  # wrapped after the checkpointer was built
    checkpointer.save("model_final")
    keys = torch.load(tmp_path / "model_final.pth", weights_only=True)["model"].keys()
    assert "0.weight" in keys and not any(k.startswith("module.") for k in keys)


def test_only_writes_when_save_to_disk(tmp_path):
    Checkpointer(_model(), str(tmp_path), save_to_disk=False).save("model_final")
    assert _files(tmp_path) == []
    assert Checkpointer(_model(), str(tmp_path)).save_to_disk  # rank 0 of a single process


def test_optimizer_that_does_not_fit_names_the_file(tmp_path):
    model, opt, sched = _trainer_state()
    _train(model, opt, sched, 1)
    Checkpointer(model, str(tmp_path), optimizer=opt).save("model_0000000")
    other = nn.Linear(4, 3)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match=r"'optimizer'.*model_0000000.pth"):
        Checkpointer(other, str(tmp_path), optimizer=other_opt).resume_or_load("")


def test_model_wrapped_later_loads_into_the_module(tmp_path):
    source = _model()
    Checkpointer(source, str(tmp_path)).save("model_final")
    target = _model()
    checkpointer = Checkpointer(target)
    checkpointer.model = nn.DataParallel(target)
    checkpointer.load(str(tmp_path / "model_final.pth"))
    assert torch.equal(target[0].weight, source[0].weight)
