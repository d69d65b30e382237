"""The old path of the distillation model; it now lives in :mod:`engine_lib.distillation`.

Distillation is a layer on top of the engine (it has its own trainer), so it is no longer
part of ``engine_lib.modeling``. This module keeps ``from engine_lib.modeling.distillation
import Distiller`` (and ``build_distiller``, ``build_teacher``, ``kd_loss``) working; it is
only imported when such a name is asked for.
"""

from engine_lib.distillation import Distiller, build_distiller, build_teacher, kd_loss

__all__ = ["Distiller", "build_distiller", "build_teacher", "kd_loss"]
