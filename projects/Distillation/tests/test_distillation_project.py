"""The Distillation project on the bundled digits: a briefly trained teacher, then a KD student."""

import json
import os

import torch

from engine_lib.config import get_cfg
from engine_lib.distillation import DistillationTrainer
from engine_lib.engine import (
    DefaultPredictor,
    DefaultTrainer,
    default_argument_parser,
    train_or_evaluate,
)

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(PROJECT, "configs")


def _cfg(name, out_dir, *opts):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(CONFIGS, name))
    # Small and quick: no evaluation, 16x16 images, small batches.
    cfg.merge_from_list(
        ["OUTPUT_DIR", str(out_dir), "DATASETS.TEST", "()", "SOLVER.IMS_PER_BATCH", 32]
        + ["INPUT.SIZE_TRAIN", "(16, 16)", "INPUT.SIZE_TEST", "(16, 16)", "SOLVER.WARMUP_ITERS", 5]
        + list(opts)
    )
    cfg.freeze()
    return cfg


def _logged(out_dir, key):
    with open(os.path.join(out_dir, "metrics.json")) as f:
        rows = [json.loads(line) for line in f]
    return [row[key] for row in rows if key in row]


def test_distillation_lowers_the_students_loss_against_the_teacher(tmp_path):
    teacher_cfg = _cfg(
        "teacher_cnn.yaml", tmp_path / "teacher", "MODEL.BACKBONE.WIDTH", 8, "SOLVER.MAX_ITER", 30
    )
    DefaultTrainer(teacher_cfg).train()
    # The teacher's config file as the student reads it: the same overrides as above.
    teacher_yaml = tmp_path / "teacher.yaml"
    teacher_yaml.write_text(teacher_cfg.dump())

    student_dir = tmp_path / "student"
    student_cfg = _cfg(
        "student_kd.yaml",
        student_dir,
        "KD.MODEL_CONFIG",
        str(teacher_yaml),
        "KD.MODEL_WEIGHTS",
        str(tmp_path / "teacher" / "model_final.pth"),
        "SOLVER.MAX_ITER",
        40,
        "SOLVER.LOG_PERIOD",
        5,
    )
    trainer = DistillationTrainer(student_cfg)
    trainer.train()
    loss_kd = _logged(student_dir, "loss_kd")
    assert len(loss_kd) == 8 and len(_logged(student_dir, "loss_cls")) == 8
    assert loss_kd[-1] < 0.6 * loss_kd[0], loss_kd

    # The student's checkpoint is a plain student: a config without KD predicts with it.
    plain_cfg = _cfg(
        "student_cnn.yaml",
        tmp_path / "plain",
        "MODEL.WEIGHTS",
        str(student_dir / "model_final.pth"),
    )
    predictor = DefaultPredictor(plain_cfg)
    for key, value in trainer.model.student.state_dict().items():
        assert torch.equal(predictor.model.state_dict()[key], value), key
    image = torch.randint(0, 256, (16, 16, 3), dtype=torch.uint8).numpy()
    assert 0 <= int(predictor(image)["pred_class"]) < 10

    # --eval-only with the KD config evaluates the student: the teacher's weights are not
    # needed (here they are gone).
    os.remove(tmp_path / "teacher" / "model_final.pth")
    eval_cfg = _cfg(
        "student_kd.yaml",
        tmp_path / "eval",
        "KD.MODEL_CONFIG",
        str(teacher_yaml),
        "KD.MODEL_WEIGHTS",
        str(tmp_path / "teacher" / "model_final.pth"),
        "MODEL.WEIGHTS",
        str(student_dir / "model_final.pth"),
        "DATASETS.TEST",
        "('digits_test',)",
    )
    args = default_argument_parser().parse_args(["--eval-only"])
    results = train_or_evaluate(eval_cfg, args)
    # The student learned: 53.6% measured here (10 classes: chance is 10%). The figure depends
    # on the CPU thread count (docs/reliability.md), hence the margin.
    assert results["classification"]["top1"] > 30.0


def test_the_distillation_trainer_registers_the_ema_teacher_before_the_checkpointer(tmp_path):
    cfg = _cfg("student_ema_teacher.yaml", tmp_path, "SOLVER.MAX_ITER", 3)
    trainer = DistillationTrainer(cfg)
    names = [type(h).__name__ for h in trainer.hooks]
    assert names.index("LRScheduler") + 1 == names.index("EMATeacher")
    assert names.index("EMATeacher") < names.index("PeriodicCheckpointer")
    trainer.train()
    assert trainer.model.teacher_updater.num_updates == 3
