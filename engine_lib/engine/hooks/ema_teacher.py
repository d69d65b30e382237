"""Keep a distillation teacher an exponential moving average (EMA) of its student."""

import logging
from typing import Any, Dict

import torch
from torch import nn

from engine_lib.modeling import Distiller
from engine_lib.utils.errors import ConfigError

from ..train_loop import HookBase

__all__ = ["EMATeacher"]

logger = logging.getLogger(__name__)


def _named_tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
    # Looked up at every use: buffers may be replaced by new tensors (PreciseBN does so).
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    return tensors


class EMATeacher(HookBase):
    """Update a :class:`~engine_lib.modeling.Distiller`'s teacher as an EMA of its student.

    After each optimizer step, ``teacher = m * teacher + (1 - m) * student`` for every
    floating-point parameter and buffer (on the device, no host sync); other buffers are
    copied. Unlike :class:`EMA`, the average *is* the teacher's weights, which the Distiller
    runs at every step. The teacher starts from the student's weights when training starts
    (so ``MODEL.WEIGHTS`` loaded after the hook was built are the start), unless a checkpoint
    restored it: the teacher's weights are this hook's state, which makes a resumed run exact
    (the model's own checkpoint state is the student alone).

    Register it right after the LR scheduler, before the hooks that save checkpoints.

    Args:
        model (nn.Module): a Distiller built with ``ema_teacher=True`` (a DDP wrapper is
            unwrapped), e.g. from ``KD.EMA_TEACHER``.
        momentum (float): ``m``, the weight of the old teacher, in [0, 1). Default: 0.999.

    Raises:
        ConfigError: ``model`` is no EMA-teacher Distiller, already has an updater, or
            ``momentum`` is outside [0, 1).

    Example:
        >>> trainer.register_hooks([hooks.EMATeacher(trainer.model, cfg.KD.EMA_MOMENTUM)])
    """

    def __init__(self, model: nn.Module, momentum: float = 0.999) -> None:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        if not isinstance(model, Distiller) or not model.ema_teacher:
            raise ConfigError(
                f"EMATeacher needs a Distiller with an EMA teacher (KD.ENABLED and "
                f"KD.EMA_TEACHER), got {type(model).__name__}"
            )
        if model.teacher_updater is not None:
            raise ConfigError("The Distiller's EMA teacher already has an EMATeacher hook")
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"KD.EMA_MOMENTUM={momentum} must be in [0, 1)")
        self._distiller = model
        self._momentum = float(momentum)
        self._restored = False
        self.num_updates = 0
        model.teacher_updater = self

    def before_train(self) -> None:
        if not self._restored:
            with torch.no_grad():
                teacher = _named_tensors(self._distiller.teacher)
                for name, value in _named_tensors(self._distiller.student).items():
                    teacher[name].copy_(value)

    @torch.no_grad()
    def after_step(self) -> None:
        student = _named_tensors(self._distiller.student)
        teacher = _named_tensors(self._distiller.teacher)
        floats = [name for name, t in teacher.items() if t.is_floating_point()]
        torch._foreach_lerp_(
            [teacher[name] for name in floats],
            [student[name].detach() for name in floats],
            1.0 - self._momentum,
        )
        for name, t in teacher.items():
            if not t.is_floating_point():
                t.copy_(student[name])
        self.num_updates += 1

    def state_dict(self) -> Dict[str, Any]:
        return {"num_updates": self.num_updates, "teacher": self._distiller.teacher.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self._distiller.teacher.load_state_dict(state["teacher"])
        self.num_updates = int(state["num_updates"])
        self._restored = True
