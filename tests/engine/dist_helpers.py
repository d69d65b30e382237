"""Worker functions for the multi-process tests, and a small command line to start them.

Spawned processes import these functions by module name, so they live in an importable
module rather than in the test files. Each worker writes what it observed to ``out_dir``
(one pickle per rank) for the test to check.

Command line (``python -m tests.engine.dist_helpers MODE OUT_DIR ...``), used where a test
needs a separate launcher process (its exit code, its stderr, its children):

- ``layout OUT_DIR [NUM_GPUS NUM_MACHINES MACHINE_RANK DIST_URL]``: launch
  :func:`record_layout`; under torchrun or srun the launch arguments are ignored.
- ``fail OUT_DIR ITERATION SURVIVOR``: launch :func:`fail_at_iteration` on 2 processes.
"""

import os
import pickle
import signal
import socket
import sys
import time
from typing import Any, Dict, List

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from engine_lib.engine import HookBase, SimpleTrainer, create_ddp_model, launch
from engine_lib.utils import comm

__all__ = [
    "free_port",
    "write_result",
    "read_results",
    "TinyRegressor",
    "ShardedBatches",
    "record_layout",
    "collect_comm_results",
    "check_ddp_and_train",
    "train_tiny_model",
    "fail_at_iteration",
    "die_on_rank_1",
]

NUM_ITEMS = 11  # items "predicted" by the ranks in the gather test (uneven on purpose)


def free_port() -> int:
    """Return a TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_result(out_dir: str, name: str, value: Any) -> None:
    """Save ``value`` as ``out_dir/name.pkl``, atomically (the reader may poll for it)."""
    path = os.path.join(out_dir, f"{name}.pkl")
    with open(path + ".tmp", "wb") as f:
        pickle.dump(value, f)
    os.replace(path + ".tmp", path)


def read_results(out_dir: str, prefix: str, world_size: int) -> List[Any]:
    """Load ``prefix0.pkl``, ``prefix1.pkl``, ... written by :func:`write_result`."""
    results = []
    for rank in range(world_size):
        with open(os.path.join(out_dir, f"{prefix}{rank}.pkl"), "rb") as f:
            results.append(pickle.load(f))
    return results


def record_layout(out_dir: str, launcher_pid: int) -> None:
    """Record where this process sits in the job, and whether it is the launching process."""
    rank = comm.get_rank()
    gathered = comm.all_gather(rank)
    write_result(
        out_dir,
        f"layout{rank}",
        {
            "rank": rank,
            "world_size": comm.get_world_size(),
            "local_rank": comm.get_local_rank(),
            "local_size": comm.get_local_size(),
            "initialized": dist.is_initialized(),
            "all_ranks": gathered,
            "pid": os.getpid(),
            "launcher_pid": launcher_pid,
        },
    )


def collect_comm_results(out_dir: str) -> None:
    """Exercise every collective of ``comm`` on this rank and save what it returned."""
    rank, world_size = comm.get_rank(), comm.get_world_size()
    result: Dict[str, Any] = {
        "rank": rank,
        "world_size": world_size,
        "local_rank": comm.get_local_rank(),
        "local_size": comm.get_local_size(),
        "is_main": comm.is_main_process(),
    }
    result["all_gather_objects"] = comm.all_gather({"rank": rank, "payload": "x" * (rank + 1)})
    result["all_gather_tensors"] = comm.all_gather(torch.full((rank + 1,), float(rank)))
    result["gather_to_0"] = comm.gather(rank * 10, dst=0)
    result["gather_to_1"] = comm.gather(rank * 10, dst=1)

    # Per-rank predictions on a contiguous shard, as inference_on_dataset produces them.
    per_rank = -(-NUM_ITEMS // world_size)
    shard = range(rank * per_rank, min(NUM_ITEMS, (rank + 1) * per_rank))
    result["gathered_predictions"] = comm.gather([{"item": i, "score": i * 0.5} for i in shard])

    losses = {"b": torch.tensor(10.0 * (rank + 1)), "a": torch.tensor(float(rank + 1))}
    result["reduce_mean"] = {k: v.item() for k, v in comm.reduce_dict(dict(losses)).items()}
    result["reduce_sum"] = {
        k: v.item() for k, v in comm.reduce_dict(dict(losses), average=False).items()
    }

    # synchronize must wait: rank 1 writes a marker late, rank 0 must see it after the barrier.
    marker = os.path.join(out_dir, "marker")
    if rank == 1:
        time.sleep(1.0)
        with open(marker, "w"):
            pass
    comm.synchronize()
    result["marker_seen_after_synchronize"] = os.path.exists(marker)

    # Different states of numpy's global generator, the one shared_random_seed draws from.
    np.random.seed(100 + rank)  # noqa: NPY002
    result["shared_seed"] = comm.shared_random_seed()
    result["local_draw"] = int(np.random.randint(2**31))  # noqa: NPY002
    write_result(out_dir, f"comm{rank}", result)


class TinyRegressor(nn.Module):
    """``model(list of {"x", "y"}) -> {"loss_mse": ...}`` as the engine's model convention."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, batch: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        x = torch.stack([d["x"] for d in batch])
        y = torch.stack([d["y"] for d in batch])
        return {"loss_mse": nn.functional.mse_loss(self.net(x).squeeze(1), y)}


class ShardedBatches:
    """The same sequence of global batches on every rank; each rank yields its slice.

    Rank ``r`` of ``w`` gets samples ``[r * b / w, (r + 1) * b / w)`` of each global batch of
    ``b`` samples, so a ``w``-process run sees the same data per step as one process.
    """

    def __init__(self, global_batch: int, rank: int, world_size: int) -> None:
        assert global_batch % world_size == 0
        self.global_batch, self.rank, self.world_size = global_batch, rank, world_size

    def __iter__(self):
        generator = torch.Generator().manual_seed(1234)
        true_w = torch.tensor([1.0, -2.0, 0.5, 3.0])
        local = self.global_batch // self.world_size
        while True:
            x = torch.randn(self.global_batch, 4, generator=generator)
            y = x @ true_w + 0.1 * torch.randn(self.global_batch, generator=generator)
            part = slice(self.rank * local, (self.rank + 1) * local)
            yield [{"x": xi, "y": yi} for xi, yi in zip(x[part], y[part])]


def train_tiny_model(out_dir: str, max_iter: int, global_batch: int) -> None:
    """Train :class:`TinyRegressor` with SimpleTrainer (+ DDP) and save the final weights.

    Each rank initialises the model from its own seed: DDP's initial broadcast must make
    the replicas equal anyway.
    """
    rank, world_size = comm.get_rank(), comm.get_world_size()
    torch.manual_seed(rank)
    model = create_ddp_model(TinyRegressor())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    trainer = SimpleTrainer(model, ShardedBatches(global_batch, rank, world_size), optimizer)
    trainer.train(0, max_iter)
    weights = {k.removeprefix("module."): v.detach() for k, v in model.state_dict().items()}
    write_result(out_dir, f"weights{rank}", weights)


def check_ddp_and_train(out_dir: str, max_iter: int, global_batch: int) -> None:
    """Check create_ddp_model's options on a real group, then run :func:`train_tiny_model`."""
    rank = comm.get_rank()
    torch.manual_seed(rank)
    x = torch.randn(8, 4)
    result: Dict[str, Any] = {}
    for fp16 in (False, True):
        torch.manual_seed(0)
        model = create_ddp_model(nn.Linear(4, 3), fp16_compression=fp16)
        model(x).pow(2).mean().backward()
        grad = model.module.weight.grad
        result[f"grads_fp16={fp16}"] = comm.all_gather(grad.clone())
        # float16 all-reduce leaves values that float16 represents exactly.
        result[f"fp16_exact_fp16={fp16}"] = bool(torch.equal(grad, grad.half().float()))
        result["broadcast_buffers"] = model.broadcast_buffers
        result["type"] = type(model).__name__
    # The reference for "averaged": one process, the same loss over all ranks' samples.
    torch.manual_seed(0)
    single = nn.Linear(4, 3)
    single(torch.cat(comm.all_gather(x))).pow(2).mean().backward()
    result["grad_full_batch"] = single.weight.grad.clone()
    unused = create_ddp_model(nn.Linear(4, 3), find_unused_parameters=True)
    result["find_unused_parameters"] = unused.find_unused_parameters
    result.update(_ddp_from_config(x))
    write_result(out_dir, f"ddp{rank}", result)
    train_tiny_model(out_dir, max_iter, global_batch)


def _ddp_from_config(x: torch.Tensor) -> Dict[str, Any]:
    """``parallelize_model`` with MODEL.DDP.FP16_COMPRESSION and a frozen first layer.

    Frozen layers get no gradient: DDP must have been told to look for unused parameters
    (without it the second step raises), though FIND_UNUSED_PARAMETERS is left False.
    """
    from engine_lib.config import get_cfg
    from engine_lib.engine.parallel import parallelize_model

    cfg = get_cfg()
    cfg.MODEL.DDP.FP16_COMPRESSION = True
    cfg.MODEL.FREEZE_LAYERS = ["0"]
    cfg.MODEL.FREEZE_ITERS = 2
    torch.manual_seed(0)
    model = parallelize_model(cfg, nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 3)))
    model.module[0].requires_grad_(False)  # what hooks.LayerFreeze does in its first steps
    error = None
    try:
        for _ in range(2):
            model.zero_grad()
            model(x).pow(2).mean().backward()
    except RuntimeError as e:
        error = str(e)
    grad = model.module[1].weight.grad
    return {
        "cfg_find_unused": model.find_unused_parameters,
        "cfg_frozen_steps_error": error,
        "cfg_fp16_exact": bool(torch.equal(grad, grad.half().float())),
    }


class _RaiseAt(HookBase):
    """Raise on one rank at one iteration, after writing the time to ``failed_at0.pkl``."""

    def __init__(self, rank: int, iteration: int, out_dir: str) -> None:
        self.rank, self.iteration, self.out_dir = rank, iteration, out_dir

    def before_step(self) -> None:
        if comm.get_rank() == self.rank and self.trainer.iter == self.iteration:
            write_result(self.out_dir, "failed_at0", time.time())
            raise RuntimeError(f"boom on rank {self.rank} at iteration {self.iteration}")


def fail_at_iteration(out_dir: str, iteration: int, survivor: str) -> None:
    """Rank 1 raises at ``iteration``; what rank 0 does then depends on ``survivor``.

    - ``"collective"``: rank 0 trains on, so it waits in DDP's gradient all-reduce.
    - ``"stuck"``: rank 0 ignores SIGTERM and never returns at ``iteration``, like a
      collective that does not notice a dead peer (NCCL without error handling).
    """
    rank = comm.get_rank()
    write_result(out_dir, f"pid{rank}", os.getpid())
    if survivor == "stuck" and rank == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.manual_seed(0)
    model = create_ddp_model(TinyRegressor())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    trainer = SimpleTrainer(model, ShardedBatches(4, rank, comm.get_world_size()), optimizer)
    trainer.register_hooks([_RaiseAt(rank=1, iteration=iteration, out_dir=out_dir)])
    if survivor == "stuck" and rank == 0:
        trainer.train(0, iteration)
        while True:
            time.sleep(0.1)
    trainer.train(0, 1000)


def die_on_rank_1(code: int) -> None:
    """Rank 1 dies after the rendezvous (``os._exit``: no clean-up), as a killed worker does."""
    comm.synchronize()
    if comm.get_rank() == 1:
        os._exit(code)
    comm.synchronize()


def _main(argv: List[str]) -> None:
    mode, out_dir = argv[0], argv[1]
    if mode == "layout":
        if len(argv) > 2:
            num_gpus, num_machines, machine_rank, url = argv[2:6]
            launch(
                record_layout,
                int(num_gpus),
                num_machines=int(num_machines),
                machine_rank=int(machine_rank),
                dist_url=url,
                args=(out_dir, os.getpid()),
                backend="gloo",
            )
        else:
            launch(record_layout, 1, args=(out_dir, os.getpid()), backend="gloo")
    elif mode == "fail":
        launch(
            fail_at_iteration,
            2,
            dist_url="auto",
            args=(out_dir, int(argv[2]), argv[3]),
            backend="gloo",
        )
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    _main(sys.argv[1:])
