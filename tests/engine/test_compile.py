"""MODEL.COMPILE: a compiled run's checkpoint loads into an uncompiled model."""

import os

import pytest
import torch

from engine_lib.config import get_cfg
from engine_lib.engine import DefaultTrainer
from engine_lib.engine.compile import maybe_compile
from engine_lib.modeling import build_model
from engine_lib.utils.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def compile_cfg(output_dir, mode="default"):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "Digits", "cnn.yaml"))
    cfg.merge_from_list(
        ["OUTPUT_DIR", output_dir, "MODEL.BACKBONE.WIDTH", "4", "SOLVER.IMS_PER_BATCH", "16"]
        + ["SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "0", "TEST.EVAL_PERIOD", "0"]
        + ["MODEL.COMPILE", "True", "MODEL.COMPILE_MODE", mode, "DATASETS.TEST", "()"]
    )
    cfg.freeze()
    return cfg


def test_compiled_run_checkpoint_loads_uncompiled(tmp_path, monkeypatch):
    # Dynamo with the "eager" backend: the same in-place wrapping and graph capture, without
    # inductor's C++ code generation, which takes minutes on a busy 2-core machine.
    compile_ = torch.nn.Module.compile
    monkeypatch.setattr(
        torch.nn.Module, "compile", lambda self, **kw: compile_(self, backend="eager", **kw)
    )
    cfg = compile_cfg(str(tmp_path))
    trainer = DefaultTrainer(cfg)
    assert trainer.model.backbone._compiled_call_impl is not None
    assert trainer.model.head._compiled_call_impl is not None
    trainer.resume_or_load(resume=False)
    trainer.train()
    state = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=True)
    assert not any("_orig_mod" in k for k in state["model"])
    plain = build_model(cfg)
    plain.load_state_dict(state["model"], strict=True)
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(plain.state_dict()[name], value)


def test_unknown_compile_mode(tmp_path):
    with pytest.raises(ConfigError, match="MODEL.COMPILE_MODE must be one of .*'fast'"):
        maybe_compile(torch.nn.Linear(1, 1), compile_cfg(str(tmp_path), "fast"))
