"""Samples per second of ``build_train_loader(cfg)`` against a plain ``DataLoader``.

Both loaders apply the same torchvision v2 transforms (``build_augmentations`` of the config:
on ``configs/Digits/cnn.yaml`` a random resized crop to 32x32) to the same images, in batches
of ``SOLVER.IMS_PER_BATCH``, in a fresh random order that never ends. The plain loader is
what a PyTorch user writes without the engine: a dataset whose ``__getitem__`` returns
``(transform(image), label)``, a ``RandomSampler`` and the default collate, which stacks the
images into one tensor per batch (the engine yields a list of dicts and leaves stacking to the
model; with workers, one tensor per batch is also what makes the transfer to the main
process cheap, so the engine packs each batch's images into one storage). The engine adds
what exact resume needs: the resumable sampler, a seed per sample, the dataset dicts and the
:class:`~engine_lib.data.DatasetMapper`.

Cells: the in-memory digits (8x8 uint8 arrays) and the same digits written as an
``ImageFolder`` of PNG files (decoded by PIL on every read), each with 0 and 2 workers. The
two loaders of a cell are built once and kept iterating (persistent workers); runs of
``--batches`` batches alternate between them (plain, engine, engine, plain, ...) so that drift
in the machine's speed hits both, and the ratio printed is the median over the pairs of
engine samples/s / plain samples/s. The per-sample overhead is the difference of the median
seconds per sample. With workers both loaders are bound by the cores the workers get, so the
wall-clock overhead there says how much of the machine the engine's extra work takes. Without
workers, the ratio of process CPU time is printed too: on a machine shared with other jobs
it is the steadier figure.

Usage::

    python benchmarks/data_loader.py                 # all four cells
    python benchmarks/data_loader.py --repeats 15 --batches 40
"""

import argparse
import gc
import itertools
import logging
import os
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from engine_lib.config import CfgNode, get_cfg
from engine_lib.data import DatasetCatalog, build_train_loader, register_image_folder
from engine_lib.data.mapper import build_augmentations

__all__ = ["main"]

logger = logging.getLogger(__name__)

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "Digits", "cnn.yaml")
FOLDER_NAME = "benchmark_digits_png"


class PlainArrays(Dataset):
    """``(transform(image), label)`` for in-memory HxWx3 uint8 arrays: the plain baseline."""

    def __init__(self, records: List[Dict[str, Any]], transform: Callable) -> None:
        self.images = [r["image"] for r in records]
        self.labels = [r["label"] for r in records]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1)
        return self.transform(image), self.labels[index]


def _write_png_folder(root: str) -> None:
    """Write the digits training split as ``root/<label>/<image_id>.png``."""
    for record in DatasetCatalog.get("digits_train"):
        folder = os.path.join(root, str(record["label"]))
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{record['image_id']:04d}.png")
        Image.fromarray(np.ascontiguousarray(record["image"])).save(path)


def _cfg(num_workers: int, train_set: str) -> CfgNode:
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.DATALOADER.NUM_WORKERS = num_workers
    cfg.DATASETS.TRAIN = (train_set,)
    return cfg


def _plain_loader(cfg: CfgNode, dataset: Dataset) -> DataLoader:
    workers = cfg.DATALOADER.NUM_WORKERS
    return DataLoader(
        dataset,
        batch_size=cfg.SOLVER.IMS_PER_BATCH,
        # Endless like the engine's sampler, so neither loader stalls at an epoch's end.
        sampler=RandomSampler(dataset, num_samples=1 << 40),
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=True,
    )


def _loaders(kind: str, num_workers: int, root: str) -> Tuple[Iterator, Iterator, int]:
    """Return iterators over (plain, engine) loaders of a cell, and the batch size."""
    cfg = _cfg(num_workers, "digits_train" if kind == "digits" else FOLDER_NAME)
    augmentations = build_augmentations(cfg, is_train=True)
    if kind == "digits":
        plain = PlainArrays(DatasetCatalog.get("digits_train"), augmentations)
    else:
        plain = ImageFolder(root, transform=v2.Compose([v2.PILToTensor(), augmentations]))
    plain_iter = iter(_plain_loader(cfg, plain))
    engine_iter = iter(build_train_loader(cfg))
    return plain_iter, engine_iter, cfg.SOLVER.IMS_PER_BATCH


def _timed(iterator: Iterator, batches: int) -> Tuple[float, float]:
    """Wall-clock and process CPU seconds to take ``batches`` batches."""
    gc.collect()
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in itertools.islice(iterator, batches):
        pass
    return time.perf_counter() - start, time.process_time() - start_cpu


def _ratio(engine: List[float], plain: List[float]) -> Tuple[float, str]:
    """Median of engine / plain samples per second over the pairs, and a printable form."""
    ratios = [p / e for e, p in zip(engine, plain)]  # times in, so rates are inverted
    q1, median, q3 = statistics.quantiles(ratios, n=4)
    return median, f"{median:.3f}x (quartiles {q1:.3f}..{q3:.3f})"


def cell(kind: str, num_workers: int, root: str, batches: int, repeats: int) -> float:
    """Print one cell's rates, ratio and per-sample overhead; return the median ratio."""
    plain_iter, engine_iter, batch_size = _loaders(kind, num_workers, root)
    _timed(plain_iter, 5)  # warm-up: workers started, caches filled
    _timed(engine_iter, 5)
    times: Dict[bool, List[Tuple[float, float]]] = {False: [], True: []}
    for r in range(repeats):
        # Alternate which loader goes first, so that drift favours neither.
        for is_engine in (False, True) if r % 2 == 0 else (True, False):
            times[is_engine].append(_timed(engine_iter if is_engine else plain_iter, batches))
    del plain_iter, engine_iter  # shut the workers down before the next cell
    samples = batches * batch_size
    wall = {k: [w for w, _ in v] for k, v in times.items()}
    ratio, printed = _ratio(wall[True], wall[False])
    plain_s, engine_s = (statistics.median(wall[k]) / samples for k in (False, True))
    print(
        f"  {kind:7s} {num_workers} workers: plain {1 / plain_s:6.0f} samples/s, engine "
        f"{1 / engine_s:6.0f} samples/s, ratio {printed}, engine overhead "
        f"{1e6 * (engine_s - plain_s):+6.1f} us/sample"
    )
    if num_workers == 0:
        # Process CPU time leaves out the time other jobs hold the cores: on a shared machine
        # the steadier figure, and here all of the loading runs in this process.
        cpu = {k: [c for _, c in v] for k, v in times.items()}
        plain_c, engine_c = (statistics.median(cpu[k]) / samples for k in (False, True))
        print(
            f"  {'':7s} process CPU time: ratio {_ratio(cpu[True], cpu[False])[1]}, engine "
            f"overhead {1e6 * (engine_c - plain_c):+6.1f} us/sample"
        )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="alternating pairs per cell")
    parser.add_argument("--batches", type=int, default=30, help="batches per timed run")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    # One thread, as in a data-loader worker: the transforms of one small image gain nothing
    # from more, and on a shared machine extra threads only scatter the timings.
    torch.set_num_threads(args.threads)
    logging.getLogger("engine_lib").setLevel(logging.WARNING)
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, batch of 64, median of "
        f"{args.repeats} alternating pairs of {args.batches} batches per cell"
    )
    ratios = []
    with tempfile.TemporaryDirectory() as root:
        _write_png_folder(root)
        register_image_folder(FOLDER_NAME, root)
        for kind, workers in itertools.product(("digits", "folder"), args.workers):
            ratios.append(cell(kind, workers, root, args.batches, args.repeats))
    print(f"target: >= 0.95x in every cell (lowest {min(ratios):.3f}x)")


if __name__ == "__main__":
    main()
