"""Process set-up shared by every entry point: output dir, logs, seeding, the dumped config."""

import argparse
import logging
import os
from typing import List, Optional

import torch

from engine_lib.config import CfgNode
from engine_lib.utils import comm
from engine_lib.utils.collect_env import collect_env_info
from engine_lib.utils.env import seed_all_rng
from engine_lib.utils.events import CommonMetricPrinter, EventWriter, JSONWriter, TensorboardXWriter
from engine_lib.utils.file_io import atomic_write
from engine_lib.utils.logger import setup_logger

__all__ = ["default_setup", "default_writers"]

logger = logging.getLogger(__name__)


def default_setup(cfg: CfgNode, args: Optional[argparse.Namespace] = None) -> None:
    """Prepare a training or evaluation process from a frozen config.

    Creates ``cfg.OUTPUT_DIR``, sets up the loggers (``log.txt`` on rank 0, ``log.txt.rankN``
    elsewhere), logs the environment, the command line and the merged config, dumps it to
    ``OUTPUT_DIR/config.yaml`` (main process, atomically), seeds every RNG with
    ``cfg.SEED + rank`` (a random, logged seed when ``cfg.SEED < 0``) and sets cuDNN benchmark.

    Args:
        cfg (CfgNode): the full config.
        args (argparse.Namespace, optional): the parsed command line, logged for the record.
    """
    output_dir = cfg.OUTPUT_DIR
    rank = comm.get_rank()
    if comm.is_main_process() and output_dir:
        os.makedirs(output_dir, exist_ok=True)
    comm.synchronize()

    setup_logger(output_dir, distributed_rank=rank, name="fvcore")
    setup_logger(output_dir, distributed_rank=rank)

    logger.info("Rank of current process: %d. World size: %d", rank, comm.get_world_size())
    logger.info("Environment info:\n%s", collect_env_info())
    if args is not None:
        logger.info("Command line arguments: %s", args)
        config_file = getattr(args, "config_file", "")
        if config_file:
            with open(config_file) as f:
                logger.info("Contents of config file %s:\n%s", config_file, f.read())
    logger.info("Running with full config:\n%s", cfg.dump())
    if comm.is_main_process() and output_dir:
        path = os.path.join(output_dir, "config.yaml")
        with atomic_write(path, "w") as f:
            f.write(cfg.dump())
        logger.info("Full config saved to %s", path)

    seed = seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)
    logger.info("Seed of this process: %d", seed)
    torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK


def default_writers(output_dir: str, max_iter: Optional[int] = None) -> List[EventWriter]:
    """The writers of a training run: console, ``metrics.json`` and TensorBoard.

    Args:
        output_dir (str): directory of ``metrics.json`` and the TensorBoard event files.
        max_iter (int, optional): total iterations, for the ETA on the console.

    Returns:
        list[EventWriter]: the writers.
    """
    os.makedirs(output_dir, exist_ok=True)
    return [
        CommonMetricPrinter(max_iter),
        JSONWriter(os.path.join(output_dir, "metrics.json")),
        TensorboardXWriter(output_dir),
    ]
