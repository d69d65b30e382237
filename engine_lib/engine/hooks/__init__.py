"""The hooks of the training loop, one concept per module.

Each hook is a :class:`engine_lib.engine.train_loop.HookBase`; see ``DefaultTrainer.build_hooks``
for the standard set and the order they run in. ``HOOK_REGISTRY`` and
:func:`build_hooks_from_config` add hooks named in ``cfg.HOOKS``.
"""

from ..train_loop import HookBase
from .best_checkpointer import BestCheckpointer
from .callback import CallbackHook
from .early_stop import EarlyStopping
from .ema import EMA
from .ema_teacher import EMATeacher
from .eval_hook import EvalHook
from .iteration_timer import IterationTimer
from .layer_freeze import LayerFreeze
from .lr_scheduler import LRScheduler
from .memory_stats import TorchMemoryStats
from .periodic_checkpointer import PeriodicCheckpointer
from .periodic_writer import PeriodicWriter
from .precise_bn import PreciseBN
from .preemption import PreemptionHandler
from .profiler import AutogradProfiler, TorchProfiler
from .registry import HOOK_REGISTRY, build_hooks_from_config

__all__ = [
    "HOOK_REGISTRY",
    "AutogradProfiler",
    "BestCheckpointer",
    "CallbackHook",
    "EMA",
    "EMATeacher",
    "EarlyStopping",
    "EvalHook",
    "HookBase",
    "IterationTimer",
    "LRScheduler",
    "LayerFreeze",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "PreciseBN",
    "PreemptionHandler",
    "TorchMemoryStats",
    "TorchProfiler",
    "build_hooks_from_config",
]
