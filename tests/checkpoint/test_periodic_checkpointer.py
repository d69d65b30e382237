"""Tests of PeriodicCheckpointer: schedule of saves and max_to_keep, across a resume."""

import os

import torch
from torch import nn

from engine_lib.checkpoint import Checkpointer, PeriodicCheckpointer


def _checkpointer(directory) -> Checkpointer:
    return Checkpointer(nn.Linear(2, 2), str(directory))


def _pth(directory) -> list:
    return sorted(f for f in os.listdir(directory) if f.endswith(".pth"))


def test_saves_every_period_and_final(tmp_path):
    periodic = PeriodicCheckpointer(_checkpointer(tmp_path), period=3, max_iter=10)
    for it in range(10):
        periodic.step(it, extra=it)
    assert _pth(tmp_path) == [
        "model_0000002.pth",
        "model_0000005.pth",
        "model_0000008.pth",
        "model_final.pth",
    ]
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert final["iteration"] == 9 and final["extra"] == 9
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"


def test_max_to_keep_counts_files_from_before_a_resume(tmp_path):
    periodic = PeriodicCheckpointer(_checkpointer(tmp_path), period=1, max_iter=100, max_to_keep=2)
    for it in range(4):
        periodic.step(it)
    assert _pth(tmp_path) == ["model_0000002.pth", "model_0000003.pth"]
    # a resumed run: a new PeriodicCheckpointer must still clean up the files on disk
    (tmp_path / "model_best.pth").write_bytes(b"kept")
    resumed = PeriodicCheckpointer(_checkpointer(tmp_path), period=1, max_iter=7, max_to_keep=2)
    for it in range(4, 7):
        resumed.step(it)
    assert _pth(tmp_path) == [
        "model_0000005.pth",
        "model_0000006.pth",
        "model_best.pth",
        "model_final.pth",
    ]


def test_never_deletes_the_last_checkpoint_or_future_files(tmp_path):
    checkpointer = _checkpointer(tmp_path)
    checkpointer.save("model_0000050")  # left by an abandoned run, ahead of this one
    checkpointer.save("model_0000000")
    checkpointer.tag_last_checkpoint("model_0000000.pth")
    periodic = PeriodicCheckpointer(checkpointer, period=1, max_to_keep=1)
    # simulate the main process tagging another file (e.g. BestCheckpointer) in between
    checkpointer.save("model_0000001")
    checkpointer.tag_last_checkpoint("model_0000000.pth")
    periodic._delete_old(1)
    assert _pth(tmp_path) == ["model_0000000.pth", "model_0000001.pth", "model_0000050.pth"]
    periodic.step(2)
    assert _pth(tmp_path) == ["model_0000002.pth", "model_0000050.pth"]


def test_zero_or_none_keeps_everything(tmp_path):
    for keep in (0, None):
        directory = tmp_path / str(keep)
        periodic = PeriodicCheckpointer(_checkpointer(directory), period=1, max_to_keep=keep)
        for it in range(4):
            periodic.step(it)
        assert len(_pth(directory)) == 4


def test_other_ranks_neither_write_nor_delete(tmp_path):
    writer = PeriodicCheckpointer(_checkpointer(tmp_path), period=1, max_to_keep=1)
    writer.step(0)
    other_rank = Checkpointer(nn.Linear(2, 2), str(tmp_path), save_to_disk=False)
    PeriodicCheckpointer(other_rank, period=1, max_to_keep=1).step(1)
    assert _pth(tmp_path) == ["model_0000000.pth"]


def test_periodic_files_sorted_by_iteration(tmp_path):
    checkpointer = _checkpointer(tmp_path)
    for it in (100, 9, 10000000, 20):
        checkpointer.save(f"model_{it:07d}")
    checkpointer.save("model_final")
    names = [os.path.basename(p) for p in checkpointer.get_periodic_checkpoint_files()]
    assert names == [
        "model_0000009.pth",
        "model_0000020.pth",
        "model_0000100.pth",
        "model_10000000.pth",
    ]
