"""Epochs in a real DefaultTrainer run: periods land on epoch boundaries, epoch hooks, resume."""

import json
import logging
import os
import re

import pytest
import torch

from engine_lib.config import get_cfg
from engine_lib.data import DatasetCatalog
from engine_lib.data.datasets import load_digits_dicts
from engine_lib.engine import (
    DefaultTrainer,
    default_argument_parser,
    default_setup,
    hooks,
    train_or_evaluate,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = "digits_epochs_tiny"  # 44 samples: with a batch of 8, 5 iterations per epoch (floor)


@pytest.fixture(scope="module", autouse=True)
def tiny_digits():
    dicts = load_digits_dicts("train")[:44]
    DatasetCatalog.register(TINY, lambda: dicts)
    yield
    DatasetCatalog.remove(TINY)


def tiny_cfg(output_dir, *overrides):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs", "Digits", "cnn.yaml"))
    cfg.merge_from_list(
        [
            "OUTPUT_DIR", str(output_dir),
            "DATASETS.TRAIN", f"('{TINY}',)",
            "DATASETS.TEST", f"('{TINY}',)",
            "MODEL.BACKBONE.WIDTH", "4",
            "SOLVER.IMS_PER_BATCH", "8",
            "SOLVER.MAX_EPOCH", "3",
            "SOLVER.WARMUP_ITERS", "1ep",
            "SOLVER.CHECKPOINT_PERIOD", "1ep",
            "SOLVER.MAX_TO_KEEP", "0",
            "SOLVER.LOG_PERIOD", "5",
            "TEST.EVAL_PERIOD", "2ep",
            "TEST.IMS_PER_BATCH", "44",
            *overrides,
        ]
    )  # fmt: skip
    cfg.freeze()
    return cfg


class EpochRecorder(hooks.HookBase):
    """Records the before/after-epoch events derived by the HookBase epoch helpers."""

    def __init__(self):
        self.events = []

    def before_step(self):
        if self.is_epoch_start():
            self.events.append(("start", self.current_epoch(), self.trainer.iter))

    def after_step(self):
        if self.is_epoch_end():
            self.events.append(("end", self.current_epoch(), self.trainer.iter))


def checkpoint_iterations(trainer):
    names = trainer.checkpointer.get_periodic_checkpoint_files()
    return [int(re.search(r"model_(\d+)\.pth$", n).group(1)) for n in names]


def eval_iterations(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        lines = [json.loads(line) for line in f]
    return [m["iteration"] for m in lines if "classification/top1" in m]


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_epoch_periods_land_on_epoch_boundaries(tmp_path):
    trainer = DefaultTrainer(tiny_cfg(tmp_path))
    assert (trainer.iters_per_epoch, trainer.max_iter) == (5, 15)
    assert trainer.cfg.SOLVER.WARMUP_ITERS == 5
    recorder = EpochRecorder()
    trainer.register_hooks([recorder])
    trainer.resume_or_load(resume=False)
    printed = ListHandler()
    printer_logger = logging.getLogger("engine_lib.utils.events")
    printer_logger.addHandler(printed)
    try:
        trainer.train()
    finally:
        printer_logger.removeHandler(printed)
    # A checkpoint after the last iteration of each epoch (iterations 4, 9, 14).
    assert checkpoint_iterations(trainer) == [4, 9, 14]
    # Evaluation after epoch 2 (iteration 9) and after training (recorded at MAX_ITER).
    assert eval_iterations(tmp_path) == [9, 15]
    assert recorder.events == [
        ("start", 0, 0), ("end", 0, 4),
        ("start", 1, 5), ("end", 1, 9),
        ("start", 2, 10), ("end", 2, 14),
    ]  # fmt: skip
    assert any("epoch: 2/3  iter: 9" in line for line in printed.lines), printed.lines


def test_resume_mid_epoch_keeps_counting_epochs(tmp_path):
    first = DefaultTrainer(tiny_cfg(tmp_path, "SOLVER.CHECKPOINT_PERIOD", "7"))
    first.resume_or_load(resume=False)
    first.train()
    assert 6 in checkpoint_iterations(first)  # mid-epoch 1 (iterations 5..9)

    resumed = DefaultTrainer(tiny_cfg(tmp_path, "SOLVER.CHECKPOINT_PERIOD", "7"))
    recorder = EpochRecorder()
    resumed.register_hooks([recorder])
    resumed.resume_or_load(resume=str(tmp_path / "model_0000006.pth"))
    assert resumed.start_iter == 7
    resumed.train()
    # No spurious epoch start at the resume point; epoch 1 still ends at iteration 9.
    assert recorder.events == [("end", 1, 9), ("start", 2, 10), ("end", 2, 14)]


def test_grad_accumulation_counts_samples_per_optimizer_step(tmp_path):
    trainer = DefaultTrainer(tiny_cfg(tmp_path, "SOLVER.GRAD_ACCUM_STEPS", "2"))
    # 44 samples / (8 x 2) per step = 2 iterations per epoch (floor: DROP_LAST).
    assert (trainer.iters_per_epoch, trainer.max_iter) == (2, 6)
    assert trainer.cfg.TEST.EVAL_PERIOD == 4 and trainer.cfg.SOLVER.CHECKPOINT_PERIOD == 2


def _dumped(output_dir):
    dumped = get_cfg()
    dumped.merge_from_file(os.path.join(output_dir, "config.yaml"))
    return dumped


def test_config_yaml_is_the_resolved_config_the_trainer_uses(tmp_path):
    # A drawn seed, a length and periods in epochs: all resolved once, used and dumped.
    cfg = tiny_cfg(tmp_path, "SEED", "-1", "SOLVER.MAX_EPOCH", "1", "TEST.EVAL_PERIOD", "0")
    args = default_argument_parser().parse_args([])
    captured = {}

    class Recording(DefaultTrainer):
        def __init__(self, cfg):
            super().__init__(cfg)
            captured["cfg"] = self.cfg

    train_or_evaluate(cfg, args, Recording)
    used = captured["cfg"]
    assert used.SEED >= 0 and used.SOLVER.MAX_ITER == 5 and used.SOLVER.WARMUP_ITERS == 5
    assert _dumped(tmp_path) == used
    # The sampler of the run drew from the dumped seed.
    trainer_sampler_seed = torch.load(os.path.join(tmp_path, "model_final.pth"), weights_only=True)[
        "trainer"
    ]["sampler"]["seed"]
    assert trainer_sampler_seed == used.SEED


def test_config_yaml_after_a_plain_default_setup_is_the_resolved_one(tmp_path):
    # The research-code path: default_setup (writes at once), then the trainer.
    cfg = default_setup(tiny_cfg(tmp_path, "SEED", "-1"))
    trainer = DefaultTrainer(cfg)
    assert trainer.cfg.SOLVER.MAX_ITER == 15
    assert _dumped(tmp_path) == trainer.cfg
