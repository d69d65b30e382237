"""The body of a ``train_net.py``: what every training entry point does once it has a config.

``tools/train_net.py`` and each project's ``train_net.py`` differ only in how they build the
config (project keys, data set registration) and in their ``DefaultTrainer`` subclass; the
rest — deferred output writes, evaluation-only runs, resuming, the final table, launching one
process per worker — lives here once.
"""

import argparse
import logging
import os
from datetime import timedelta
from typing import Any, Callable, Dict, Optional, Sequence, Type

from engine_lib.checkpoint import Checkpointer
from engine_lib.config import CfgNode
from engine_lib.data import DatasetCatalog
from engine_lib.evaluation import check_results, flatten_results_dict
from engine_lib.utils import comm
from engine_lib.utils.errors import UnknownNameError
from engine_lib.utils.logger import create_small_table

from .environment import commit_output_dir, config_file_name, default_setup
from .launch import DEFAULT_TIMEOUT, launch
from .output_dir import check_fresh_run, release_output_dir
from .reproducibility import cuda_in_use, set_cublas_workspace_config
from .trainer import DefaultTrainer

__all__ = [
    "check_dataset_names",
    "elastic_restart_count",
    "launch_from_args",
    "train_or_evaluate",
]

logger = logging.getLogger(__name__)


def check_dataset_names(cfg: CfgNode) -> None:
    """Fail now, not after training, on a misspelled data set in DATASETS.TRAIN or TEST.

    Raises:
        UnknownNameError: naming the key, the name and the closest registered names.
    """
    for key in ("TRAIN", "TEST"):
        for name in cfg.DATASETS[key]:
            if name in DatasetCatalog:
                continue
            try:
                DatasetCatalog.get(name)  # raises, naming the closest registered names
            except UnknownNameError as e:
                raise UnknownNameError(f"DATASETS.{key}: {e}") from None


def train_or_evaluate(
    cfg: CfgNode,
    args: argparse.Namespace,
    trainer_cls: Type[DefaultTrainer] = DefaultTrainer,
    extra_loggers: Sequence[str] = (),
    prepare: Optional[Callable[[CfgNode], None]] = None,
) -> Dict[str, Any]:
    """Train (or, with ``--eval-only``, evaluate) in one process of the job.

    Everything that can fail on user input (data set names, model, data, weights) is built
    before anything is written to ``OUTPUT_DIR``, so a bad input leaves a previous run's
    files as they were (see :func:`commit_output_dir`). The job holds the lock on
    ``OUTPUT_DIR`` until it returns; a fresh run (no ``--resume``) over a previous run's
    checkpoints or ``metrics.json`` stops unless ``args.overwrite``
    (:mod:`engine_lib.engine.output_dir`); ``--eval-only`` writes ``config_eval.yaml`` and
    its results under ``inference/``, never the training run's ``config.yaml``.

    Args:
        cfg (CfgNode): the frozen config.
        args (argparse.Namespace): from ``default_argument_parser``: ``eval_only``, ``resume``.
        trainer_cls (type): the trainer, a ``DefaultTrainer`` subclass for projects (e.g.
            from ``engine_lib.distillation.select_trainer``).
        extra_loggers (Sequence[str]): names of a project's loggers, set up like the engine's.
        prepare (callable, optional): called with ``cfg`` once logging is set up and before
            anything is built, e.g. to register the project's data sets.

    Returns:
        dict: the final evaluation results (empty on non-main processes).
    """
    try:
        results = _train_or_evaluate(cfg, args, trainer_cls, extra_loggers, prepare)
    finally:
        # The lock on OUTPUT_DIR ends with the run, also when it fails.
        release_output_dir(cfg.OUTPUT_DIR)
    if comm.is_main_process() and results:
        logger.info("Final results:\n%s", create_small_table(flatten_results_dict(results)))
    return results


def _train_or_evaluate(
    cfg: CfgNode,
    args: argparse.Namespace,
    trainer_cls: Type[DefaultTrainer],
    extra_loggers: Sequence[str],
    prepare: Optional[Callable[[CfgNode], None]],
) -> Dict[str, Any]:
    # torchrun --max-restarts restarted the worker group after a failure: continue from the
    # newest complete checkpoint (on whatever world size the group came back with) instead
    # of starting over, as if --resume had been given.
    elastic_resume = not args.eval_only and not args.resume and elastic_restart_count() > 0
    if elastic_resume:
        args = argparse.Namespace(**{**vars(args), "resume": True})
    # A negative SEED becomes the job's drawn seed here, before the data loaders read it.
    cfg = default_setup(cfg, args, defer_writes=True, extra_loggers=extra_loggers)
    if elastic_resume:
        logger.info(
            "Elastic restart %d (TORCHELASTIC_RESTART_COUNT): resuming from the newest "
            "complete checkpoint in %s",
            elastic_restart_count(),
            cfg.OUTPUT_DIR,
        )
    if prepare is not None:
        prepare(cfg)
    check_dataset_names(cfg)
    if args.eval_only:
        model = trainer_cls.build_model(cfg)
        checkpointer = Checkpointer(
            model, save_dir=cfg.OUTPUT_DIR, allow_pickle=cfg.MODEL.WEIGHTS_ALLOW_PICKLE
        )
        # The same resume rules as training (engine_lib.checkpoint.resume).
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        # config_eval.yaml: the training run's config.yaml stays as it was.
        commit_output_dir(cfg, config_file_name(args))
        results = trainer_cls.test(cfg, model)
        if comm.is_main_process():
            check_results(cfg, results)
    else:
        trainer = trainer_cls(cfg)
        trainer.resume_or_load(resume=args.resume)
        complete = _completed_run(trainer) if args.resume else None
        if complete:
            logger.info(
                "Nothing to do: the run in OUTPUT_DIR %r is complete (%s; model_final.pth is "
                "there). Raise SOLVER.MAX_ITER to train further, or drop --resume / use another "
                "OUTPUT_DIR to start over.",
                cfg.OUTPUT_DIR,
                complete,
            )
            return {}
        # Everything is built and checked: only now may a fresh run replace a previous one.
        check_fresh_run(
            trainer.cfg.OUTPUT_DIR, args.resume, False, getattr(args, "overwrite", False)
        )
        # config.yaml records the config the trainer resolved and uses (seed, epochs, batch).
        commit_output_dir(trainer.cfg)
        results = trainer.train()
    return results


def _dist_timeout(args: argparse.Namespace) -> timedelta:
    """The collective timeout: ``--dist-timeout`` seconds, or the launcher's default."""
    seconds = getattr(args, "dist_timeout", None)
    return timedelta(seconds=seconds) if seconds else DEFAULT_TIMEOUT


def elastic_restart_count() -> int:
    """How many times torch's elastic agent restarted this worker group (0 outside torchrun).

    Returns:
        int: ``TORCHELASTIC_RESTART_COUNT``, or 0 when unset.
    """
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    except ValueError:
        return 0


def _completed_run(trainer: DefaultTrainer) -> Optional[str]:
    """How the resumed run ended, if it has nothing left to train, else None."""
    final = os.path.join(trainer.cfg.OUTPUT_DIR, "model_final")
    if not (os.path.isfile(final + ".pth") or os.path.isdir(final)):  # single file or DCP
        # E.g. killed while writing it: the trainer finishes the run (and saves it).
        return None
    if trainer.stop_reason is not None:
        return f"stopped early after iteration {trainer.start_iter - 1}: {trainer.stop_reason}"
    if trainer.start_iter >= trainer.max_iter:
        return f"all {trainer.max_iter} iterations done"
    return None


def launch_from_args(
    main_func: Callable[[argparse.Namespace], Any], args: argparse.Namespace, cfg: CfgNode
) -> None:
    """Run ``main_func(args)`` on every process the launch flags of ``args`` ask for.

    Args:
        main_func (callable): a module-level function (it is pickled for spawned workers).
        args (argparse.Namespace): from ``default_argument_parser`` (``--launcher`` and
            ``--local-rank`` included).
        cfg (CfgNode): the config, already validated in this process; a CPU model trains
            on gloo. With ``DETERMINISTIC`` on CUDA, ``CUBLAS_WORKSPACE_CONFIG`` is set here,
            before any worker is spawned or any cuBLAS call, so that every worker has it.
    """
    if cfg.DETERMINISTIC and cuda_in_use(cfg):
        set_cublas_workspace_config(os.environ)
    launch(
        main_func,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        backend="gloo" if cfg.MODEL.DEVICE == "cpu" else None,
        launcher=getattr(args, "launcher", None),
        local_rank=getattr(args, "local_rank", None),
        timeout=_dist_timeout(args),
    )
