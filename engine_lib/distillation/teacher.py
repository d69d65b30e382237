"""Build a distillation teacher and its :class:`Distiller` from the ``KD.*`` config keys.

The teacher is a second engine_lib model: its own config file (``KD.MODEL_CONFIG``) and
checkpoint (``KD.MODEL_WEIGHTS``), or, with ``KD.EMA_TEACHER``, a copy of the student that an
EMA hook keeps up to date.
"""

import copy
import logging
from typing import Optional

from torch import nn

from engine_lib.checkpoint import CheckpointError, read_checkpoint
from engine_lib.config import CfgNode, get_cfg
from engine_lib.modeling import build_model
from engine_lib.utils.errors import ConfigError, UserError
from engine_lib.utils.file_io import PathManager

from .distiller import Distiller

__all__ = ["build_distiller", "build_teacher"]

logger = logging.getLogger(__name__)


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
    _load_teacher_weights(teacher, cfg)
    logger.info(
        "Distillation teacher: %s from %s, weights %s", type(teacher).__name__, path, weights
    )
    return teacher


def _load_teacher_weights(teacher: nn.Module, cfg: CfgNode) -> None:
    path, weights = cfg.KD.MODEL_CONFIG, cfg.KD.MODEL_WEIGHTS
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
