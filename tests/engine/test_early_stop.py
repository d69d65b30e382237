"""Early stopping: the loop's request_stop, the EarlyStopping hook, exact resume, and a
--resume of a finished run that does nothing."""

import logging
import os

import pytest
import torch

from engine_lib.config import get_cfg
from engine_lib.engine import DefaultTrainer, default_argument_parser, hooks, train_or_evaluate
from engine_lib.engine.train_loop import SimpleTrainer
from engine_lib.utils.errors import ConfigError
from tests.helpers import ListHandler

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def stop_cfg(output_dir, **overrides):
    """MIN_DELTA 100 (%): no evaluation after the first counts as an improvement, so
    training stops at the PATIENCE-th one after it (evaluations after iterations 1, 3, 5,
    7: stop after 7)."""
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "Digits", "cnn.yaml"))
    opts = {
        "OUTPUT_DIR": output_dir,
        "MODEL.BACKBONE.WIDTH": 4,
        "SOLVER.IMS_PER_BATCH": 16,
        "SOLVER.BASE_LR": 0.0,
        "SOLVER.MAX_ITER": 40,
        "SOLVER.WARMUP_ITERS": 0,
        "SOLVER.CHECKPOINT_PERIOD": 4,
        "SOLVER.LOG_PERIOD": 2,
        "TEST.EVAL_PERIOD": 2,
        "SOLVER.EARLY_STOP.ENABLED": True,
        "SOLVER.EARLY_STOP.PATIENCE": 3,
        "SOLVER.EARLY_STOP.MIN_DELTA": 100.0,
    }
    opts.update(overrides)
    for key, value in opts.items():
        cfg.merge_from_list([key, str(value)])
    cfg.freeze()
    return cfg


def saved_iteration(path):
    return torch.load(path, map_location="cpu", weights_only=True)["trainer"]["iteration"]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    out = tmp_path_factory.mktemp("early_stop")
    trainer = DefaultTrainer(stop_cfg(str(out)))
    trainer.resume_or_load(resume=False)
    trainer.train()
    return out, trainer


def test_stops_after_patience_evaluations_and_saves(stopped, caplog):
    out, trainer = stopped
    assert trainer.iter == 8 and trainer.max_iter == 40
    assert "classification/top1 did not improve by more than 100 in 3" in trainer.stop_reason
    assert saved_iteration(out / "model_final.pth") == 7
    assert saved_iteration(out / "model_best.pth") == 1
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["trainer"]["stop_reason"] == trainer.stop_reason
    assert final["trainer"]["hooks"]["EarlyStopping"]["bad_evals"] == 3
    assert not (out / "model_0000011.pth").exists()


def test_resume_from_before_the_stop_stops_at_the_same_iteration(stopped, tmp_path):
    out, first = stopped
    for name in ("model_0000003.pth", "config.yaml"):
        if (out / name).exists():
            (tmp_path / name).write_bytes((out / name).read_bytes())
    (tmp_path / "last_checkpoint").write_text("model_0000003.pth")
    resumed = DefaultTrainer(stop_cfg(str(tmp_path)))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 4 and resumed.stop_reason is None
    resumed.train()
    assert resumed.iter == first.iter and resumed.stop_reason == first.stop_reason
    assert saved_iteration(tmp_path / "model_final.pth") == 7


def test_resume_of_a_finished_run_does_nothing(stopped):
    out, _ = stopped
    final = out / "model_final.pth"
    before = final.stat().st_mtime_ns
    args = default_argument_parser().parse_args(["--resume"])
    handler = ListHandler()
    log = logging.getLogger("engine_lib")
    log.addHandler(handler)
    try:
        results = train_or_evaluate(stop_cfg(str(out)), args)
    finally:
        log.removeHandler(handler)
    assert results == {}
    assert any("is complete (stopped early after iteration 7" in m for m in handler.messages)
    assert final.stat().st_mtime_ns == before
    assert not any("Evaluation results" in m for m in handler.messages)


def test_request_stop_ends_the_loop_and_after_train_sees_it():
    model = torch.nn.Linear(2, 1)
    data = iter(lambda: torch.zeros(1, 2), None)

    class Loss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = model

        def forward(self, x):
            return {"loss": self.lin(x).sum()}

    m = Loss()
    trainer = SimpleTrainer(m, data, torch.optim.SGD(m.parameters(), lr=0.1))
    seen = {}

    class StopAt3(hooks.HookBase):
        def after_step(self):
            if self.trainer.iter == 3:
                self.trainer.request_stop("enough")

        def after_train(self):
            seen.update(iter=self.trainer.iter, done=self.training_completed())

    trainer.register_hooks([StopAt3()])
    trainer.train(0, 10)
    assert seen == {"iter": 4, "done": False}
    assert trainer.state_dict()["iteration"] == 3
    assert trainer.state_dict()["stop_reason"] == "enough"


def test_early_stop_needs_evaluations(tmp_path):
    with pytest.raises(ConfigError, match="SOLVER.EARLY_STOP.ENABLED needs .*TEST.EVAL_PERIOD"):
        DefaultTrainer(stop_cfg(str(tmp_path), **{"TEST.EVAL_PERIOD": 0}))
