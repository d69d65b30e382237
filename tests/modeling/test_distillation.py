"""Knowledge distillation: the KD loss, the Distiller, teacher building and the EMA teacher.

The model names are imported from ``engine_lib.modeling``, their old path, which must keep
working; the trainer comes from ``engine_lib.distillation``.
"""

import itertools

import pytest
import torch
import torch.nn.functional as F

from engine_lib.checkpoint import Checkpointer
from engine_lib.config import get_cfg
from engine_lib.distillation import DistillationTrainer, ema_teacher_hook, select_trainer
from engine_lib.engine import DefaultTrainer, SimpleTrainer, hooks
from engine_lib.modeling import Distiller, build_distiller, build_model, kd_loss
from engine_lib.solver import build_optimizer
from engine_lib.utils.errors import ConfigError


def _cfg(width=2, classes=5):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.WIDTH = width
    cfg.MODEL.HEADS.NUM_CLASSES = classes
    return cfg


def _model(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg)


def _batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=g),
            "label": i % 5,
        }
        for i in range(n)
    ]


def test_kd_loss_is_t_squared_times_the_kl_divergence():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    for temperature in (1.0, 4.0):
        p_t = (t / temperature).softmax(1)
        manual = (p_t * (p_t.log() - (s / temperature).log_softmax(1))).sum(1).mean()
        torch.testing.assert_close(kd_loss(s, t, temperature), temperature**2 * manual)
    assert kd_loss(t, t, 2.0).abs().item() < 1e-6
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        kd_loss(s, t[:, :3], 1.0)


def test_distiller_trains_the_student_only_and_is_the_student_in_eval():
    cfg = _cfg()
    student, teacher = _model(cfg, 0), _model(_cfg(width=4), 1)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    model = Distiller(student, teacher, temperature=2.0, loss_weight=0.5)
    assert all(not p.requires_grad for p in teacher.parameters())
    optimizer = build_optimizer(cfg, model)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in student.parameters()}
    assert {id(p) for p in model.parameters()} == optimized

    batch = _batch()
    losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_kd"}
    with torch.no_grad():
        expected = 0.5 * kd_loss(student.logits(batch), teacher.logits(batch), 2.0)
        torch.testing.assert_close(
            losses["loss_cls"], F.cross_entropy(student.logits(batch), torch.arange(6) % 5)
        )
    torch.testing.assert_close(losses["loss_kd"], expected)
    sum(losses.values()).backward()
    optimizer.step()
    assert not teacher.training  # the teacher runs in eval mode: its BN statistics stay put
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k

    # Distillation only: the student's own loss is left out.
    assert set(Distiller(student, teacher, student_loss_weight=0.0)(batch)) == {"loss_kd"}
    model.eval()
    student.eval()
    for a, b in zip(model(batch), student(batch)):
        torch.testing.assert_close(a["scores"], b["scores"])
    with pytest.raises(ConfigError, match="KD.TEMPERATURE"):
        Distiller(student, teacher, temperature=0.0)
    with pytest.raises(TypeError, match="logits"):
        Distiller(torch.nn.Linear(2, 2), teacher)


def test_checkpoint_of_a_distiller_loads_into_the_plain_student(tmp_path):
    cfg = _cfg()
    model = Distiller(_model(cfg, 0), _model(_cfg(width=4), 1))
    Checkpointer(model, str(tmp_path)).save("model_final")
    plain = _model(cfg, 2)
    assert set(model.state_dict()) == set(plain.state_dict())
    Checkpointer(plain).load(str(tmp_path / "model_final.pth"))
    for k, v in model.student.state_dict().items():
        assert torch.equal(plain.state_dict()[k], v), k
    # ...and back into a Distiller (resume).
    again = Distiller(_model(cfg, 3), _model(_cfg(width=4), 1))
    Checkpointer(again).load(str(tmp_path / "model_final.pth"))
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


def _teacher_files(tmp_path, width=4):
    teacher_cfg = _cfg(width=width)
    path = tmp_path / "teacher.yaml"
    path.write_text(teacher_cfg.dump())
    teacher = _model(teacher_cfg, 7)
    Checkpointer(teacher, str(tmp_path)).save("teacher")
    return str(path), str(tmp_path / "teacher.pth"), teacher


def test_build_distiller_loads_the_teacher_and_reports_bad_kd_config(tmp_path):
    config, weights, saved = _teacher_files(tmp_path)
    cfg = _cfg()
    cfg.KD.ENABLED = True
    cfg.KD.MODEL_CONFIG, cfg.KD.MODEL_WEIGHTS = config, weights
    cfg.KD.TEMPERATURE = 3.0
    model = DistillationTrainer.build_model(cfg)
    assert isinstance(model, Distiller) and model.temperature == 3.0
    assert not isinstance(DefaultTrainer.build_model(cfg), Distiller)  # the core knows no KD
    for k, v in saved.state_dict().items():
        assert torch.equal(model.teacher.state_dict()[k], v), k

    def error(**kd):
        bad = cfg.clone()
        for key, value in kd.items():
            setattr(bad.KD, key, value)
        with pytest.raises(ConfigError) as e:
            build_distiller(bad, _model(bad))
        return str(e.value)

    assert "KD.MODEL_CONFIG" in error(MODEL_CONFIG="")
    assert "nope.yaml" in error(MODEL_CONFIG=str(tmp_path / "nope.yaml"))
    assert "KD.MODEL_WEIGHTS" in error(MODEL_WEIGHTS="")
    assert "missing.pth" in error(MODEL_WEIGHTS=str(tmp_path / "missing.pth"))
    assert "KD.EMA_MOMENTUM" in error(EMA_TEACHER=True, EMA_MOMENTUM=1.0)
    (tmp_path / "wide").mkdir()
    _, wide_weights, _ = _teacher_files(tmp_path / "wide", width=8)
    assert "does not fit" in error(MODEL_WEIGHTS=wide_weights)
    wrong_classes = tmp_path / "classes.yaml"
    wrong_classes.write_text(_cfg(width=4, classes=3).dump())
    assert "NUM_CLASSES" in error(MODEL_CONFIG=str(wrong_classes))


class _EMATeacherTrainer(SimpleTrainer):
    """A SimpleTrainer of an EMA-teacher Distiller, checkpointed every 2 iterations."""

    def __init__(self, out_dir, momentum=0.5):
        torch.manual_seed(0)
        cfg = _cfg()
        cfg.KD.EMA_TEACHER = True
        model = build_distiller(cfg, build_model(cfg))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        super().__init__(model, itertools.repeat(_batch()), optimizer)
        self.checkpointer = Checkpointer(model, str(out_dir), optimizer=optimizer, trainer=self)
        self.ema = ema_teacher_hook(model, momentum)
        self.register_hooks([self.ema, hooks.PeriodicCheckpointer(self.checkpointer, period=2)])


def test_ema_teacher_follows_the_student_and_survives_a_resume(tmp_path):
    trainer = _EMATeacherTrainer(tmp_path / "a")
    student, teacher = trainer.model.student, trainer.model.teacher
    snapshots = []

    def snapshot(_):
        snapshots.append({k: v.clone() for k, v in student.state_dict().items()})

    trainer.register_hooks([hooks.CallbackHook(after_step=snapshot)])
    expected = {k: v.clone() for k, v in student.state_dict().items()}
    trainer.train(0, 4)
    for snap in snapshots:
        for k, v in snap.items():
            expected[k] = 0.5 * expected[k] + 0.5 * v if v.is_floating_point() else v
    for k, v in expected.items():
        torch.testing.assert_close(teacher.state_dict()[k], v)
    assert trainer.ema.num_updates == 4
    assert not torch.equal(teacher.head.linear.weight, student.head.linear.weight)

    resumed = _EMATeacherTrainer(tmp_path / "b")
    resumed.checkpointer.load(str(tmp_path / "a" / "model_0000001.pth"))
    resumed.train(resumed.iter + 1, 4)
    for k, v in teacher.state_dict().items():
        assert torch.equal(resumed.model.teacher.state_dict()[k], v), k

    # Without its hook an EMA teacher would never move: training refuses to start.
    cfg = _cfg()
    cfg.KD.EMA_TEACHER = True
    with pytest.raises(RuntimeError, match="EMATeacher"):
        build_distiller(cfg, build_model(cfg))(_batch())
    with pytest.raises(ConfigError, match="EMA teacher"):
        ema_teacher_hook(build_model(cfg))
    with pytest.raises(ConfigError, match="already has"):
        ema_teacher_hook(trainer.model)


def test_ema_teacher_hook_takes_plain_modules():
    torch.manual_seed(0)
    student = build_model(_cfg())
    teacher = build_model(_cfg()).requires_grad_(False)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    trainer = SimpleTrainer(student, itertools.repeat(_batch()), optimizer)
    hook = hooks.EMATeacher(student, teacher, momentum=0.0)  # momentum 0: a copy each step
    trainer.register_hooks([hook])
    trainer.train(0, 2)
    for k, v in student.state_dict().items():
        assert torch.equal(teacher.state_dict()[k], v), k
    assert hook.num_updates == 2
    with pytest.raises(ValueError, match=r"momentum=1\.0"):
        hooks.EMATeacher(student, teacher, momentum=1.0)
    with pytest.raises(ValueError, match="differ in"):
        hooks.EMATeacher(student, build_model(_cfg(width=4)).head)


def test_lr_factors_and_frozen_layers_name_the_students_modules_under_kd(tmp_path):
    config, weights, _ = _teacher_files(tmp_path)
    cfg = _cfg()
    cfg.KD.ENABLED = True
    cfg.KD.MODEL_CONFIG, cfg.KD.MODEL_WEIGHTS = config, weights
    cfg.merge_from_list(
        ["OUTPUT_DIR", str(tmp_path / "out"), "SOLVER.MAX_ITER", 2, "SOLVER.IMS_PER_BATCH", 8]
        + ["INPUT.SIZE_TRAIN", "(16, 16)", "DATASETS.TEST", "()", "MODEL.HEADS.NUM_CLASSES", 10]
        + ["SOLVER.LR_FACTORS", "[['head', 10.0]]", "MODEL.FREEZE_LAYERS", "['backbone']"]
        + ["MODEL.FREEZE_ITERS", 2]
    )
    # The teacher must match the student's 10 classes.
    teacher_cfg = _cfg(width=4, classes=10)
    (tmp_path / "teacher.yaml").write_text(teacher_cfg.dump())
    Checkpointer(_model(teacher_cfg, 7), str(tmp_path)).save("teacher")
    trainer = select_trainer(cfg)(cfg)
    assert type(trainer) is DistillationTrainer
    head = {id(p) for p in trainer.model.student.head.parameters()}
    base = {  # (in the head, LR before warmup) of every param group
        (all(id(p) in head for p in group["params"]), group["initial_lr"])
        for group in trainer.optimizer.param_groups
    }
    assert base == {(True, 10 * cfg.SOLVER.BASE_LR), (False, cfg.SOLVER.BASE_LR)}
    before = [p.detach().clone() for p in trainer.model.student.backbone.parameters()]
    trainer.train()
    after = list(trainer.model.student.backbone.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after))  # "backbone" stayed frozen


def test_select_trainer_brings_distillation_in_only_for_training_with_kd():
    cfg = _cfg()
    assert select_trainer(cfg) is DefaultTrainer
    cfg.KD.ENABLED = True
    assert select_trainer(cfg) is DistillationTrainer
    assert select_trainer(cfg, eval_only=True) is DefaultTrainer

    class ProjectTrainer(DefaultTrainer):
        pass

    combined = select_trainer(cfg, ProjectTrainer)
    assert issubclass(combined, DistillationTrainer) and issubclass(combined, ProjectTrainer)
    assert select_trainer(cfg, combined) is combined
