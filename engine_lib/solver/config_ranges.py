"""The value ranges of the ``SOLVER`` keys the solver reads, checked when a config is merged.

A value out of range (``BASE_LR -0.1``, ``GRAD_ACCUM_STEPS 0``, a NaN from ``.nan`` in YAML)
stops at merge time with one line naming the key, the value and the range, before anything
is written; not hours later as a ``ZeroDivisionError`` or a diverged run. The period keys
(``CHECKPOINT_PERIOD``, ``WARMUP_ITERS``, ``STEPS``) are bounded in
:mod:`engine_lib.config.epochs`, which owns their ``"Nep"`` form.
"""

import logging

from engine_lib.config.validators import register_range

__all__ = ["SOLVER_RANGES"]

logger = logging.getLogger(__name__)

#: ``key: (low, high, low_open, meaning)``; None: no bound.
SOLVER_RANGES = {
    # 0 is allowed: a frozen-weights run (a check of the evaluation or of a hook) is legitimate.
    "SOLVER.BASE_LR": (0.0, None, False, "the base learning rate"),
    "SOLVER.BASE_LR_END": (0.0, None, False, "the learning rate at the end"),
    "SOLVER.MOMENTUM": (0.0, 1.0, False, "the SGD momentum"),
    "SOLVER.WEIGHT_DECAY": (0.0, None, False, "the weight decay"),
    "SOLVER.WEIGHT_DECAY_NORM": (0.0, None, False, "the weight decay of norm layers"),
    "SOLVER.BIAS_LR_FACTOR": (0.0, None, False, "the learning rate factor of biases"),
    "SOLVER.GAMMA": (0.0, None, True, "the LR decay factor"),
    "SOLVER.WARMUP_FACTOR": (0.0, 1.0, False, "the LR factor at the start of warmup"),
    "SOLVER.MAX_EPOCH": (0, None, False, "0: the length is SOLVER.MAX_ITER"),
    "SOLVER.ITERS_PER_EPOCH": (0, None, False, "0: derived from the data set"),
    "SOLVER.DELAY_EPOCHS": (0, None, False, "epochs before the decay starts"),
    "SOLVER.NUM_DECAYS": (1, None, False, "the number of LR decays"),
    "SOLVER.IMS_PER_BATCH": (1, None, False, "images per step, over all processes"),
    "SOLVER.MAX_TO_KEEP": (0, None, False, "0 keeps every periodic checkpoint"),
    "SOLVER.GRAD_ACCUM_STEPS": (1, None, False, "1: no accumulation"),
    "SOLVER.REFERENCE_WORLD_SIZE": (0, None, False, "0: no scaling"),
    "SOLVER.LOG_PERIOD": (1, None, False, "iterations between metric writes"),
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": (0.0, None, True, "the gradient clipping threshold"),
}

for _key, (_low, _high, _low_open, _meaning) in SOLVER_RANGES.items():
    register_range(_key, _low, _high, low_open=_low_open, meaning=_meaning)
# An infinity norm is a valid gradient norm.
register_range(
    "SOLVER.CLIP_GRADIENTS.NORM_TYPE", 0.0, None, low_open=True, allow_inf=True, meaning="a p-norm"
)
