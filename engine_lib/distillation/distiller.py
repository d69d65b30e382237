"""The distillation model: a student trained against a frozen teacher's softened predictions.

:class:`Distiller` wraps a student and a teacher; in training it adds ``loss_kd`` (Hinton's
temperature-scaled KL divergence, as in fastreid's KD) to the student's own losses, in eval it
is the student. The teacher is either another model (:func:`~engine_lib.distillation.
build_teacher`), or an exponential moving average of the student that an
:class:`engine_lib.engine.hooks.EMATeacher` updates after each optimizer step
(:func:`~engine_lib.distillation.ema_teacher_hook`).

A model works as a student when it has ``logits(batched_inputs) -> Tensor`` and
``losses(logits, batched_inputs) -> dict``, and as a teacher when it has ``logits``;
:class:`~engine_lib.modeling.ImageClassifier` has both.
"""

import logging
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from engine_lib.utils.errors import ConfigError

__all__ = ["Distiller", "kd_loss"]

logger = logging.getLogger(__name__)


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Hinton's distillation loss ``T^2 * KL(softmax(t / T) || softmax(s / T))``.

    The KL divergence is summed over classes and averaged over the batch; the ``T^2`` factor
    keeps the gradients' scale independent of ``T``. Computed in float32 (also under autocast).

    Args:
        student_logits (Tensor): ``(N, C)`` logits of the student.
        teacher_logits (Tensor): ``(N, C)`` logits of the teacher (no gradient flows into them).
        temperature (float): the softmax temperature ``T`` > 0.

    Returns:
        Tensor: the scalar loss.

    Raises:
        ValueError: if the two logits differ in shape (e.g. in their number of classes).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"Student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape; the teacher must predict the same "
            "classes (MODEL.HEADS.NUM_CLASSES of both configs)"
        )
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach().float() / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * (temperature * temperature)


def _check_has(model: nn.Module, role: str, methods: List[str]) -> None:
    missing = [m for m in methods if not callable(getattr(model, m, None))]
    if missing:
        raise TypeError(
            f"{type(model).__name__} cannot be a distillation {role}: it lacks "
            f"{', '.join(m + '()' for m in missing)} (see engine_lib.modeling.distillation)"
        )


class Distiller(nn.Module):
    """A student trained against a frozen teacher; in eval mode, just the student.

    In training mode ``forward`` returns the student's losses (times ``student_loss_weight``;
    left out when it is 0) plus ``loss_kd = loss_weight * kd_loss(student, teacher, T)``, the
    teacher running in eval mode under ``no_grad`` on the same batch. In eval mode it returns
    the student's outputs.

    The teacher is deliberately not a registered submodule: its parameters are not in
    ``parameters()`` (so no optimizer, DDP, EMA or PreciseBN ever sees them), and
    :meth:`state_dict` / :meth:`load_state_dict` are the student's, with the student's own
    keys: a checkpoint of a distillation run loads as the plain student (``MODEL.WEIGHTS`` of
    a config without KD, the predictor, ``--eval-only``). The checkpointer unwraps DDP, so
    these two methods are only called on the Distiller itself. Parameter *names* do carry the
    ``student.`` prefix (e.g. ``MODEL.FREEZE_LAYERS ["student.backbone"]``).

    Args:
        student (nn.Module): the model trained; has ``logits`` and ``losses`` (see the module
            docstring).
        teacher (nn.Module): the model distilled from; has ``logits``. It is frozen and put in
            eval mode here.
        temperature (float): softmax temperature ``T`` > 0. Default: 4.0.
        loss_weight (float): weight of ``loss_kd``, >= 0. Default: 1.0.
        student_loss_weight (float): weight of the student's own losses, >= 0. Default: 1.0.
        ema_teacher (bool): the teacher is an EMA of the student, kept up to date by a
            :class:`~engine_lib.engine.hooks.EMATeacher` hook made by
            :func:`~engine_lib.distillation.ema_teacher_hook`; training refuses to start
            without one. Default: False.

    Example:
        >>> distiller = Distiller(student, teacher, temperature=4.0)
        >>> losses = distiller(batch)  # {"loss_cls": ..., "loss_kd": ...}
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        *,
        temperature: float = 4.0,
        loss_weight: float = 1.0,
        student_loss_weight: float = 1.0,
        ema_teacher: bool = False,
    ) -> None:
        super().__init__()
        _check_has(student, "student", ["logits", "losses"])
        _check_has(teacher, "teacher", ["logits"])
        if not temperature > 0:
            raise ConfigError(f"KD.TEMPERATURE={temperature} must be > 0")
        if loss_weight < 0 or student_loss_weight < 0:
            raise ConfigError(
                f"KD.LOSS_WEIGHT={loss_weight} and KD.STUDENT_LOSS_WEIGHT={student_loss_weight} "
                "must be >= 0"
            )
        self.student = student
        teacher.eval()
        teacher.requires_grad_(False)
        # A tuple hides the teacher from nn.Module's registration (see the class docstring).
        self._teacher = (teacher,)
        self.temperature = float(temperature)
        self.loss_weight = float(loss_weight)
        self.student_loss_weight = float(student_loss_weight)
        self.ema_teacher = ema_teacher
        # Set by ema_teacher_hook to the EMATeacher hook that updates an EMA teacher.
        self.teacher_updater: Optional[Any] = None

    @property
    def teacher(self) -> nn.Module:
        """nn.Module: the frozen teacher (not a submodule; see the class docstring)."""
        return self._teacher[0]

    def forward(
        self, batched_inputs: List[Dict[str, Any]]
    ) -> Union[Dict[str, torch.Tensor], List[Dict[str, torch.Tensor]]]:
        """The student's losses plus ``loss_kd`` in training; the student's outputs in eval.

        Args:
            batched_inputs (list[dict]): the student's input.

        Returns:
            dict[str, Tensor] | list[dict]: see the class docstring.
        """
        if not self.training:
            return self.student(batched_inputs)
        if self.ema_teacher and self.teacher_updater is None:
            raise RuntimeError(
                "KD.EMA_TEACHER is set but no hooks.EMATeacher updates the teacher; register "
                "engine_lib.distillation.ema_teacher_hook(model, cfg.KD.EMA_MOMENTUM) with the "
                "trainer (DistillationTrainer does)"
            )
        # Any: the methods __init__ checked for, which nn.Module's type does not show.
        student: Any = self.student
        teacher: Any = self.teacher
        logits = student.logits(batched_inputs)
        with torch.no_grad():
            teacher_logits = teacher.logits(batched_inputs)
        losses: Dict[str, torch.Tensor] = {}
        if self.student_loss_weight > 0:
            for name, value in student.losses(logits, batched_inputs).items():
                losses[name] = (
                    value if self.student_loss_weight == 1 else value * self.student_loss_weight
                )
        losses["loss_kd"] = self.loss_weight * kd_loss(logits, teacher_logits, self.temperature)
        return losses

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> "Distiller":
        # .to(), .cuda(), .half() reach registered submodules only; the teacher follows too.
        super()._apply(fn, recurse)
        self.teacher._apply(fn, recurse)
        return self

    def _fqn_modifiers(self) -> Dict[str, str]:
        """The ``student.`` prefix that :meth:`state_dict` keys leave out, for
        ``torch.distributed.checkpoint.state_dict`` (full state dicts under FSDP)."""
        return {name: "student" for name, _ in self.student.named_children()}

    # Module's arguments, passed on to the student: the signature differs only in form.
    def state_dict(self, *args: Any, **kwargs: Any) -> Dict[str, Any]:  # type: ignore[override]
        """The student's state dict, with the student's keys (see the class docstring)."""
        return self.student.state_dict(*args, **kwargs)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Load a student state dict (as :meth:`state_dict` returns) into the student."""
        return self.student.load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        teacher = "EMA of the student" if self.ema_teacher else type(self.teacher).__name__
        return (
            f"teacher={teacher}, temperature={self.temperature}, loss_weight={self.loss_weight}, "
            f"student_loss_weight={self.student_loss_weight}"
        )
