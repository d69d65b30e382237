"""Process set-up shared by every entry point: output dir, logs, seeding, the dumped config.

A run that fails on bad input must leave ``OUTPUT_DIR`` as it found it (a previous run's
``config.yaml``, ``log.txt`` and checkpoints are evidence the user still needs). So the tools
call ``default_setup(cfg, args, defer_writes=True)``, build everything that can fail on user
input (model, data, weights), and only then :func:`commit_output_dir`, which creates
``OUTPUT_DIR``, writes ``config.yaml`` and the log lines kept in memory until then.
"""

import argparse
import contextlib
import logging
import os
import sys
from typing import Iterator, List, Optional, Sequence, Set, Tuple

from engine_lib.config import CfgNode
from engine_lib.utils import comm
from engine_lib.utils.collect_env import collect_env_info
from engine_lib.utils.env import seed_all_rng
from engine_lib.utils.errors import UserError
from engine_lib.utils.events import (
    CommonMetricPrinter,
    EventWriter,
    JSONWriter,
    TensorboardXWriter,
)
from engine_lib.utils.file_io import atomic_write
from engine_lib.utils.logger import setup_logger
from engine_lib.utils.remote_weights import allow_remote_weights

from .output_dir import check_fresh_run, lock_output_dir
from .reproducibility import apply_determinism, resolve_seed

__all__ = [
    "OutputDirError",
    "commit_output_dir",
    "config_file_name",
    "default_setup",
    "default_writers",
    "update_dumped_config",
]

logger = logging.getLogger(__name__)

# The loggers default_setup configures (plus a project's own, see its extra_loggers); their
# records are held back while writes are deferred.
_ENGINE_LOGGERS = ("fvcore", "engine_lib")
_LOGGER_NAMES: Tuple[str, ...] = _ENGINE_LOGGERS
# The OUTPUT_DIRs this process may write (set up without deferral, or committed).
_OPEN_OUTPUT_DIRS: Set[str] = set()


class OutputDirError(UserError):
    """``OUTPUT_DIR`` cannot be created or written (a read-only place, a path under a file)."""


# Records marked with this ``extra`` go to log.txt only: the environment table and the full
# config (about 200 lines) would bury the first training lines on the console.
_FILE_ONLY = {"file_only": True}


class _ConsoleSummary(logging.Filter):
    """Keeps the records marked file-only (``extra=_FILE_ONLY``) off the console."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


def _filter_console(names: Sequence[str]) -> None:
    for name in names:
        for handler in logging.getLogger(name).handlers:
            stream = getattr(handler, "stream", None)
            if stream in (sys.stdout, sys.stderr) and not any(
                isinstance(f, _ConsoleSummary) for f in handler.filters
            ):
                handler.addFilter(_ConsoleSummary())


class _HeldRecords(logging.Handler):
    """Keeps log records in memory until OUTPUT_DIR may be written, then replays them there."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _held_records_handler() -> Optional[_HeldRecords]:
    for handler in logging.getLogger("engine_lib").handlers:
        if isinstance(handler, _HeldRecords):
            return handler
    return None


def _release_held_records() -> List[logging.LogRecord]:
    held = _held_records_handler()
    if held is None:
        return []
    for name in _LOGGER_NAMES:
        logging.getLogger(name).removeHandler(held)
    return held.records


def default_setup(
    cfg: CfgNode,
    args: Optional[argparse.Namespace] = None,
    *,
    defer_writes: bool = False,
    extra_loggers: Sequence[str] = (),
) -> CfgNode:
    """Prepare a training or evaluation process from a frozen config.

    Creates ``cfg.OUTPUT_DIR``, sets up the loggers (``log.txt`` on rank 0, ``log.txt.rankN``
    elsewhere), logs the environment, the command line and the merged config, dumps it to
    ``OUTPUT_DIR/config.yaml`` (main process, atomically), seeds every RNG with
    ``cfg.SEED + rank`` and sets cuDNN benchmark, or deterministic mode with
    ``cfg.DETERMINISTIC`` (:func:`~engine_lib.engine.reproducibility.apply_determinism`).
    The number of torch CPU threads is logged and written as a comment at the top of
    ``config.yaml``: results on CPU depend on it.

    The job holds an exclusive lock on ``OUTPUT_DIR`` from here until it exits (deferred: from
    here if the directory exists, else from :func:`commit_output_dir`; see
    :mod:`engine_lib.engine.output_dir`). Without deferral and with ``args`` from
    ``default_argument_parser``, a fresh run over a previous run's checkpoints is refused
    unless ``args.overwrite``; ``--eval-only`` dumps ``config_eval.yaml``, not ``config.yaml``.

    ``cfg.SEED < 0`` draws one seed for the whole job (rank 0's, logged with how to repeat
    the run); the returned config holds it, and so does the dumped ``config.yaml``: use the
    returned config from then on (the trainer's samplers read ``SEED`` too).

    Args:
        cfg (CfgNode): the full config.
        args (argparse.Namespace, optional): the parsed command line, logged for the record.
        defer_writes (bool): touch nothing in ``OUTPUT_DIR`` yet: log to the console and keep
            the log records in memory until :func:`commit_output_dir`, which must then be
            called once the inputs are known to be good. Default: False.
        extra_loggers (Sequence[str]): names of a project's loggers, set up like the engine's
            (console on rank 0, ``log.txt``).

    Returns:
        CfgNode: ``cfg``, or a frozen copy of it with the drawn ``SEED`` when ``SEED < 0``.

    Raises:
        OutputDirError: ``OUTPUT_DIR`` cannot be created or written (not when deferred).
        OutputDirInUseError: another job holds ``OUTPUT_DIR``.
        PreviousRunError: a fresh run over a previous one, without ``--overwrite``.
    """
    global _LOGGER_NAMES
    rank = comm.get_rank()
    _release_held_records()  # from an earlier deferred setup in this process that failed
    _LOGGER_NAMES = _ENGINE_LOGGERS + tuple(extra_loggers)
    if defer_writes:
        held = _HeldRecords()
        for name in _LOGGER_NAMES:
            setup_logger(None, distributed_rank=rank, name=name)
            logging.getLogger(name).addHandler(held)
        # A second job on a used OUTPUT_DIR stops now, before it builds anything; the lock
        # of a directory that does not exist yet is taken when it is created.
        lock_output_dir(cfg.OUTPUT_DIR, if_exists=True)
    else:
        _open_output_dir(cfg.OUTPUT_DIR, rank)
        if args is not None and hasattr(args, "resume"):
            check_fresh_run(
                cfg.OUTPUT_DIR,
                args.resume,
                getattr(args, "eval_only", False),
                getattr(args, "overwrite", False),
            )
    # Without OUTPUT_DIR there is no log.txt: the console then shows everything.
    extra = _FILE_ONLY if cfg.OUTPUT_DIR else None
    if extra:
        _filter_console(_LOGGER_NAMES)

    logger.info("Rank of current process: %d. World size: %d", rank, comm.get_world_size())
    logger.info("Environment info:\n%s", collect_env_info(), extra=extra)
    if args is not None:
        _log_command_line(args, extra)
    cfg = resolve_seed(cfg)
    allow_remote_weights(cfg.MODEL.ALLOW_REMOTE_WEIGHTS)
    logger.info("Running with full config:\n%s", cfg.dump(), extra=extra)
    if extra:
        _log_summary(cfg, args)
    if not defer_writes:
        _dump_config(cfg, config_file_name(args))

    seed = seed_all_rng(cfg.SEED + rank)
    logger.info("Seed of this process: %d; %s", seed, _threads_line())
    apply_determinism(cfg)
    return cfg


def _log_command_line(args: argparse.Namespace, extra: Optional[dict] = None) -> None:
    logger.info("Command line arguments: %s", args)
    config_file = getattr(args, "config_file", "")
    if config_file:
        with open(config_file) as f:
            logger.info("Contents of config file %s:\n%s", config_file, f.read(), extra=extra)


def _log_summary(cfg: CfgNode, args: Optional[argparse.Namespace]) -> None:
    """The console's short account of the run; log.txt has the full config and environment."""
    s = cfg.SOLVER
    length = f"{s.MAX_EPOCH} epochs" if s.MAX_ITER < 0 else f"{s.MAX_ITER} iterations"
    logger.info(
        "Run: %s on %s, %s, batch %d, %s LR %g; %s/log.txt has the environment and the full "
        "config.",
        getattr(args, "config_file", "") or "(no config file)",
        cfg.MODEL.DEVICE,
        length,
        s.IMS_PER_BATCH,
        s.LR_SCHEDULER_NAME,
        s.BASE_LR,
        cfg.OUTPUT_DIR,
    )


def config_file_name(args: Optional[argparse.Namespace]) -> str:
    """``config.yaml``, or ``config_eval.yaml`` for ``--eval-only`` (the run's stays as it was)."""
    return "config_eval.yaml" if getattr(args, "eval_only", False) else "config.yaml"


def commit_output_dir(cfg: CfgNode, config_name: str = "config.yaml") -> None:
    """Finish a ``default_setup(..., defer_writes=True)``: write ``OUTPUT_DIR`` from now on.

    Creates ``OUTPUT_DIR``, adds the log files to the loggers, writes the log records held
    since :func:`default_setup` into them and dumps ``config.yaml``. Call it on every process
    (it synchronizes them) after everything that can fail on user input has been built.

    Args:
        cfg (CfgNode): the config the run uses: ``trainer.cfg`` when training (resolved:
            seed, world size, epochs), else the one :func:`default_setup` returned.
        config_name (str): the file name of the dumped config; evaluation-only runs write
            ``config_eval.yaml`` so that the training run's ``config.yaml`` stays as it was.
            Default: ``"config.yaml"``.

    Raises:
        OutputDirError: ``OUTPUT_DIR`` cannot be created or written.
    """
    records = _release_held_records()
    _open_output_dir(cfg.OUTPUT_DIR, comm.get_rank())
    if cfg.OUTPUT_DIR:
        files = _file_handlers(logging.getLogger("engine_lib"))
        for record in records:
            for handler in files:
                handler.handle(record)
    _dump_config(cfg, config_name)


def update_dumped_config(cfg: CfgNode) -> None:
    """Rewrite ``OUTPUT_DIR/config.yaml`` with ``cfg`` if this process may write there already.

    ``DefaultTrainer`` calls it with its resolved config, so that ``config.yaml`` is the config
    the run uses even after a :func:`default_setup` without deferral dumped the merged one.
    While writes are deferred (or without :func:`default_setup`) it does nothing:
    :func:`commit_output_dir` is then the one that writes ``config.yaml``.

    Args:
        cfg (CfgNode): the config to record.
    """
    if cfg.OUTPUT_DIR and os.path.abspath(cfg.OUTPUT_DIR) in _OPEN_OUTPUT_DIRS:
        _dump_config(cfg)


def _file_handlers(log: logging.Logger) -> List[logging.Handler]:
    # The console handler writes to sys.stdout, which already showed the held records.
    return [
        h
        for h in log.handlers
        if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is not sys.stdout
    ]


def _open_output_dir(output_dir: str, rank: int) -> None:
    if comm.is_main_process() and output_dir:
        with _output_dir_errors(output_dir):
            os.makedirs(output_dir, exist_ok=True)
    comm.synchronize()
    # Before the first write (the log files): one job per OUTPUT_DIR.
    lock_output_dir(output_dir)
    with _output_dir_errors(output_dir):
        for name in _LOGGER_NAMES:
            setup_logger(output_dir or None, distributed_rank=rank, name=name)
    if output_dir:
        _OPEN_OUTPUT_DIRS.add(os.path.abspath(output_dir))


def _threads_line() -> str:
    """How many CPU threads torch computes with here: CPU results depend on it."""
    import torch  # loaded by then; not at the top, where this module stays free of torch

    omp = os.environ.get("OMP_NUM_THREADS")
    return f"torch CPU threads: {torch.get_num_threads()} (OMP_NUM_THREADS={omp or 'unset'})"


def _dump_config(cfg: CfgNode, name: str = "config.yaml") -> None:
    if comm.is_main_process() and cfg.OUTPUT_DIR:
        path = os.path.join(cfg.OUTPUT_DIR, name)
        with _output_dir_errors(cfg.OUTPUT_DIR):
            with atomic_write(path, "w") as f:
                # A comment, so the file still loads as a config: a replay on CPU gives the
                # same numbers only with the same thread count (docs/reliability.md).
                f.write(f"# {_threads_line()}; a replay on CPU needs the same count.\n")
                f.write(cfg.dump())
        logger.info("Full config saved to %s", path)


@contextlib.contextmanager
def _output_dir_errors(output_dir: str) -> Iterator[None]:
    """Turn an OSError about ``OUTPUT_DIR`` into an :class:`OutputDirError` naming it."""
    try:
        yield
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        raise OutputDirError(
            f"OUTPUT_DIR {output_dir!r} cannot be created or written ({type(e).__name__}: "
            f"{e.strerror or e}{where}); expected a directory you may write to, or a path "
            "where one can be created."
        ) from e


def default_writers(
    output_dir: str,
    max_iter: Optional[int] = None,
    iters_per_epoch: int = 0,
    cfg: Optional[CfgNode] = None,
) -> List[EventWriter]:
    """The writers of a training run: those ``cfg.WRITERS`` names, by default console,
    ``metrics.json`` and TensorBoard.

    Args:
        output_dir (str): directory of ``metrics.json`` and the TensorBoard event files.
        max_iter (int, optional): total iterations, for the ETA on the console.
        iters_per_epoch (int): iterations per epoch, for "epoch: e/E" on the console (0:
            unknown). Default: 0.
        cfg (CfgNode, optional): the run's config: its ``WRITERS`` (names in
            ``engine_lib.engine.writers.WRITER_REGISTRY``, trackers included) and their keys.
            None: the three default writers.

    Returns:
        list[EventWriter]: the writers.

    Raises:
        ConfigError: an unknown name in ``WRITERS``, or a tracker whose package is missing.
    """
    if cfg is None:
        return [
            CommonMetricPrinter(max_iter, iters_per_epoch=iters_per_epoch),
            JSONWriter(os.path.join(output_dir, "metrics.json")),
            TensorboardXWriter(output_dir),
        ]
    from .writers import build_writers_from_config

    return build_writers_from_config(cfg, output_dir, max_iter, iters_per_epoch)
