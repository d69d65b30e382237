"""The hooks of the training loop, one concept per module.

Each hook is a :class:`engine_lib.engine.train_loop.HookBase`; see ``DefaultTrainer.build_hooks``
for the standard set and the order they run in.
"""

from ..train_loop import HookBase
from .best_checkpointer import BestCheckpointer
from .callback import CallbackHook
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
from .profiler import TorchProfiler

__all__ = [
    "BestCheckpointer",
    "CallbackHook",
    "EMA",
    "EMATeacher",
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
]
