"""Workers of ``test_world_size_resume.py``: a tiny model sharded with FSDP2's ``fully_shard``
on CPU/gloo, saved and resumed through :class:`engine_lib.checkpoint.Checkpointer`."""

import os
from typing import Dict

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from engine_lib.checkpoint import Checkpointer
from engine_lib.utils import comm
from tests.engine.dist_helpers import write_result

__all__ = ["build", "fsdp_load", "fsdp_save_and_resume", "full_state", "train"]

SAVED_AT = 2  # the checkpoint holds the state after steps 0, 1, 2
STEPS = 6


def build(seed: int, shard: bool):
    """The model (sharded over every rank when ``shard``) and its AdamW."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    if shard:
        mesh = init_device_mesh("cpu", (comm.get_world_size(),))
        for layer in (model[0], model[2]):
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
    return model, torch.optim.AdamW(model.parameters(), lr=0.01)


def train(model, optimizer, steps) -> None:
    for step in steps:
        g = torch.Generator().manual_seed(100 * step + comm.get_rank())
        model(torch.randn(4, 8, generator=g)).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()


def _full(t):
    return t.full_tensor() if isinstance(t, DTensor) else t.detach().clone()


def full_state(model, optimizer) -> Dict[str, torch.Tensor]:
    """Full parameters and AdamW moments by parameter name (collective under FSDP)."""
    state = {}
    for name, p in model.named_parameters():
        state[name] = _full(p)
        for key in ("exp_avg", "exp_avg_sq"):
            state[f"{name}.{key}"] = _full(optimizer.state[p][key])
    return state


def fsdp_save_and_resume(out_dir: str) -> None:
    """Train, save asynchronously at step 2, train on; resume fresh objects and train on."""
    model, optimizer = build(0, shard=True)
    checkpointer = Checkpointer(
        model, out_dir, checkpoint_format="dcp", async_save=True, optimizer=optimizer
    )
    train(model, optimizer, range(SAVED_AT + 1))
    checkpointer.save(f"model_{SAVED_AT:07d}", iteration=SAVED_AT)
    saved = full_state(model, optimizer)  # the async save staged its copy: training may go on
    train(model, optimizer, range(SAVED_AT + 1, STEPS))
    checkpointer.wait()
    uninterrupted = full_state(model, optimizer)

    model2, optimizer2 = build(1, shard=True)
    extra = Checkpointer(
        model2, out_dir, checkpoint_format="dcp", optimizer=optimizer2
    ).resume_or_load("")
    assert extra["iteration"] == SAVED_AT, extra
    train(model2, optimizer2, range(SAVED_AT + 1, STEPS))
    resumed = full_state(model2, optimizer2)
    if comm.is_main_process():
        write_result(out_dir, "saved0", saved)
        exact = [k for k in resumed if torch.equal(resumed[k], uninterrupted[k])]
        write_result(out_dir, "exact0", exact)
        write_result(out_dir, "all_keys0", list(resumed))


def fsdp_load(out_dir: str, directory: str) -> None:
    """Resume ``directory`` into a model sharded over this job's ranks; record full state."""
    model, optimizer = build(1, shard=True)
    Checkpointer(model, checkpoint_format="dcp", optimizer=optimizer).load(
        directory, for_resume=True
    )
    state = full_state(model, optimizer)
    if comm.is_main_process():
        write_result(out_dir, f"loaded_on_{comm.get_world_size()}_0", state)
    assert os.path.isdir(directory)
