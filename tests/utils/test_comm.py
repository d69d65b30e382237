"""Single-process behaviour of comm; the multi-process tests live with launch()."""

import numpy as np
import pytest
import torch
import torch.distributed as dist

from engine_lib.utils import comm


@pytest.fixture
def no_local_env(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)


@pytest.fixture
def gloo_world_of_one(tmp_path):
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    yield
    dist.destroy_process_group()


def test_without_process_group_is_rank_0_of_1(no_local_env):
    assert not dist.is_initialized()
    assert comm.get_world_size() == 1
    assert comm.get_rank() == 0
    assert comm.get_local_rank() == 0
    assert comm.get_local_size() == 1
    assert comm.is_main_process()
    comm.synchronize()


def test_local_rank_falls_back_to_torchrun_env(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert comm.get_local_rank() == 3
    assert comm.get_local_size() == 4


def test_collectives_in_a_single_process():
    tensor = torch.arange(3)
    gathered = comm.all_gather({"t": tensor})
    assert len(gathered) == 1 and gathered[0]["t"] is tensor
    assert comm.gather("x") == ["x"]
    losses = {"b": torch.tensor(2.0), "a": torch.tensor(1.0)}
    assert comm.reduce_dict(losses) == losses


def test_shared_random_seed_follows_numpy_state():
    np.random.seed(0)  # noqa: NPY002 (the global generator is what is under test)
    first = comm.shared_random_seed()
    np.random.seed(0)  # noqa: NPY002 (the global generator is what is under test)
    assert comm.shared_random_seed() == first
    assert isinstance(first, int) and 0 <= first < 2**31


def test_local_group_needs_a_process_group():
    with pytest.raises(RuntimeError, match="init_process_group"):
        comm.create_local_process_group(1)


def test_with_an_initialized_group_of_one(gloo_world_of_one):
    assert comm.get_world_size() == 1
    assert comm.get_rank() == 0
    comm.synchronize()
    assert comm.all_gather(5) == [5]
    assert comm.gather(5, dst=0) == [5]


def test_local_group_overrides_env_until_the_world_is_destroyed(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "5")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    try:
        with pytest.raises(ValueError, match="num_workers_per_machine=2 .* world size 1"):
            comm.create_local_process_group(2)
        comm.create_local_process_group(1)
        assert comm.get_local_rank() == 0
        assert comm.get_local_size() == 1
    finally:
        dist.destroy_process_group()
    # The cached group belonged to the destroyed world: it must not be used any more.
    assert comm.get_local_rank() == 5
    assert comm.get_local_size() == 8
