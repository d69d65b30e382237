"""The training loop: hooks, the hook-running trainer base class and the one-step trainers.

:class:`TrainerBase` only runs the loop and the hooks. :class:`SimpleTrainer` adds the step
(data, forward, backward, optimizer) and is the one place that knows about precision,
gradient accumulation and clipping. Everything else a training run does (timing, LR steps,
checkpoints, evaluation, logging) is a :class:`HookBase` in ``engine_lib.engine.hooks``.

Losses stay on the device: :class:`SimpleTrainer` copies them to the host only at a metric
flush (every ``gather_metric_period`` iterations, at the last iteration, and whenever a hook
calls :meth:`TrainerBase.flush_metrics`), which is also when a non-finite loss is reported.

The package has one module per concept: ``hook_base`` (:class:`HookBase`), ``trainer_base``
(:class:`TrainerBase`), ``simple_trainer`` (:class:`SimpleTrainer`, :class:`AMPTrainer`),
``grad_clip`` (:class:`GradClip`) and ``device_metrics`` (the losses buffered between gathers).
"""

from .grad_clip import GradClip
from .hook_base import HookBase
from .simple_trainer import AMPTrainer, SimpleTrainer
from .trainer_base import TrainerBase

__all__ = ["AMPTrainer", "GradClip", "HookBase", "SimpleTrainer", "TrainerBase"]
