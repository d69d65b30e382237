"""Knowledge distillation: train a student against a frozen teacher's softened predictions.

:class:`Distiller` wraps a student and a teacher; in training it adds ``loss_kd`` (Hinton's
temperature-scaled KL divergence, as in fastreid's KD) to the student's own losses, in eval it
is the student. The teacher is either another model built from ``KD.MODEL_CONFIG`` and
``KD.MODEL_WEIGHTS``, or an exponential moving average of the student that
:class:`engine_lib.engine.hooks.EMATeacher` updates after each optimizer step.

A model works as a student when it has ``logits(batched_inputs) -> Tensor`` and
``losses(logits, batched_inputs) -> dict``, and as a teacher when it has ``logits``;
:class:`~engine_lib.modeling.ImageClassifier` has both.
"""

import copy
import logging
from typing import Any, Dict, List, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from engine_lib.checkpoint import CheckpointError, read_checkpoint
from engine_lib.config import CfgNode, get_cfg
from engine_lib.utils.errors import ConfigError, UserError
from engine_lib.utils.file_io import PathManager

from .build import build_model

__all__ = ["Distiller", "build_distiller", "build_teacher", "kd_loss"]

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
            :class:`~engine_lib.engine.hooks.EMATeacher` hook; training refuses to start
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
        # Set by the EMATeacher hook that updates an EMA teacher.
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
                "hooks.EMATeacher(model, cfg.KD.EMA_MOMENTUM) with the trainer"
            )
        logits = self.student.logits(batched_inputs)
        with torch.no_grad():
            teacher_logits = self.teacher.logits(batched_inputs)
        losses: Dict[str, torch.Tensor] = {}
        if self.student_loss_weight > 0:
            for name, value in self.student.losses(logits, batched_inputs).items():
                losses[name] = (
                    value if self.student_loss_weight == 1 else value * self.student_loss_weight
                )
        losses["loss_kd"] = self.loss_weight * kd_loss(logits, teacher_logits, self.temperature)
        return losses

    def _apply(self, fn, recurse: bool = True):
        # .to(), .cuda(), .half() reach registered submodules only; the teacher follows too.
        super()._apply(fn, recurse)
        self.teacher._apply(fn, recurse)
        return self

    def state_dict(self, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        """The student's state dict, with the student's keys (see the class docstring)."""
        return self.student.state_dict(*args, **kwargs)

    def load_state_dict(
        self, state_dict: Dict[str, Any], strict: bool = True, assign: bool = False
    ):
        """Load a student state dict (as :meth:`state_dict` returns) into the student."""
        return self.student.load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        teacher = "EMA of the student" if self.ema_teacher else type(self.teacher).__name__
        return (
            f"teacher={teacher}, temperature={self.temperature}, loss_weight={self.loss_weight}, "
            f"student_loss_weight={self.student_loss_weight}"
        )


def build_teacher(cfg: CfgNode, base_cfg: Optional[CfgNode] = None) -> nn.Module:
    """Build the teacher of ``KD.MODEL_CONFIG`` and load ``KD.MODEL_WEIGHTS`` into it.

    The teacher's config is merged into ``base_cfg`` (default: :func:`get_cfg`); its
    ``MODEL.DEVICE`` is the student's. The weights (a checkpoint written by engine_lib, or a
    plain state dict) are read with ``weights_only`` unless ``MODEL.WEIGHTS_ALLOW_PICKLE``,
    and must fit the teacher exactly: a teacher with random layers would teach noise.

    Args:
        cfg (CfgNode): the student's config.
        base_cfg (CfgNode, optional): the config the teacher's file is merged into; a project
            with its own config keys passes ``get_cfg()`` with them added.

    Returns:
        nn.Module: the teacher, on the student's device, in training mode (the
        :class:`Distiller` freezes it).

    Raises:
        ConfigError: ``KD.MODEL_CONFIG`` or ``KD.MODEL_WEIGHTS`` is empty, missing,
            unreadable, does not fit, or the teacher predicts another number of classes.
    """
    path, weights = cfg.KD.MODEL_CONFIG, cfg.KD.MODEL_WEIGHTS
    if not path:
        raise ConfigError(
            "KD.ENABLED needs KD.MODEL_CONFIG (the teacher's config file), or KD.EMA_TEACHER"
        )
    if not weights:
        raise ConfigError(
            f"KD.MODEL_WEIGHTS is empty; give the checkpoint of the teacher of {path} "
            "(KD.MODEL_CONFIG), or set KD.EMA_TEACHER"
        )
    teacher_cfg = (get_cfg() if base_cfg is None else base_cfg).clone()
    teacher_cfg.defrost()
    try:
        teacher_cfg.merge_from_file(PathManager.get_local_path(path))
    except (UserError, OSError) as e:
        raise ConfigError(f"KD.MODEL_CONFIG={path!r} (the teacher's config): {e}") from e
    teacher_cfg.MODEL.DEVICE = cfg.MODEL.DEVICE
    teacher_cfg.KD.ENABLED = False
    teacher_cfg.freeze()
    if teacher_cfg.MODEL.HEADS.NUM_CLASSES != cfg.MODEL.HEADS.NUM_CLASSES:
        raise ConfigError(
            f"The teacher ({path}) has MODEL.HEADS.NUM_CLASSES="
            f"{teacher_cfg.MODEL.HEADS.NUM_CLASSES} but the student "
            f"{cfg.MODEL.HEADS.NUM_CLASSES}; they must predict the same classes"
        )
    teacher = build_model(teacher_cfg)
    try:
        checkpoint = read_checkpoint(
            PathManager.get_local_path(weights), allow_pickle=cfg.MODEL.WEIGHTS_ALLOW_PICKLE
        )
    except (CheckpointError, OSError) as e:
        raise ConfigError(f"KD.MODEL_WEIGHTS={weights!r} (the teacher's weights): {e}") from e
    state = checkpoint.get("model", checkpoint)
    try:
        teacher.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ConfigError(
            f"KD.MODEL_WEIGHTS={weights!r} does not fit the teacher built from "
            f"KD.MODEL_CONFIG={path!r}: {e}"
        ) from e
    logger.info(
        "Distillation teacher: %s from %s, weights %s", type(teacher).__name__, path, weights
    )
    return teacher


def build_distiller(
    cfg: CfgNode, student: nn.Module, base_cfg: Optional[CfgNode] = None
) -> Distiller:
    """Wrap ``student`` in a :class:`Distiller` as the ``KD.*`` keys say.

    Args:
        cfg (CfgNode): the student's config.
        student (nn.Module): the student, built from ``cfg``.
        base_cfg (CfgNode, optional): see :func:`build_teacher`.

    Returns:
        Distiller: the student and its teacher: a copy of the student when
        ``KD.EMA_TEACHER`` (its EMA starts from the student's weights when training starts),
        else :func:`build_teacher`.

    Raises:
        ConfigError: a ``KD`` key has a bad value (see :func:`build_teacher`).
    """
    kd = cfg.KD
    if kd.EMA_TEACHER:
        if not 0.0 <= kd.EMA_MOMENTUM < 1.0:
            raise ConfigError(f"KD.EMA_MOMENTUM={kd.EMA_MOMENTUM} must be in [0, 1)")
        teacher = copy.deepcopy(student)
    else:
        teacher = build_teacher(cfg, base_cfg)
    return Distiller(
        student,
        teacher,
        temperature=kd.TEMPERATURE,
        loss_weight=kd.LOSS_WEIGHT,
        student_loss_weight=kd.STUDENT_LOSS_WEIGHT,
        ema_teacher=kd.EMA_TEACHER,
    )
