"""create_ddp_model, and data-parallel training through launch() + SimpleTrainer on 2 processes."""

import pytest
import torch
from torch import nn

from engine_lib.engine.ddp import create_ddp_model
from engine_lib.engine.launch import launch
from tests.engine.dist_helpers import (
    TinyRegressor,
    check_ddp_and_train,
    free_port,
    read_results,
    train_tiny_model,
)

WORLD_SIZE = 2
MAX_ITER = 10
GLOBAL_BATCH = 8


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp")
    launch(
        check_ddp_and_train,
        WORLD_SIZE,
        dist_url=f"tcp://127.0.0.1:{free_port()}",
        args=(str(out_dir), MAX_ITER, GLOBAL_BATCH),
        backend="gloo",
    )
    return str(out_dir)


def test_single_process_returns_the_model_itself():
    model = nn.Linear(2, 2)
    assert create_ddp_model(model, fp16_compression=True) is model


def test_ddp_defaults_and_options(two_process_run):
    for r in read_results(two_process_run, "ddp", WORLD_SIZE):
        assert r["type"] == "DistributedDataParallel"
        assert r["broadcast_buffers"] is False
        assert r["find_unused_parameters"] is True


def test_gradients_are_averaged_over_ranks(two_process_run):
    for r in read_results(two_process_run, "ddp", WORLD_SIZE):
        grad_rank0, grad_rank1 = r["grads_fp16=False"]
        assert torch.equal(grad_rank0, grad_rank1)
        # The mean over both ranks' samples, as one process computes it (not their sum).
        torch.testing.assert_close(grad_rank0, r["grad_full_batch"], rtol=1e-6, atol=1e-6)
        assert torch.equal(*r["grads_fp16=True"])


def test_config_fp16_compression_and_frozen_layers_find_unused_parameters(two_process_run):
    for r in read_results(two_process_run, "ddp", WORLD_SIZE):
        assert r["cfg_find_unused"] is True
        assert r["cfg_frozen_steps_error"] is None
        assert r["cfg_fp16_exact"]


def test_fp16_compression_all_reduces_in_float16(two_process_run):
    for r in read_results(two_process_run, "ddp", WORLD_SIZE):
        assert r["fp16_exact_fp16=True"]
        assert not r["fp16_exact_fp16=False"]  # so the check above means something
        fp32, fp16 = r["grads_fp16=False"][0], r["grads_fp16=True"][0]
        torch.testing.assert_close(fp16, fp32, rtol=1e-3, atol=1e-3)


def test_two_processes_train_like_one_with_the_same_global_batch(two_process_run, tmp_path):
    weights = read_results(two_process_run, "weights", WORLD_SIZE)
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name

    # World size 1: launch() runs the function in this process, without a process group.
    launch(train_tiny_model, 1, args=(str(tmp_path), MAX_ITER, GLOBAL_BATCH))
    (reference,) = read_results(str(tmp_path), "weights", 1)
    assert reference.keys() == weights[0].keys()
    for name in reference:
        torch.testing.assert_close(weights[0][name], reference[name], rtol=1e-4, atol=1e-5)
    # Training moved the weights away from rank 0's initialisation: agreeing is not trivial.
    torch.manual_seed(0)
    initial = TinyRegressor().state_dict()
    assert not torch.allclose(initial["net.0.weight"], reference["net.0.weight"], atol=1e-3)
