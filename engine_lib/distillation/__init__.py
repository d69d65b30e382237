"""Knowledge distillation, a layer on top of the engine (``KD.*`` config keys).

* :class:`Distiller`, :func:`kd_loss`: the model that trains a student against a teacher;
* :func:`build_teacher`, :func:`build_distiller`: the teacher of ``KD.MODEL_CONFIG`` and
  ``KD.MODEL_WEIGHTS`` (or an EMA copy of the student), and the Distiller;
* :class:`DistillationTrainer`, :func:`ema_teacher_hook`, :func:`select_trainer`: training.

``engine_lib.engine`` imports nothing from here; ``tools/train_net.py`` brings it in with
``select_trainer(cfg)`` when ``KD.ENABLED``.
"""

from .distiller import Distiller, kd_loss
from .teacher import build_distiller, build_teacher
from .trainer import DistillationTrainer, ema_teacher_hook, select_trainer

__all__ = [
    "DistillationTrainer",
    "Distiller",
    "build_distiller",
    "build_teacher",
    "ema_teacher_hook",
    "kd_loss",
    "select_trainer",
]
