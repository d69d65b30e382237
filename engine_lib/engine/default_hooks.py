"""The default hooks of ``DefaultTrainer``: one small builder per optional hook, and the order.

:class:`DefaultHookBuilders` is the part of :class:`~engine_lib.engine.DefaultTrainer` that
chooses its hooks. Each optional hook has its own ``build_*_hook`` method, which reads the
trainer's resolved ``cfg`` and returns the hook or None (turned off); :meth:`build_hooks`
lists them in the order they run. A project changes one hook by overriding its builder, or
the whole list by overriding ``build_hooks``.
"""

import contextlib
import logging
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from torch import nn

from engine_lib.config import CfgNode
from engine_lib.utils import comm
from engine_lib.utils.errors import ConfigError
from engine_lib.utils.events import EventWriter

from . import hooks
from .environment import default_writers
from .writers import WRITER_REGISTRY, WriterState, tracker_writers
from .writers.registry import TRACKER_BUILDERS as _TRACKER_BUILDERS

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from engine_lib.checkpoint import Checkpointer
    from engine_lib.evaluation import DatasetEvaluator

__all__ = ["DefaultHookBuilders"]

logger = logging.getLogger(__name__)


class DefaultHookBuilders:
    """The hook builders of :class:`~engine_lib.engine.DefaultTrainer` (a mixin).

    They read what the trainer sets up before it calls :meth:`build_hooks`: ``cfg`` (the
    resolved config), ``model``, ``checkpointer``, ``max_iter``, ``iters_per_epoch`` and the
    ``build_train_loader`` / ``test`` classmethods.
    """

    # Only declared here (a definition would shadow the trainer's: this class comes first in
    # DefaultTrainer's method resolution order).
    cfg: CfgNode
    model: nn.Module
    checkpointer: "Checkpointer"
    max_iter: int
    iters_per_epoch: int
    last_eval_results: Dict[str, Any]
    if TYPE_CHECKING:

        @classmethod
        def build_train_loader(cls, cfg: CfgNode) -> "DataLoader": ...

        @classmethod
        def test(
            cls,
            cfg: CfgNode,
            model: nn.Module,
            evaluators: Optional[List["DatasetEvaluator"]] = None,
        ) -> Dict[str, Any]: ...

    def build_hooks(self) -> List[Optional[hooks.HookBase]]:
        """The default hooks, in the order they run at each step.

        Each optional hook comes from its own ``build_*_hook`` method (None when its config
        turns it off); override one of them to change one hook, or this method to change
        the list.

        Returns:
            list[HookBase]: hooks; ``None`` entries are dropped by ``register_hooks``.
        """
        ema = self.build_ema_hook()
        return [
            hooks.IterationTimer(),
            # Freezing acts on the step that follows, so it sits before anything that trains.
            self.build_layer_freeze_hook(),
            hooks.LRScheduler(),
            # EMA weights are updated right after each optimizer step, before anyone saves or
            # evaluates them.
            ema,
            # Precise BN statistics are recomputed before evaluation uses them.
            self.build_precise_bn_hook(),
            self.build_eval_hook(ema),
            # Hooks named in cfg.HOOKS go after the evaluation and before the writers, so
            # the writers see what they put into the storage.
            *hooks.build_hooks_from_config(self.cfg),
            # Writers follow the evaluation, so they see its metrics, and precede every
            # checkpoint: a checkpoint of iteration i is only written once all of iteration i
            # is done and written, so a run killed at any instant and resumed from the newest
            # checkpoint neither skips nor repeats an evaluation or a metrics.json line.
            self.build_writer_hook(),
            # The trackers' run ids, in the trainer's checkpoints (every rank, no loop work).
            self.build_writer_state_hook(),
            # The best checkpoint needs this evaluation's results, so it follows EvalHook.
            self.build_best_checkpointer_hook(),
            # Decides on this evaluation's results after the best model is saved, and before
            # the periodic checkpoint of the iteration, which then records the decision.
            self.build_early_stop_hook(),
            hooks.PeriodicCheckpointer(
                self.checkpointer,
                self.cfg.SOLVER.CHECKPOINT_PERIOD,
                max_to_keep=self.cfg.SOLVER.MAX_TO_KEEP,
            ),
            # Last: on a preemption signal the iteration is completed as usual before the
            # checkpoint and the exit, so --resume continues exactly.
            self.build_preemption_hook(),
        ]

    # ------------------------------------------------------------------ hook builders
    def build_layer_freeze_hook(
        self, model: Optional[nn.Module] = None
    ) -> Optional[hooks.HookBase]:
        """``LayerFreeze`` of ``MODEL.FREEZE_LAYERS`` for ``MODEL.FREEZE_ITERS`` iterations.

        Args:
            model (nn.Module, optional): the model whose module names ``FREEZE_LAYERS`` gives;
                default: the trained model (without DDP).
        """
        cfg = self.cfg.MODEL
        if not (cfg.FREEZE_LAYERS and cfg.FREEZE_ITERS > 0):
            return None
        model = _unwrap(self.model) if model is None else model
        return hooks.LayerFreeze(model, cfg.FREEZE_LAYERS, cfg.FREEZE_ITERS)

    def build_ema_hook(self) -> Optional[hooks.EMA]:
        """``EMA`` of the model's weights with ``MODEL.EMA.ENABLED``."""
        if not self.cfg.MODEL.EMA.ENABLED:
            return None
        return hooks.EMA(_unwrap(self.model), decay=self.cfg.MODEL.EMA.DECAY)

    def build_precise_bn_hook(self) -> Optional[hooks.HookBase]:
        """``PreciseBN`` with ``TEST.PRECISE_BN.ENABLED``, for a model with BatchNorm."""
        cfg, model = self.cfg, _unwrap(self.model)
        if not (cfg.TEST.PRECISE_BN.ENABLED and _has_batchnorm(model)):
            return None
        return hooks.PreciseBN(
            cfg.TEST.EVAL_PERIOD,
            model,
            # A fresh loader so that PreciseBN does not advance the training sampler.
            self.build_train_loader(cfg),
            cfg.TEST.PRECISE_BN.NUM_ITER,
        )

    def build_eval_hook(self, ema: Optional[hooks.EMA] = None) -> hooks.HookBase:
        """``EvalHook`` running :meth:`test` every ``TEST.EVAL_PERIOD`` and at the end.

        Args:
            ema (EMA, optional): with ``MODEL.EMA.EVAL_WITH_EMA``, evaluation uses its
                weights.
        """
        cfg, model = self.cfg, _unwrap(self.model)
        eval_ema = ema if cfg.MODEL.EMA.EVAL_WITH_EMA else None

        def evaluate() -> Dict[str, Any]:
            with eval_ema.apply_to(model) if eval_ema is not None else contextlib.nullcontext():
                self.last_eval_results = self.test(cfg, model)
            return self.last_eval_results

        return hooks.EvalHook(cfg.TEST.EVAL_PERIOD, evaluate)

    def build_writer_hook(self) -> Optional[hooks.HookBase]:
        """``PeriodicWriter`` of :meth:`build_writers` every ``SOLVER.LOG_PERIOD``.

        Every rank takes part in the metric gather; only the main process writes.
        """
        if not comm.is_main_process():
            return None
        writers = self.build_writers()
        self._tracker_writers = tracker_writers(writers)
        # Pending metrics (an evaluation between two periodic writes) are written before
        # each checkpoint: a run resumed from it would never write them.
        return hooks.PeriodicWriter(
            writers, period=self.cfg.SOLVER.LOG_PERIOD, write_before_save=True
        )

    def build_writer_state_hook(self) -> Optional[hooks.HookBase]:
        """``WriterState``, with experiment trackers in ``WRITERS``: their run ids are then
        part of the trainer's state, so that ``--resume`` continues the same tracker run.

        Registered on every rank (holding no writer off the main process); call it after
        :meth:`build_writer_hook`.
        """
        if not any(
            WRITER_REGISTRY.get_for_key("WRITERS", n) in _TRACKER_BUILDERS for n in self.cfg.WRITERS
        ):
            return None
        return WriterState(getattr(self, "_tracker_writers", []))

    def build_best_checkpointer_hook(self) -> Optional[hooks.HookBase]:
        """``BestCheckpointer`` with ``SOLVER.BEST_CHECKPOINT.ENABLED`` and evaluations."""
        cfg = self.cfg
        if not (cfg.SOLVER.BEST_CHECKPOINT.ENABLED and cfg.TEST.EVAL_PERIOD > 0):
            return None
        return hooks.BestCheckpointer(
            cfg.TEST.EVAL_PERIOD,
            self.checkpointer,
            cfg.SOLVER.BEST_CHECKPOINT.METRIC,
            mode=cfg.SOLVER.BEST_CHECKPOINT.MODE,
        )

    def build_early_stop_hook(self) -> Optional[hooks.HookBase]:
        """``EarlyStopping`` with ``SOLVER.EARLY_STOP.ENABLED`` (needs ``TEST.EVAL_PERIOD``)."""
        cfg = self.cfg
        stop = cfg.SOLVER.EARLY_STOP
        if not stop.ENABLED:
            return None
        if cfg.TEST.EVAL_PERIOD <= 0:
            raise ConfigError(
                "SOLVER.EARLY_STOP.ENABLED needs evaluations during training: set "
                f"TEST.EVAL_PERIOD > 0 (got {cfg.TEST.EVAL_PERIOD})."
            )
        if stop.MODE not in ("max", "min") or stop.PATIENCE < 1:
            raise ConfigError(
                "SOLVER.EARLY_STOP: MODE must be 'max' or 'min' and PATIENCE >= 1, got "
                f"{stop.MODE!r} and {stop.PATIENCE}."
            )
        best = cfg.SOLVER.BEST_CHECKPOINT
        return hooks.EarlyStopping(
            cfg.TEST.EVAL_PERIOD,
            self.checkpointer,
            stop.METRIC,
            mode=stop.MODE,
            patience=stop.PATIENCE,
            min_delta=stop.MIN_DELTA,
            # BestCheckpointer already saves model_best for the same metric.
            save_best=not (best.ENABLED and best.METRIC == stop.METRIC and best.MODE == stop.MODE),
        )

    def build_preemption_hook(self) -> Optional[hooks.HookBase]:
        """``PreemptionHandler`` for the signals of ``SOLVER.PREEMPT_SIGNALS``."""
        cfg = self.cfg.SOLVER
        if not cfg.PREEMPT_SIGNALS:
            return None
        return hooks.PreemptionHandler(
            self.checkpointer,
            cfg.PREEMPT_SIGNALS,
            # With several processes the ranks agree when the losses are gathered anyway.
            check_period=cfg.LOG_PERIOD,
            checkpoint_period=cfg.CHECKPOINT_PERIOD,
        )

    def build_writers(self) -> List[EventWriter]:
        """Writers used by the :class:`PeriodicWriter` hook (see :func:`default_writers`)."""
        # With iters_per_epoch the console line shows "epoch: e/E" next to the iteration.
        return default_writers(
            self.cfg.OUTPUT_DIR, self.max_iter, self.iters_per_epoch, cfg=self.cfg
        )


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
