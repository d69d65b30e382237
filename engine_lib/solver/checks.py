"""Start-up warnings about solver settings that silently do nothing or harm a run."""

import logging
from typing import Any, Dict, List, Tuple

__all__ = ["SCHEDULE_KEYS_READ", "check_solver_settings"]

logger = logging.getLogger(__name__)

#: The schedule keys each built-in schedule reads; the others of ``_SCHEDULE_KEYS`` have no
#: effect under it. A project's schedule (not listed) is not checked.
SCHEDULE_KEYS_READ: Dict[str, Tuple[str, ...]] = {
    "WarmupMultiStepLR": ("STEPS", "GAMMA"),
    "WarmupCosineLR": ("BASE_LR_END", "DELAY_EPOCHS"),
    "WarmupStepWithFixedGammaLR": ("GAMMA", "NUM_DECAYS"),
    "WarmupConstantLR": (),
}
_SCHEDULE_KEYS = ("STEPS", "GAMMA", "BASE_LR_END", "NUM_DECAYS")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def check_solver_settings(cfg: Any) -> List[str]:
    """Warn (once per run, at start-up) about solver settings that mislead.

    * a schedule key set away from its default that the chosen ``SOLVER.LR_SCHEDULER_NAME``
      does not read (e.g. ``SOLVER.STEPS`` under ``WarmupCosineLR``);
    * ``SOLVER.MAX_ITER`` at or below ``SOLVER.WARMUP_ITERS``: the whole run is warmup;
    * float16 autocast on CPU (``SOLVER.AMP``), many times slower than float32 there.

    Args:
        cfg (CfgNode): the resolved config (periods in iterations).

    Returns:
        list[str]: the warnings logged.
    """
    from engine_lib.config import get_cfg

    solver, defaults = cfg.SOLVER, get_cfg().SOLVER
    warnings: List[str] = []
    name = solver.LR_SCHEDULER_NAME
    if name in SCHEDULE_KEYS_READ:
        for key in _SCHEDULE_KEYS:
            if key not in SCHEDULE_KEYS_READ[name] and not _same(solver[key], defaults[key]):
                warnings.append(
                    f"SOLVER.{key}={solver[key]!r} has no effect under SOLVER.LR_SCHEDULER_NAME="
                    f"{name!r} (it reads {', '.join(SCHEDULE_KEYS_READ[name]) or 'none of them'}); "
                    "choose a schedule that uses it or drop the key."
                )
    if 0 < solver.MAX_ITER <= solver.WARMUP_ITERS:
        warnings.append(
            f"SOLVER.MAX_ITER={solver.MAX_ITER} is at or below SOLVER.WARMUP_ITERS="
            f"{solver.WARMUP_ITERS}: the whole run is warmup and the LR stays below "
            "SOLVER.BASE_LR (near BASE_LR * WARMUP_FACTOR at first); lower SOLVER.WARMUP_ITERS "
            "for a short run."
        )
    amp = solver.AMP
    if amp.ENABLED and amp.DTYPE == "float16" and cfg.MODEL.DEVICE == "cpu":
        warnings.append(
            "SOLVER.AMP.DTYPE='float16' on MODEL.DEVICE='cpu': float16 autocast on CPU is many "
            "times slower than float32; use SOLVER.AMP.DTYPE bfloat16 (or AMP off) on CPU."
        )
    for message in warnings:
        logger.warning(message)
    return warnings
