"""FSDP2 / HSDP training (engine_lib.engine.parallel) on 2 real gloo processes, and train_net.

One spawned 2-process job (``fsdp_job``) trains the same model on the same global batches
under DDP, FSDP and HSDP, with gradient accumulation, clipping and activation checkpointing,
and records what the tests below check; one train_net run trains the digits CNN under FSDP.
"""

import os
import pickle
import subprocess
import sys
from typing import Any, Dict, Iterator, List

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine_lib.checkpoint import Checkpointer
from engine_lib.checkpoint.state import FullStateModel, FullStateOptimizer, full_model_state_dict
from engine_lib.config import get_cfg
from engine_lib.engine import GradClip, SimpleTrainer, hooks
from engine_lib.engine.launch import launch
from engine_lib.engine.parallel import (
    apply_activation_checkpointing,
    check_parallel_config,
    default_wrap_modules,
    parallelize_model,
    rank_state_bytes,
    unwrap_model,
)
from engine_lib.engine.train_loop.grad_sync import skip_grad_sync
from engine_lib.modeling import build_model
from engine_lib.utils import comm
from engine_lib.utils.errors import ConfigError
from tests.engine.dist_helpers import free_port

WORLD = 2
STEPS = 4
GLOBAL_BATCH = 8
DIM = 64
CLIP = GradClip(clip_type="norm", clip_value=0.05)  # small: every step is clipped
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class BlockNet(nn.Module):
    """Three Linear+Tanh blocks (the default FSDP units) and a head; no BatchNorm, so that
    every strategy computes the same function of the global batch."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            *[nn.Sequential(nn.Linear(DIM, DIM), nn.Tanh()) for _ in range(3)]
        )
        self.head = nn.Linear(DIM, 1)

    def forward(self, batch: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        x = torch.stack([s["x"] for s in batch])
        y = torch.stack([s["y"] for s in batch])
        return {"loss_mse": F.mse_loss(self.head(self.backbone(x)).squeeze(1), y)}


def rank_batches(micro: int) -> Iterator[List[Dict[str, torch.Tensor]]]:
    """This rank's part of a fixed stream of global batches, in ``micro`` micro-batches."""
    rank, per = comm.get_rank(), GLOBAL_BATCH // WORLD
    g = torch.Generator().manual_seed(123)
    while True:
        x, y = torch.randn(GLOBAL_BATCH, DIM, generator=g), torch.randn(GLOBAL_BATCH, generator=g)
        samples = [{"x": x[i], "y": y[i]} for i in range(rank * per, (rank + 1) * per)]
        size = per // micro
        for i in range(micro):
            yield samples[i * size : (i + 1) * size]


def build(strategy: str, checkpointing=()):
    torch.manual_seed(0)  # the same initial weights on every rank and in every run
    cfg = get_cfg()
    cfg.PARALLEL.STRATEGY = strategy
    cfg.PARALLEL.ACTIVATION_CHECKPOINTING = checkpointing
    model = parallelize_model(cfg, BlockNet())
    optimizer = torch.optim.AdamW(unwrap_model(model).parameters(), lr=1e-2, weight_decay=0.1)
    return model, optimizer


def train(strategy: str, accum: int = 1, checkpointing=()) -> Dict[str, Any]:
    model, optimizer = build(strategy, checkpointing)
    # Gradients are cleared before each step, so they are still there to be measured.
    trainer = SimpleTrainer(
        model,
        rank_batches(accum),
        optimizer,
        zero_grad_before_forward=True,
        grad_accum_steps=accum,
        clip_grad=CLIP,
    )
    trainer.train(0, STEPS)
    return {
        "losses": [v for v, _ in trainer.storage.history("loss_mse").values()],
        "state": full_model_state_dict(unwrap_model(model)),
        "bytes": rank_state_bytes(model, optimizer),
        "type": type(model).__name__,
    }


def check_grad_sync_and_norm() -> Dict[str, Any]:
    """No reduced gradient after a skipped sync; the clipping norm of sharded gradients."""
    out: Dict[str, Any] = {}
    model, _ = build("fsdp")
    batch = next(rank_batches(1))
    with skip_grad_sync(model):
        model(batch)["loss_mse"].backward()
    out["grads_after_skipped_sync"] = [p.grad is not None for p in model.parameters()]
    model(batch)["loss_mse"].backward()
    out["grads_after_sync"] = [p.grad is not None for p in model.parameters()]
    norm = nn.utils.clip_grad_norm_(list(model.parameters()), 1e9)
    out["fsdp_norm"] = float(norm.full_tensor())
    ddp, _ = build("ddp")
    for _ in range(2):  # the same two backwards
        ddp(batch)["loss_mse"].backward()
    out["ddp_norm"] = float(nn.utils.clip_grad_norm_(list(ddp.parameters()), 1e9))
    return out


def check_ema_and_checkpoint(out_dir: str) -> Dict[str, Any]:
    """EMA over DTensor parameters, and a full-state checkpoint of a sharded model."""
    model, optimizer = build("fsdp")
    ema = hooks.EMA(model, decay=0.5)
    ema.before_train()
    model(next(rank_batches(1)))["loss_mse"].backward()
    optimizer.step()
    ema.after_step()
    saved = ema.state_dict()
    fresh = hooks.EMA(build("fsdp")[0], decay=0.5)
    fresh.load_state_dict(saved)
    again = fresh.state_dict()["weights"]
    checkpointer = Checkpointer(
        FullStateModel(model), out_dir, optimizer=FullStateOptimizer(model, optimizer)
    )
    checkpointer.save("fsdp_model", iteration=0)
    comm.synchronize()  # rank 0 writes; every rank reads
    other, other_opt = build("fsdp")
    Checkpointer(
        FullStateModel(other), out_dir, optimizer=FullStateOptimizer(other, other_opt)
    ).load(os.path.join(out_dir, "fsdp_model.pth"))
    reloaded = full_model_state_dict(other)
    original = full_model_state_dict(model)
    return {
        "ema_types": {type(t).__name__ for t in saved["weights"].values()},
        "ema_shapes": {k: tuple(t.shape) for k, t in saved["weights"].items()},
        "ema_round_trip": all(torch.equal(saved["weights"][k], again[k]) for k in again),
        "reload_equal": all(torch.equal(original[k], reloaded[k]) for k in original),
        "optimizer_steps_reloaded": [
            float(s["step"]) for s in other_opt.state.values() if "step" in s
        ],
    }


def fsdp_worker(out_dir: str) -> None:
    result = {
        # Activation checkpointing (with DDP here, with FSDP below) changes no number.
        "ddp": train("ddp", checkpointing=("Linear",)),
        "fsdp": train("fsdp"),
        "fsdp_accum": train("fsdp", accum=2, checkpointing=("Linear",)),
        "hsdp": train("hsdp"),
        **check_grad_sync_and_norm(),
        **check_ema_and_checkpoint(out_dir),
    }
    with open(os.path.join(out_dir, f"rank{comm.get_rank()}.pkl"), "wb") as f:
        pickle.dump(result, f)


@pytest.fixture(scope="module")
def fsdp_job(tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp")
    launch(
        fsdp_worker,
        WORLD,
        dist_url=f"tcp://127.0.0.1:{free_port()}",
        args=(str(out),),
        backend="gloo",
    )
    results = []
    for rank in range(WORLD):
        with open(out / f"rank{rank}.pkl", "rb") as f:
            results.append(pickle.load(f))
    return out, results


def test_fsdp_hsdp_and_grad_accumulation_match_ddp_losses_and_weights(fsdp_job):
    _, results = fsdp_job
    r = results[0]
    assert r["ddp"]["type"] == "DistributedDataParallel" and r["fsdp"]["type"] == "FSDPBlockNet"
    assert len(r["ddp"]["losses"]) == STEPS
    for run in ("fsdp", "fsdp_accum", "hsdp"):
        torch.testing.assert_close(r[run]["losses"], r["ddp"]["losses"], rtol=1e-4, atol=1e-5)
        for key, value in r["ddp"]["state"].items():
            torch.testing.assert_close(r[run]["state"][key], value, rtol=1e-4, atol=1e-5)
    # The weights moved (clipping at 0.05 still leaves AdamW steps of lr size).
    assert r["ddp"]["losses"][0] != r["ddp"]["losses"][-1]
    assert results[1]["fsdp"]["state"] == {}  # the full state is gathered on rank 0 only


def test_fsdp_per_rank_memory_at_most_a_share_of_ddp(fsdp_job):
    _, results = fsdp_job
    for r in results:
        ddp, fsdp = r["ddp"]["bytes"], r["fsdp"]["bytes"]
        assert ddp["grads"] == ddp["params"] and ddp["optimizer"] == 2 * ddp["params"]
        assert fsdp["grads"] > 0 and fsdp["optimizer"] > 0
        assert fsdp["total"] <= (1 / WORLD + 0.1) * ddp["total"], (fsdp, ddp)


def test_accumulation_skips_the_gradient_reduction_until_the_last_micro_batch(fsdp_job):
    _, results = fsdp_job
    for r in results:
        assert not any(r["grads_after_skipped_sync"])
        assert all(r["grads_after_sync"])


def test_clipping_norm_of_sharded_gradients_is_the_global_norm(fsdp_job):
    _, results = fsdp_job
    for r in results:
        assert r["fsdp_norm"] == pytest.approx(r["ddp_norm"], rel=1e-5)
    assert results[0]["fsdp_norm"] == results[1]["fsdp_norm"]


def test_ema_and_checkpoints_of_a_sharded_model_hold_whole_tensors(fsdp_job):
    out, results = fsdp_job
    for r in results:
        assert r["ema_types"] == {"Tensor"}
        assert r["ema_shapes"]["backbone.0.0.weight"] == (DIM, DIM)
        assert r["ema_round_trip"] and r["reload_equal"]
        assert r["optimizer_steps_reloaded"] == [1.0] * 8
    # The single file is a plain, weights-only checkpoint that a plain model loads.
    saved = torch.load(out / "fsdp_model.pth", weights_only=True)
    BlockNet().load_state_dict(saved["model"])


def test_unsupported_combinations_fail_at_start_up_naming_the_keys():
    cfg = get_cfg()
    cfg.PARALLEL.STRATEGY = "fsdp"
    cfg.SOLVER.AMP.ENABLED = True
    with pytest.raises(ConfigError, match="SOLVER.AMP.DTYPE=float16 with PARALLEL.STRATEGY"):
        check_parallel_config(cfg)
    cfg.SOLVER.AMP.DTYPE = "bfloat16"
    check_parallel_config(cfg)
    cfg.PARALLEL.FSDP.CPU_OFFLOAD = True
    with pytest.raises(ConfigError, match="PARALLEL.FSDP.CPU_OFFLOAD"):
        check_parallel_config(cfg)
    cfg.PARALLEL.FSDP.CPU_OFFLOAD = False
    cfg.KD.ENABLED = cfg.KD.EMA_TEACHER = True
    with pytest.raises(ConfigError, match="KD.EMA_TEACHER with PARALLEL.STRATEGY=fsdp"):
        check_parallel_config(cfg)
    with pytest.raises(ConfigError, match="PARALLEL.STRATEGY.*'zero3'"):
        get_cfg().merge_from_list(["PARALLEL.STRATEGY", "zero3"])
    with pytest.raises(ConfigError, match="PARALLEL.FSDP.PARAM_DTYPE"):
        get_cfg().merge_from_list(["PARALLEL.FSDP.PARAM_DTYPE", "fp8"])
    with pytest.raises(ConfigError, match="PARALLEL.ACTIVATION_CHECKPOINTING names.*Block"):
        apply_activation_checkpointing(BlockNet(), ["Block"])


def test_default_wrap_units_are_the_backbone_blocks():
    model = BlockNet()
    assert default_wrap_modules(model) == list(model.backbone.children())
    assert default_wrap_modules(nn.Linear(2, 2)) == []
    cnn = get_cfg()
    cnn.merge_from_file(os.path.join(REPO, "configs", "Digits", "cnn.yaml"))
    digits = build_model(cnn)
    assert default_wrap_modules(digits) == list(digits.backbone.stages.children())
    student = nn.Module()
    student.add_module("student", digits)  # as a Distiller holds its student
    assert default_wrap_modules(student) == list(digits.backbone.stages.children())


def run_tool(*args):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "train_net.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO,
    )


def test_train_net_under_fsdp_saves_a_checkpoint_that_eval_only_loads(tmp_path):
    config = os.path.join(REPO, "configs", "Digits", "cnn.yaml")
    common = ["OUTPUT_DIR", str(tmp_path), "PARALLEL.STRATEGY", "fsdp"]
    short = ["SOLVER.MAX_ITER", "24", "SOLVER.WARMUP_ITERS", "6", "TEST.EVAL_PERIOD", "12"]
    short += ["SOLVER.CHECKPOINT_PERIOD", "100", "SOLVER.LOG_PERIOD", "12"]
    # bf16 parameters with BatchNorm; EMA and PreciseBN after an evaluation's forward passes.
    short += ["PARALLEL.FSDP.PARAM_DTYPE", "bfloat16", "MODEL.EMA.ENABLED", "True"]
    short += ["MODEL.EMA.EVAL_WITH_EMA", "False", "MODEL.EMA.DECAY", "0.5"]
    short += ["TEST.PRECISE_BN.ENABLED", "True", "TEST.PRECISE_BN.NUM_ITER", "2"]
    # The single-file format (the full state gathered on rank 0); DCP directories, the
    # default under FSDP, are covered by tests/reliability/test_world_size_resume.py.
    short += ["SOLVER.CHECKPOINT_FORMAT", "torch"]
    flags = ["--config-file", config, "--num-gpus", "2", "--dist-url", "auto"]
    proc = run_tool(*flags, *common, *short)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "strategy fsdp" in log and "FSDP2 over mesh" in log
    weights = str(tmp_path / "model_final.pth")
    saved = torch.load(weights, weights_only=True)
    assert saved["model"]["backbone.stages.0.0.weight"].shape == (16, 3, 3, 3)
    ema = saved["trainer"]["hooks"]["EMA"]["weights"]
    assert ema["backbone.stages.0.0.weight"].shape == (16, 3, 3, 3)
    evaluated = run_tool(
        "--config-file", config, "--eval-only", *common,
        "MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(tmp_path / "eval"),
    )  # fmt: skip
    assert evaluated.returncode == 0, (evaluated.stdout + evaluated.stderr)[-3000:]
    trained = _top1(log)
    # Rank 0's BatchNorm statistics against each rank's own: close, not identical.
    assert trained > 25 and _top1(evaluated.stdout + evaluated.stderr) == pytest.approx(
        trained, abs=5
    )


def _top1(log: str) -> float:
    line = [x for x in log.splitlines() if "copypaste: " in x][-1]
    return float(line.split("copypaste: ")[1].split(",")[0])
