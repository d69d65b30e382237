"""Keep a teacher model an exponential moving average (EMA) of its student."""

import logging
from typing import Any, Dict

import torch
from torch import nn

from ..train_loop import HookBase

__all__ = ["EMATeacher"]

logger = logging.getLogger(__name__)


def _named_tensors(model: nn.Module) -> Dict[str, torch.Tensor]:
    # Looked up at every use: buffers may be replaced by new tensors (PreciseBN does so).
    tensors: Dict[str, torch.Tensor] = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    return tensors


class EMATeacher(HookBase):
    """Update ``teacher`` as an EMA of ``student`` after each optimizer step ("mean teacher").

    After each step, ``teacher = m * teacher + (1 - m) * student`` for every floating-point
    parameter and buffer (on the device, no host sync); other buffers are copied. Unlike
    :class:`EMA`, the average *is* the teacher's weights, which the model uses at every step.
    The teacher starts from the student's weights when training starts (so weights loaded
    after the hook was built are the start), unless a checkpoint restored it: the teacher's
    weights are this hook's state, which makes a resumed run exact (a model that hides its
    teacher saves the student alone).

    The two models are plain modules with the same parameter and buffer names (the teacher
    is usually a deep copy of the student); knowledge distillation builds them and registers
    this hook through :func:`engine_lib.distillation.ema_teacher_hook`. Register it right
    after the LR scheduler, before the hooks that save checkpoints.

    Args:
        student (nn.Module): the model trained (a DDP wrapper is unwrapped).
        teacher (nn.Module): the model averaged; not trained by the optimizer.
        momentum (float): ``m``, the weight of the old teacher, in [0, 1). Default: 0.999.

    Raises:
        ValueError: ``momentum`` outside [0, 1), or the two models' tensors differ in names.

    Example:
        >>> teacher = copy.deepcopy(student).requires_grad_(False)
        >>> trainer.register_hooks([hooks.EMATeacher(student, teacher, momentum=0.99)])
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, momentum: float = 0.999) -> None:
        if isinstance(student, nn.parallel.DistributedDataParallel):
            student = student.module
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"EMATeacher momentum={momentum} must be in [0, 1)")
        names, teacher_names = set(_named_tensors(student)), set(_named_tensors(teacher))
        if names != teacher_names:
            differ = sorted(names ^ teacher_names)
            raise ValueError(
                f"EMATeacher: the student ({type(student).__name__}) and the teacher "
                f"({type(teacher).__name__}) differ in {len(differ)} parameter or buffer "
                f"names, e.g. {differ[0]!r}; the teacher must be a copy of the student"
            )
        self.student = student
        self.teacher = teacher
        self.momentum = float(momentum)
        self._restored = False
        self.num_updates = 0

    def before_train(self) -> None:
        if not self._restored:
            with torch.no_grad():
                teacher = _named_tensors(self.teacher)
                for name, value in _named_tensors(self.student).items():
                    teacher[name].copy_(value)

    @torch.no_grad()
    def after_step(self) -> None:
        student = _named_tensors(self.student)
        teacher = _named_tensors(self.teacher)
        floats = [name for name, t in teacher.items() if t.is_floating_point()]
        torch._foreach_lerp_(
            [teacher[name] for name in floats],
            [student[name].detach() for name in floats],
            1.0 - self.momentum,
        )
        for name, t in teacher.items():
            if not t.is_floating_point():
                t.copy_(student[name])
        self.num_updates += 1

    def state_dict(self) -> Dict[str, Any]:
        return {"num_updates": self.num_updates, "teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.teacher.load_state_dict(state["teacher"])
        self.num_updates = int(state["num_updates"])
        self._restored = True
