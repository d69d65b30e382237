"""``DefaultTrainer``: a :class:`SimpleTrainer` built from a config, with the standard hooks.

Research projects subclass it and override the ``build_*`` classmethods (model, data,
evaluator, hooks); everything else (checkpointing, exact resume, evaluation, logging) comes
with it. It is the only place in the engine that reads the config to assemble a run.
"""

import logging
import os
import random
import weakref
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch
from torch import nn

from engine_lib.checkpoint import Checkpointer
from engine_lib.config import CfgNode
from engine_lib.config.epochs import compute_iters_per_epoch, resolve_epochs, scale_period
from engine_lib.data import build_test_loader, build_train_loader, epoch_size, get_training_sampler
from engine_lib.engine import hooks
from engine_lib.engine.ddp import create_ddp_model
from engine_lib.engine.environment import default_writers
from engine_lib.engine.train_loop import GradClip, SimpleTrainer
from engine_lib.evaluation import (
    ClassificationEvaluator,
    DatasetEvaluator,
    inference_on_dataset,
    print_csv_format,
    verify_results,
)
from engine_lib.modeling import Distiller, build_distiller, build_model
from engine_lib.solver import build_lr_scheduler, build_optimizer
from engine_lib.utils import comm
from engine_lib.utils.errors import ConfigError
from engine_lib.utils.events import EventWriter
from engine_lib.utils.logger import setup_logger

__all__ = ["DefaultTrainer"]

logger = logging.getLogger(__name__)


class DefaultTrainer(SimpleTrainer):
    """A trainer with the default training logic, assembled from a config.

    It builds the model, optimizer, LR schedule and data loader from ``cfg``, wraps the
    model in DDP when there are several processes, sets up a checkpointer holding everything
    exact resume needs, and registers the default hooks (see :meth:`build_hooks`).

    Example:
        >>> trainer = DefaultTrainer(cfg)
        >>> trainer.resume_or_load(resume=args.resume)
        >>> results = trainer.train()
    """

    def __init__(self, cfg: CfgNode) -> None:
        """
        Args:
            cfg (CfgNode): the full (frozen) config.
        """
        if not logging.getLogger("engine_lib").handlers:
            setup_logger()
        cfg = self.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        # Lengths and periods given in epochs become iterations as soon as the training set
        # is known, before the schedule and the hooks read them.
        cfg = resolve_epochs(cfg, compute_iters_per_epoch(cfg, _epoch_size(data_loader)))
        #: Iterations per epoch (0 if the training set has no length): see docs/epochs.md.
        self.iters_per_epoch = cfg.SOLVER.ITERS_PER_EPOCH
        if self.iters_per_epoch > 0:
            logger.info(
                "One epoch is %d iterations; training for %d iterations (%.4g epochs)",
                self.iters_per_epoch,
                cfg.SOLVER.MAX_ITER,
                cfg.SOLVER.MAX_ITER / self.iters_per_epoch,
            )
        model = create_ddp_model(
            model,
            # Frozen layers get no gradient, which DDP only tolerates when told so.
            find_unused_parameters=cfg.MODEL.DDP.FIND_UNUSED_PARAMETERS
            or (bool(cfg.MODEL.FREEZE_LAYERS) and cfg.MODEL.FREEZE_ITERS > 0),
            fp16_compression=cfg.MODEL.DDP.FP16_COMPRESSION,
        )
        super().__init__(
            model,
            data_loader,
            optimizer,
            # Losses are copied to the host only when the writers need them.
            gather_metric_period=cfg.SOLVER.LOG_PERIOD,
            grad_accum_steps=cfg.SOLVER.GRAD_ACCUM_STEPS,
            clip_grad=_clip_grad_from_cfg(cfg),
            precision=_precision_from_cfg(cfg),
        )
        logger.info(
            "Training with precision=%s, %d micro-batch(es) per step, gradient clipping: %s, "
            "%d process(es)",
            self.precision,
            self.grad_accum_steps,
            self.clip_grad,
            comm.get_world_size(),
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        # The trainer is a checkpointable: its state holds the iteration, the hooks' states,
        # the grad scaler, the sampler position and the RNG states of every rank.
        self.checkpointer = Checkpointer(
            model,
            cfg.OUTPUT_DIR,
            allow_pickle=cfg.MODEL.WEIGHTS_ALLOW_PICKLE,
            trainer=weakref.proxy(self),
            optimizer=optimizer,
            scheduler=self.scheduler,
        )
        self.start_iter = 0
        self._resumed_from_checkpoint = False
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.last_eval_results: Dict[str, Any] = {}
        self.register_hooks(self.build_hooks())

    # ------------------------------------------------------------------ resume
    def resume_or_load(self, resume: Union[bool, str] = True) -> None:
        """Continue from a checkpoint, or initialise the model from ``MODEL.WEIGHTS``.

        Args:
            resume (bool or str): True: continue from the newest readable checkpoint in
                ``OUTPUT_DIR`` (weights, optimizer, schedule, iteration, sampler position, RNG,
                hook states), or load ``MODEL.WEIGHTS`` when there is none. A path: continue
                from that checkpoint. False: only load ``MODEL.WEIGHTS`` (if set).
        """
        if isinstance(resume, str) and resume not in ("", "auto"):
            self.checkpointer.load(resume, for_resume=True)
        else:
            self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=bool(resume))
        # Set by load_state_dict: a checkpoint of iteration 0 is a resume too, so the
        # iteration alone can't tell.
        self.start_iter = self.iter + 1 if self._resumed_from_checkpoint else 0
        if self._resumed_from_checkpoint:
            logger.info("Resuming training at iteration %d", self.start_iter)

    # ------------------------------------------------------------------ training
    def train(self) -> Dict[str, Any]:
        """Run training from ``start_iter`` to ``cfg.SOLVER.MAX_ITER``.

        Returns:
            dict: the results of the last evaluation (empty on non-main processes or when
            there was no evaluation).
        """
        super().train(self.start_iter, self.max_iter)
        if self.cfg.TEST.EXPECTED_RESULTS and comm.is_main_process():
            verify_results(self.cfg, self.last_eval_results)
        return self.last_eval_results

    def build_hooks(self) -> List[Optional[hooks.HookBase]]:
        """The default hooks, in the order they run at each step.

        Returns:
            list[HookBase]: hooks; ``None`` entries are dropped by ``register_hooks``.
        """
        cfg = self.cfg
        model = _unwrap(self.model)
        ema = hooks.EMA(model, decay=cfg.MODEL.EMA.DECAY) if cfg.MODEL.EMA.ENABLED else None
        freeze = None
        if cfg.MODEL.FREEZE_LAYERS and cfg.MODEL.FREEZE_ITERS > 0:
            freeze = hooks.LayerFreeze(
                _student_of(model), cfg.MODEL.FREEZE_LAYERS, cfg.MODEL.FREEZE_ITERS
            )

        def evaluate() -> Dict[str, Any]:
            if ema is not None and cfg.MODEL.EMA.EVAL_WITH_EMA:
                with ema.apply_to(model):
                    results = self.test(cfg, model)
            else:
                results = self.test(cfg, model)
            self.last_eval_results = results
            return results

        precise_bn = None
        if cfg.TEST.PRECISE_BN.ENABLED and _has_batchnorm(model):
            precise_bn = hooks.PreciseBN(
                cfg.TEST.EVAL_PERIOD,
                model,
                # A fresh loader so that PreciseBN does not advance the training sampler.
                self.build_train_loader(cfg),
                cfg.TEST.PRECISE_BN.NUM_ITER,
            )
        best = None
        if cfg.SOLVER.BEST_CHECKPOINT.ENABLED and cfg.TEST.EVAL_PERIOD > 0:
            best = hooks.BestCheckpointer(
                cfg.TEST.EVAL_PERIOD,
                self.checkpointer,
                cfg.SOLVER.BEST_CHECKPOINT.METRIC,
                mode=cfg.SOLVER.BEST_CHECKPOINT.MODE,
            )
        preemption = None
        if cfg.SOLVER.PREEMPT_SIGNALS:
            preemption = hooks.PreemptionHandler(
                self.checkpointer,
                cfg.SOLVER.PREEMPT_SIGNALS,
                # With several processes the ranks agree when the losses are gathered anyway.
                check_period=cfg.SOLVER.LOG_PERIOD,
                checkpoint_period=cfg.SOLVER.CHECKPOINT_PERIOD,
            )
        return [
            hooks.IterationTimer(),
            # Freezing acts on the step that follows, so it sits before anything that trains.
            freeze,
            hooks.LRScheduler(),
            # EMA weights (and an EMA teacher) are updated right after each optimizer step,
            # before anyone saves or evaluates them.
            ema,
            hooks.EMATeacher(model, cfg.KD.EMA_MOMENTUM)
            if cfg.KD.ENABLED and cfg.KD.EMA_TEACHER
            else None,
            # Precise BN statistics are recomputed before evaluation uses them.
            precise_bn,
            hooks.EvalHook(cfg.TEST.EVAL_PERIOD, evaluate),
            # Writers follow the evaluation, so they see its metrics, and precede every
            # checkpoint: a checkpoint of iteration i is only written once all of iteration i
            # is done and written, so a run killed at any instant and resumed from the newest
            # checkpoint neither skips nor repeats an evaluation or a metrics.json line. Every
            # rank takes part in the metric gather; only the main process writes.
            hooks.PeriodicWriter(self.build_writers(), period=cfg.SOLVER.LOG_PERIOD)
            if comm.is_main_process()
            else None,
            # The best checkpoint needs this evaluation's results, so it follows EvalHook.
            best,
            hooks.PeriodicCheckpointer(
                self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, max_to_keep=cfg.SOLVER.MAX_TO_KEEP
            ),
            # Last: on a preemption signal the iteration is completed as usual before the
            # checkpoint and the exit, so --resume continues exactly.
            preemption,
        ]

    def build_writers(self) -> List[EventWriter]:
        """Writers used by the :class:`PeriodicWriter` hook (see :func:`default_writers`)."""
        # With iters_per_epoch the console line shows "epoch: e/E" next to the iteration.
        return default_writers(self.cfg.OUTPUT_DIR, self.max_iter, self.iters_per_epoch)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        """Trainer state for a checkpoint, including the RNG states of every rank.

        Collective: every process must call it (``Checkpointer.save`` does so on all ranks).

        Returns:
            dict: iteration, hooks, grad scaler, samples consumed, the training sampler's
            state, and ``"rng"``: a list with one entry of python/numpy/torch/cuda RNG states
            per rank.
        """
        state = super().state_dict()
        state["rng"] = comm.all_gather(_capture_rng_state())
        sampler = get_training_sampler(self.data_loader)
        if sampler is not None:
            # Holds the sampler's seed, which matters when SEED < 0 drew a random one.
            state["sampler"] = sampler.state_dict()
            # The sampler only knows where it was last positioned (0 on a fresh run, the
            # resume point after a resume); where the stream is now is the trainer's count.
            # Without this, the same training state was saved differently depending on
            # whether the run had been resumed.
            state["sampler"]["position"] = self.samples_consumed
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: RNG states of this rank, and the sampler position."""
        super().load_state_dict(state)
        self._resumed_from_checkpoint = True
        rng = state.get("rng", [])
        rank, world = comm.get_rank(), comm.get_world_size()
        if len(rng) == world:
            _restore_rng_state(rng[rank])
        else:
            logger.warning(
                "The checkpoint holds RNG states of %d processes but this run has %d; "
                "random streams are not restored, so the run will not repeat exactly.",
                len(rng),
                world,
            )
        sampler = get_training_sampler(self.data_loader)
        if sampler is not None:
            if "sampler" in state:
                sampler.load_state_dict(state["sampler"])
            sampler.set_position(self.samples_consumed)
            self.reset_data_loader(self.data_loader)

    # ------------------------------------------------------------------ builders
    @classmethod
    def build_model(cls, cfg: CfgNode) -> nn.Module:
        """Build the model (``engine_lib.modeling.build_model``); override for your own.

        With ``KD.ENABLED`` the model is the student, wrapped in a
        :class:`~engine_lib.modeling.Distiller` with its teacher (``build_distiller``).
        """
        model = build_model(cfg)
        return build_distiller(cfg, model) if cfg.KD.ENABLED else model

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
        """Build the optimizer (``engine_lib.solver.build_optimizer``)."""
        # With distillation, names are the student's (SOLVER.LR_FACTORS "head", not
        # "student.head"): the same config works with and without KD.
        return build_optimizer(cfg, _student_of(model))

    @classmethod
    def build_lr_scheduler(cls, cfg: CfgNode, optimizer: torch.optim.Optimizer):
        """Build the per-iteration LR schedule (``engine_lib.solver.build_lr_scheduler``)."""
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        """Build the training data loader (``engine_lib.data.build_train_loader``)."""
        return build_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        """Build the loader of one test set (``engine_lib.data.build_test_loader``)."""
        return build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str) -> DatasetEvaluator:
        """Build the evaluator of one test set: classification accuracy by default."""
        return ClassificationEvaluator(
            dataset_name, output_dir=os.path.join(cfg.OUTPUT_DIR, "inference")
        )

    @classmethod
    def test(
        cls,
        cfg: CfgNode,
        model: nn.Module,
        evaluators: Optional[List[DatasetEvaluator]] = None,
    ) -> Dict[str, Any]:
        """Evaluate ``model`` on every data set in ``cfg.DATASETS.TEST``.

        Args:
            cfg (CfgNode): the config.
            model (nn.Module): the model to evaluate.
            evaluators (list[DatasetEvaluator], optional): one per test set; built with
                :meth:`build_evaluator` when None.

        Returns:
            dict: results per data set, or the results themselves when there is one set.
        """
        names = list(cfg.DATASETS.TEST)
        if evaluators is not None and len(evaluators) != len(names):
            raise ConfigError(
                f"Got {len(evaluators)} evaluators for {len(names)} data sets in "
                f"DATASETS.TEST ({names})"
            )
        results: Dict[str, Any] = OrderedDict()
        for i, name in enumerate(names):
            loader = cls.build_test_loader(cfg, name)
            evaluator = evaluators[i] if evaluators is not None else cls.build_evaluator(cfg, name)
            results[name] = inference_on_dataset(model, loader, evaluator)
            if comm.is_main_process() and results[name]:
                logger.info("Evaluation results for %s in csv format:", name)
                print_csv_format(results[name])
        return next(iter(results.values())) if len(results) == 1 else dict(results)

    @staticmethod
    def auto_scale_workers(cfg: CfgNode, num_workers: int) -> CfgNode:
        """Rescale batch size, LR and schedule when the world size differs from the reference.

        With ``SOLVER.REFERENCE_WORLD_SIZE`` R > 0 and W processes, the global batch and the
        LR are multiplied by W / R (linear scaling) and every iteration count (MAX_ITER,
        STEPS, WARMUP_ITERS, CHECKPOINT_PERIOD, EVAL_PERIOD, ITERS_PER_EPOCH) is divided by
        it, so the run sees the same number of epochs. Values given in epochs (``MAX_EPOCH``,
        ``"5ep"``) need no rescaling: an epoch has fewer iterations with a larger batch.

        Args:
            cfg (CfgNode): the config (not modified).
            num_workers (int): the world size.

        Returns:
            CfgNode: ``cfg`` itself when nothing changes, else a rescaled frozen copy.
        """
        old_world = cfg.SOLVER.REFERENCE_WORLD_SIZE
        if old_world == 0 or old_world == num_workers:
            return cfg
        scale = num_workers / old_world
        batch = int(round(cfg.SOLVER.IMS_PER_BATCH * scale))
        if abs(batch - cfg.SOLVER.IMS_PER_BATCH * scale) > 1e-6:
            raise ConfigError(
                f"Cannot rescale SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} from "
                f"SOLVER.REFERENCE_WORLD_SIZE={old_world} to {num_workers} processes"
            )
        with cfg.edited_copy() as scaled:
            solver = scaled.SOLVER
            solver.IMS_PER_BATCH = batch
            solver.BASE_LR *= scale
            # Non-positive values mean "not set" and stay so.
            if solver.MAX_ITER > 0:
                solver.MAX_ITER = int(round(solver.MAX_ITER / scale))
            if solver.ITERS_PER_EPOCH > 0:
                solver.ITERS_PER_EPOCH = max(1, int(round(solver.ITERS_PER_EPOCH / scale)))
            solver.WARMUP_ITERS = scale_period(solver.WARMUP_ITERS, scale)
            solver.STEPS = tuple(scale_period(solver.STEPS, scale))
            solver.CHECKPOINT_PERIOD = scale_period(solver.CHECKPOINT_PERIOD, scale)
            scaled.TEST.EVAL_PERIOD = scale_period(scaled.TEST.EVAL_PERIOD, scale)
            solver.REFERENCE_WORLD_SIZE = num_workers
        logger.info(
            "Auto-scaling the config to %d processes: IMS_PER_BATCH=%d, BASE_LR=%g, MAX_ITER=%d",
            num_workers,
            batch,
            solver.BASE_LR,
            solver.MAX_ITER,
        )
        return scaled


def _epoch_size(loader: Any) -> Optional[int]:
    try:
        return epoch_size(loader)
    except TypeError:
        # An endless loader without a length: epochs are then unknown (see resolve_epochs).
        return None


def _student_of(model: nn.Module) -> nn.Module:
    """The student of a :class:`Distiller` (its only trainable part), else the model."""
    return model.student if isinstance(model, Distiller) else model


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _precision_from_cfg(cfg: CfgNode) -> str:
    if not cfg.SOLVER.AMP.ENABLED:
        return "fp32"
    dtypes = {"float16": "fp16", "bfloat16": "bf16"}
    if cfg.SOLVER.AMP.DTYPE not in dtypes:
        raise ConfigError(
            f"SOLVER.AMP.DTYPE must be one of {sorted(dtypes)}, got {cfg.SOLVER.AMP.DTYPE!r}"
        )
    return dtypes[cfg.SOLVER.AMP.DTYPE]


def _clip_grad_from_cfg(cfg: CfgNode) -> Optional[GradClip]:
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not clip.ENABLED:
        return None
    return GradClip(clip_type=clip.CLIP_TYPE, clip_value=clip.CLIP_VALUE, norm_type=clip.NORM_TYPE)


def _capture_rng_state() -> Dict[str, Any]:
    """This process's RNG states, as data ``torch.load(weights_only=True)`` accepts."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state: Dict[str, Any] = {
        "python": [version, list(mt_state), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng_state(state: Dict[str, Any]) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
