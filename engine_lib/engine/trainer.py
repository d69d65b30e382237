"""``DefaultTrainer``: a :class:`SimpleTrainer` built from a config, with the standard hooks.

Research projects subclass it and override the ``build_*`` classmethods (model, data,
evaluator) or hook builders; everything else (checkpointing, exact resume, evaluation,
logging) comes with it. It assembles a run: it resolves the config once
(:func:`~engine_lib.config.resolve_config`), builds the parts from it and registers the hooks
of :mod:`engine_lib.engine.default_hooks`. RNG states come from
:mod:`~engine_lib.engine.reproducibility`, the world-size arithmetic from
:mod:`engine_lib.config.scaling`, the resume rules from :mod:`engine_lib.checkpoint.resume`.
"""

import logging
import weakref
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader

from engine_lib.checkpoint import Checkpointer
from engine_lib.checkpoint.resume import ResumeArg
from engine_lib.checkpoint.sharded import checkpoint_format
from engine_lib.checkpoint.state import FullStateModel, FullStateOptimizer, is_sharded
from engine_lib.config import CfgNode, resolve_config
from engine_lib.config.scaling import scale_to_world_size
from engine_lib.data import build_test_loader, build_train_loader, epoch_size, get_training_sampler
from engine_lib.engine.compile import maybe_compile
from engine_lib.engine.default_hooks import DefaultHookBuilders
from engine_lib.engine.environment import update_dumped_config
from engine_lib.engine.parallel import parallelize_model, unwrap_model
from engine_lib.engine.reproducibility import capture_rng_state, restore_rng_state
from engine_lib.engine.train_loop import GradClip, SimpleTrainer
from engine_lib.evaluation import (
    DatasetEvaluator,
    build_evaluator,
    check_results,
    inference_on_dataset,
    print_csv_format,
)
from engine_lib.modeling import build_model
from engine_lib.solver import build_lr_scheduler, build_optimizer
from engine_lib.utils import comm
from engine_lib.utils.errors import ConfigError
from engine_lib.utils.logger import setup_logger
from engine_lib.utils.remote_weights import allow_remote_weights

__all__ = ["DefaultTrainer"]

logger = logging.getLogger(__name__)


class DefaultTrainer(DefaultHookBuilders, SimpleTrainer):
    """A trainer with the default training logic, assembled from a config.

    It resolves the config (:func:`~engine_lib.config.resolve_config`: seed, world size,
    epochs), builds the model, optimizer, LR schedule and data loader from it, wraps the model
    in DDP when there are several processes, sets up a checkpointer holding everything exact
    resume needs, and registers the default hooks (see :meth:`build_hooks`). The resolved
    config is ``self.cfg``, and it is what ``config.yaml`` holds.

    Example:
        >>> trainer = DefaultTrainer(cfg)
        >>> trainer.resume_or_load(resume=args.resume)
        >>> results = trainer.train()
    """

    def __init__(self, cfg: CfgNode) -> None:
        """
        Args:
            cfg (CfgNode): the merged (frozen) config.
        """
        # A little over 60 lines: the parts are built in one commented order (config, model,
        # optimizer, loop, schedule, checkpointer, hooks), each step a call, read top-down.
        if not logging.getLogger("engine_lib").handlers:
            setup_logger()
        # Weights at http(s) URLs (MODEL.WEIGHTS, pretrained backbones) only when opted in.
        allow_remote_weights(cfg.MODEL.ALLOW_REMOTE_WEIGHTS)
        # The one resolved config (drawn seed, world size, epochs in iterations): every part
        # below is built from it, and it is the config.yaml of the run.
        cfg, data_loader = _resolve_with_loader(cfg, self.build_train_loader)
        #: Iterations per epoch (0 if the training set has no length): see docs/epochs.md.
        self.iters_per_epoch = cfg.SOLVER.ITERS_PER_EPOCH
        # Compile the model's parts in place (MODEL.COMPILE; checkpoint keys unchanged), then
        # wrap (PARALLEL.*: DDP, or FSDP sharding in place), then build the optimizer, so that
        # under FSDP it holds the sharded parameters; on the unwrapped module, whose
        # parameter names (LR factors, weight-decay rules) are the model's own.
        model = self.parallelize_model(cfg, maybe_compile(self.build_model(cfg), cfg))
        optimizer = self.build_optimizer(cfg, unwrap_model(model))
        super().__init__(
            model,
            data_loader,
            optimizer,
            # Losses are copied to the host only when the writers need them.
            gather_metric_period=cfg.SOLVER.LOG_PERIOD,
            grad_accum_steps=cfg.SOLVER.GRAD_ACCUM_STEPS,
            clip_grad=_clip_grad_from_cfg(cfg),
            precision=_precision_from_cfg(cfg),
            # The next batch is copied to the GPU on a side stream while this step runs.
            prefetch_device=_prefetch_device(cfg),
        )
        logger.info(
            "Training with precision=%s, %d micro-batch(es) per step, gradient clipping: %s, "
            "%d process(es), strategy %s",
            self.precision,
            self.grad_accum_steps,
            self.clip_grad,
            comm.get_world_size(),
            cfg.PARALLEL.STRATEGY,
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        # The trainer is a checkpointable: its state holds the iteration, the hooks' states
        # (the LR schedule's is the LRScheduler hook's), the grad scaler, the sampler
        # position and the RNG states of every rank.
        # DCP checkpoints (engine_lib.checkpoint.sharded) take the wrapped model as it is, sharded
        # or not. A single-file checkpoint of a sharded model holds its full (gathered) state:
        # see engine_lib.checkpoint.state.
        fmt = checkpoint_format(cfg)
        full_state = is_sharded(model) and fmt != "dcp"
        self.checkpointer = Checkpointer(
            FullStateModel(model) if full_state else model,
            cfg.OUTPUT_DIR,
            allow_pickle=cfg.MODEL.WEIGHTS_ALLOW_PICKLE,
            checkpoint_format=fmt,
            async_save=cfg.SOLVER.CHECKPOINT_ASYNC,
            trainer=weakref.proxy(self),
            optimizer=FullStateOptimizer(model, optimizer) if full_state else optimizer,
        )
        self.start_iter = 0
        self._resumed_from_checkpoint = False
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.last_eval_results: Dict[str, Any] = {}
        self.register_hooks(self.build_hooks())
        # After a default_setup that wrote the merged config: now the resolved one.
        update_dumped_config(cfg)

    # ------------------------------------------------------------------ resume
    def resume_or_load(self, resume: ResumeArg = True) -> None:
        """Continue from a checkpoint, or initialise the model from ``MODEL.WEIGHTS``.

        Args:
            resume (bool or str): True or "auto": continue from the newest readable
                checkpoint in ``OUTPUT_DIR`` (weights, optimizer, schedule, iteration,
                sampler position, RNG, hook states), or load ``MODEL.WEIGHTS`` when there is
                none. A path: continue from that checkpoint. False or "": only load
                ``MODEL.WEIGHTS`` (if set). See :mod:`engine_lib.checkpoint.resume`.

        Raises:
            ConfigError: the checkpoint is past ``SOLVER.MAX_ITER`` (naming both numbers).
        """
        extra = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        # Set by load_state_dict: a checkpoint of iteration 0 is a resume too, so the
        # iteration alone can't tell.
        self.start_iter = self.iter + 1 if self._resumed_from_checkpoint else 0
        self._check_resume_length(extra if resume else {})
        if self._resumed_from_checkpoint:
            logger.info("Resuming training at iteration %d", self.start_iter)

    def _check_resume_length(self, extra: Dict[str, Any]) -> None:
        """Refuse a resume past ``SOLVER.MAX_ITER`` (before anything is written).

        Training on would save a finished run's later iterations under smaller numbers (its
        ``model_final.pth`` of 100 iterations relabelled as iteration 59).
        """
        trained = self.start_iter
        if not self._resumed_from_checkpoint and isinstance(extra.get("iteration"), int):
            trained = extra["iteration"] + 1  # a checkpoint without trainer state
        if trained > self.max_iter:
            raise ConfigError(
                f"Cannot resume: the checkpoint in {self.cfg.OUTPUT_DIR!r} has trained "
                f"{trained} iterations, more than SOLVER.MAX_ITER={self.max_iter}; resume "
                f"with SOLVER.MAX_ITER >= {trained}, or start a new run in another OUTPUT_DIR"
            )

    # ------------------------------------------------------------------ training
    # No (start_iter, max_iter) as in TrainerBase: detectron2's API, the config sets both.
    def train(self) -> Dict[str, Any]:  # type: ignore[override]
        """Run training from ``start_iter`` to ``cfg.SOLVER.MAX_ITER``.

        Returns:
            dict: the results of the last evaluation (empty on non-main processes or when
            there was no evaluation).

        Raises:
            ResultsVerificationError: on the main process, the last evaluation missed a value
                of ``TEST.EXPECTED_RESULTS`` (after the final checkpoint is saved).
        """
        super().train(self.start_iter, self.max_iter)
        if self.cfg.TEST.EXPECTED_RESULTS and comm.is_main_process():
            check_results(self.cfg, self.last_eval_results)
        return self.last_eval_results

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
        state["rng"] = comm.all_gather(capture_rng_state())
        sampler = get_training_sampler(self.data_loader)
        if sampler is not None:
            # Holds the sampler's seed, which matters when SEED < 0 drew a random one.
            state["sampler"] = sampler.state_dict()
            # The sampler only knows where it was last positioned (0 on a fresh run, the
            # resume point after a resume); where the stream is now is the trainer's count.
            state["sampler"]["position"] = self.samples_consumed
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: RNG states of this rank, and the sampler position."""
        super().load_state_dict(state)
        self._resumed_from_checkpoint = True
        rng = state.get("rng", [])
        rank, world = comm.get_rank(), comm.get_world_size()
        if len(rng) == world:
            restore_rng_state(rng[rank])
        else:
            logger.warning(
                "Resuming a checkpoint of %d processes on %d: weights, optimizer state, LR "
                "schedule and the global sample stream continue, but per-rank RNG streams "
                "(augmentation, dropout) and the order of gradient reductions differ, so the "
                "run will not repeat an uninterrupted one bit for bit.",
                len(rng),
                world,
            )
        sampler = get_training_sampler(self.data_loader)
        if sampler is not None:
            if "sampler" in state:
                sampler.load_state_dict(state["sampler"])
                # The sampler converts a position saved at another world size (samples per
                # rank) through the global position into this run's samples per rank.
                self.samples_consumed = sampler.position
            sampler.set_position(self.samples_consumed)
            self.reset_data_loader(self.data_loader)

    # ------------------------------------------------------------------ builders
    @classmethod
    def build_model(cls, cfg: CfgNode) -> nn.Module:
        """Build the model (``engine_lib.modeling.build_model``); override for your own."""
        return build_model(cfg)

    @classmethod
    def parallelize_model(cls, cfg: CfgNode, model: nn.Module) -> nn.Module:
        """Apply ``PARALLEL.*`` (DDP, FSDP or HSDP, activation checkpointing) to the model.

        See :func:`engine_lib.engine.parallel.parallelize_model`; the model is left as it
        is in one process.
        """
        return parallelize_model(cfg, model)

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
        """Build the optimizer (``engine_lib.solver.build_optimizer``) of the model, after
        :meth:`parallelize_model` (never given a DDP wrapper)."""
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(
        cls, cfg: CfgNode, optimizer: torch.optim.Optimizer
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """Build the per-iteration LR schedule (``engine_lib.solver.build_lr_scheduler``)."""
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> DataLoader:
        """Build the training data loader (``engine_lib.data.build_train_loader``)."""
        return build_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str) -> DataLoader:
        """Build the loader of one test set (``engine_lib.data.build_test_loader``)."""
        return build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str) -> DatasetEvaluator:
        """Build the evaluator of one test set: the one ``TEST.EVALUATOR`` names in
        ``EVALUATOR_REGISTRY`` (classification accuracy by default)."""
        return build_evaluator(cfg, dataset_name)

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
        LR are multiplied by W / R and every iteration count is divided by it; see
        :func:`engine_lib.config.scaling.scale_to_world_size`, which does the work (the
        trainer's :func:`~engine_lib.config.resolve_config` applies it).

        Args:
            cfg (CfgNode): the config (not modified).
            num_workers (int): the world size.

        Returns:
            CfgNode: ``cfg`` itself when nothing changes, else a rescaled frozen copy.
        """
        return scale_to_world_size(cfg, num_workers)


def _resolve_with_loader(
    cfg: CfgNode, build_loader: Callable[[CfgNode], Any]
) -> Tuple[CfgNode, Any]:
    """``resolve_config``, and the training loader it builds to learn the epoch size.

    The loader is built from the config as far as it is resolved when the epoch size is
    needed (seed drawn, batch rescaled): everything a loader reads is final by then.
    """
    built: List[Any] = []

    def epoch_size_of(resolved: CfgNode) -> Optional[int]:
        built.append(build_loader(resolved))
        return _epoch_size(built[0])

    resolved = resolve_config(cfg, world_size=comm.get_world_size(), epoch_size=epoch_size_of)
    per_epoch, max_iter = resolved.SOLVER.ITERS_PER_EPOCH, resolved.SOLVER.MAX_ITER
    if per_epoch > 0:
        logger.info(
            "One epoch is %d iterations; training for %d iterations (%.4g epochs)",
            per_epoch,
            max_iter,
            max_iter / per_epoch,
        )
    return resolved, built[0]


def _epoch_size(loader: Any) -> Optional[int]:
    try:
        return epoch_size(loader)
    except TypeError:
        # An endless loader without a length: epochs are then unknown (see resolve_epochs).
        return None


def _precision_from_cfg(cfg: CfgNode) -> str:
    if not cfg.SOLVER.AMP.ENABLED:
        return "fp32"
    dtypes = {"float16": "fp16", "bfloat16": "bf16"}
    if cfg.SOLVER.AMP.DTYPE not in dtypes:
        raise ConfigError(
            f"SOLVER.AMP.DTYPE must be one of {sorted(dtypes)}, got {cfg.SOLVER.AMP.DTYPE!r}"
        )
    return dtypes[cfg.SOLVER.AMP.DTYPE]


def _prefetch_device(cfg: CfgNode) -> Optional[str]:
    """The device batches are prefetched to (``DATALOADER.PREFETCH_TO_DEVICE``, CUDA only)."""
    device = str(cfg.MODEL.DEVICE)
    return device if cfg.DATALOADER.PREFETCH_TO_DEVICE and device.startswith("cuda") else None


def _clip_grad_from_cfg(cfg: CfgNode) -> Optional[GradClip]:
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not clip.ENABLED:
        return None
    return GradClip(clip_type=clip.CLIP_TYPE, clip_value=clip.CLIP_VALUE, norm_type=clip.NORM_TYPE)
