"""``DistillationTrainer``: a ``DefaultTrainer`` that trains a student against a teacher.

Distillation is a layer on top of the engine: the core trainer and hooks know nothing of it.
This trainer wraps the model its base class builds (the student) in a :class:`Distiller`
with the teacher the ``KD.*`` keys describe, optimizes the student's parameters under the
student's own names, freezes the student's layers, and with ``KD.EMA_TEACHER`` registers the
:class:`~engine_lib.engine.hooks.EMATeacher` hook that keeps the teacher an average of the
student. :func:`select_trainer` is the one place a config (``KD.ENABLED``) picks it.
"""

import logging
from typing import List, Optional, Type

import torch
from torch import nn

from engine_lib.config import CfgNode
from engine_lib.engine import DefaultTrainer, hooks
from engine_lib.utils.errors import ConfigError

from .distiller import Distiller
from .teacher import build_distiller

__all__ = ["DistillationTrainer", "ema_teacher_hook", "select_trainer"]

logger = logging.getLogger(__name__)


def ema_teacher_hook(model: nn.Module, momentum: float = 0.999) -> hooks.EMATeacher:
    """The :class:`~engine_lib.engine.hooks.EMATeacher` of a Distiller's EMA teacher.

    Args:
        model (nn.Module): a :class:`Distiller` built with ``ema_teacher=True`` (a DDP wrapper
            is unwrapped), e.g. from ``KD.EMA_TEACHER``.
        momentum (float): the weight of the old teacher, in [0, 1). Default: 0.999.

    Returns:
        EMATeacher: the hook; the Distiller then trains (it refuses to without one).

    Raises:
        ConfigError: ``model`` is no EMA-teacher Distiller, already has an updater, or
            ``momentum`` is outside [0, 1).
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    if not isinstance(model, Distiller) or not model.ema_teacher:
        raise ConfigError(
            f"An EMA teacher hook needs a Distiller with an EMA teacher (KD.ENABLED and "
            f"KD.EMA_TEACHER), got {type(model).__name__}"
        )
    if model.teacher_updater is not None:
        raise ConfigError("The Distiller's EMA teacher already has an EMATeacher hook")
    if not 0.0 <= momentum < 1.0:
        raise ConfigError(f"KD.EMA_MOMENTUM={momentum} must be in [0, 1)")
    hook = hooks.EMATeacher(model.student, model.teacher, momentum)
    model.teacher_updater = hook
    return hook


class DistillationTrainer(DefaultTrainer):
    """``DefaultTrainer`` with knowledge distillation as the ``KD.*`` keys describe.

    Checkpoints hold the plain student (see :class:`Distiller`), ``SOLVER.LR_FACTORS`` and
    ``MODEL.FREEZE_LAYERS`` name the student's modules (``"head"``, not ``"student.head"``),
    and the EMA teacher's weights are its hook's state, so ``--resume`` is exact.

    Every method calls its base class, so it also combines with a project's trainer:
    ``class MyKDTrainer(DistillationTrainer, MyTrainer)`` (or :func:`select_trainer`).

    Example:
        >>> trainer = DistillationTrainer(cfg)  # cfg.KD.ENABLED
        >>> trainer.train()
    """

    @classmethod
    def build_model(cls, cfg: CfgNode) -> nn.Module:
        """The base class's model as the student, in a :class:`Distiller` with its teacher."""
        return build_distiller(cfg, super().build_model(cfg))

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
        """The base class's optimizer of the student, under the student's parameter names."""
        return super().build_optimizer(cfg, _student_of(model))

    def build_layer_freeze_hook(
        self, model: Optional[nn.Module] = None
    ) -> Optional[hooks.HookBase]:
        """Freeze the student's layers (``MODEL.FREEZE_LAYERS`` names them as without KD)."""
        if model is None:
            model = _student_of(_unwrap(self.model))
        return super().build_layer_freeze_hook(model)

    def build_hooks(self) -> List[Optional[hooks.HookBase]]:
        """The default hooks, plus the EMA teacher's right after the LR scheduler.

        The teacher is updated after each optimizer step, before any hook saves or evaluates.
        """
        hook_list = super().build_hooks()
        if self.cfg.KD.EMA_TEACHER:
            after = [i for i, h in enumerate(hook_list) if isinstance(h, hooks.LRScheduler)]
            index = after[0] + 1 if after else len(hook_list)
            hook_list.insert(index, ema_teacher_hook(self.model, self.cfg.KD.EMA_MOMENTUM))
        return hook_list


def select_trainer(
    cfg: CfgNode, base: Type[DefaultTrainer] = DefaultTrainer, *, eval_only: bool = False
) -> Type[DefaultTrainer]:
    """The trainer class for ``cfg``: ``base``, with distillation when ``KD.ENABLED``.

    The one place where a config key brings distillation in (``tools/train_net.py`` calls
    it). Evaluation runs the student alone (a distillation checkpoint is the plain student),
    so with ``eval_only`` no teacher is built: ``base`` is returned.

    Args:
        cfg (CfgNode): the config.
        base (type): the trainer to extend, e.g. a project's ``DefaultTrainer`` subclass.
        eval_only (bool): the run only evaluates. Default: False.

    Returns:
        type: ``base``; or :class:`DistillationTrainer` (for ``DefaultTrainer``), or a class
        combining it with ``base``.
    """
    if not cfg.KD.ENABLED or eval_only or issubclass(base, DistillationTrainer):
        return base
    if base is DefaultTrainer:
        return DistillationTrainer
    return type(f"Distillation{base.__name__}", (DistillationTrainer, base), {})


def _student_of(model: nn.Module) -> nn.Module:
    return model.student if isinstance(model, Distiller) else model


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
