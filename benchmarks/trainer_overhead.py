"""Time SimpleTrainer with the default hooks against a plain PyTorch loop doing the same work.

Both loops run the same model, data, optimizer and LR schedule in the same process; the
engine adds what a ``DefaultTrainer`` run adds per iteration: the hook calls, IterationTimer,
LRScheduler, PeriodicWriter (every 20 iterations, with ``default_writers`` as DefaultTrainer
builds them: the console printer, metrics.json and TensorBoard, all writing to a temporary
directory; where ``PeriodicWriter`` puts them by default, ``--writers auto``: these three on
the training thread, unlike experiment trackers; ``--writers thread`` puts them on its
background thread), a PeriodicCheckpointer whose period exceeds the run, and
the trainer's own bookkeeping (loss buffering, data time, sample count, metric gathers every
20 iterations). The checkpointer is built with ``save_to_disk=False``: the final checkpoint
the hook writes at the last iteration is work the plain loop does not do.

Runs alternate (plain, engine, engine, plain, ...) so that drift in the machine's speed hits
both; the ratio reported is the median over repeats of engine time / plain time. The ratio of
the fastest runs of each is printed too: on a machine shared with other jobs it is the figure
least disturbed by them.

Usage::

    python benchmarks/trainer_overhead.py                  # the three workloads, CPU
    python benchmarks/trainer_overhead.py --breakdown      # + each hook's and writer's cost
    python benchmarks/trainer_overhead.py --writers thread # every writer on the writer thread
    python benchmarks/trainer_overhead.py --device cuda --repeats 7
    python benchmarks/trainer_overhead.py --device cuda --workloads resnet50  # AMP fp16

On a GPU machine, ``bash benchmarks/gpu_checks.sh`` runs these with the CUDA-only tests.
"""

import argparse
import gc
import itertools
import logging
import os
import statistics
import tempfile
import time
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from engine_lib.checkpoint import Checkpointer
from engine_lib.engine import default_writers, hooks
from engine_lib.engine.train_loop import AMPTrainer, SimpleTrainer
from engine_lib.utils.events import EventStorage, EventWriter, get_event_storage

__all__ = ["main"]

logger = logging.getLogger(__name__)


class MLP(nn.Module):
    """A compute-light classifier: the per-iteration overhead of a loop shows most here."""

    def __init__(self, in_dim: int = 64, hidden: int = 256, classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, batch: Tuple[torch.Tensor, torch.Tensor]) -> Dict[str, torch.Tensor]:
        x, y = batch
        return {"loss_cls": F.cross_entropy(self.net(x), y)}


class TinyMLP(nn.Module):
    """MLP 32-64-10: a step of ~0.2 ms on one CPU thread, where every microsecond shows."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, batch: Tuple[torch.Tensor, torch.Tensor]) -> Dict[str, torch.Tensor]:
        x, y = batch
        return {"loss_cls": F.cross_entropy(self.net(x), y)}


class SmallCNN(nn.Module):
    """A small CNN on 32x32 RGB images."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(64, classes)

    def forward(self, batch: Tuple[torch.Tensor, torch.Tensor]) -> Dict[str, torch.Tensor]:
        x, y = batch
        return {"loss_cls": F.cross_entropy(self.head(self.features(x).flatten(1)), y)}


class ResNet50(nn.Module):
    """torchvision's ResNet-50 (random weights, 10 classes): a step where the device, not the
    loop, sets the pace; run with mixed precision (``--workloads resnet50``)."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50

        self.net = resnet50(num_classes=10)

    def forward(self, batch: Tuple[torch.Tensor, torch.Tensor]) -> Dict[str, torch.Tensor]:
        x, y = batch
        return {"loss_cls": F.cross_entropy(self.net(x), y)}


def _batches(shape: Tuple[int, ...], batch_size: int, device: str, n: int = 16) -> List:
    g = torch.Generator().manual_seed(0)
    return [
        (
            torch.randn(batch_size, *shape, generator=g).to(device),
            torch.randint(0, 10, (batch_size,), generator=g).to(device),
        )
        for _ in range(n)
    ]


def _setup(build_model: Callable[[], nn.Module], device: str, iters: int):
    torch.manual_seed(0)
    model = build_model().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [iters // 2], gamma=0.1)
    return model, optimizer, scheduler


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# The workload's mixed precision ("fp16", "bf16" or None), for both loops.
_PRECISION: Optional[str] = None
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def run_plain(
    build_model,
    data: List,
    device: str,
    iters: int,
    after_step: Optional[Callable[[int], None]] = None,
) -> Tuple[float, float]:
    """The reference: the same work written as a bare PyTorch loop (with autocast and, for
    fp16, a grad scaler when the workload runs in mixed precision); ``after_step(i)``, if
    given, runs after each step (the breakdown's writers-alone probe)."""
    model, optimizer, scheduler = _setup(build_model, device, iters)
    data_iter = itertools.cycle(data)
    model.train()
    device_type = torch.device(device).type
    dtype = _DTYPES.get(_PRECISION or "")
    scaler = torch.amp.GradScaler(device_type) if _PRECISION == "fp16" else None
    _sync(device)
    start, start_cpu = time.perf_counter(), time.thread_time()
    for i in range(iters):
        batch = next(data_iter)
        if dtype is None:
            loss_dict = model(batch)
        else:
            with torch.autocast(device_type=device_type, dtype=dtype):
                loss_dict = model(batch)
        losses = sum(loss_dict.values())
        if scaler is None:
            losses.backward()
            optimizer.step()
        else:
            scaler.scale(losses).backward()
            scaler.step(optimizer)
            scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if after_step is not None:
            after_step(i)
    _sync(device)
    return time.perf_counter() - start, time.thread_time() - start_cpu


class _PlainLoopWrites:
    """The default writers alone: every 20 iterations of the plain loop, 20 iterations'
    values go into a storage of their own and the writers write them, with no engine around.

    This is the floor of any design that writes on the training thread: the writes' own time,
    and the time they add to the steps after them (whose data they evicted from the caches).
    """

    period = 20

    def __init__(self, out_dir: str, iters: int) -> None:
        self.writers = default_writers(out_dir, iters)
        self.seconds: List[float] = []  # each write, in the run

    def __call__(self, iteration: int) -> None:
        if (iteration + 1) % self.period:
            return
        storage = get_event_storage()
        its = list(range(iteration + 1 - self.period, iteration + 1))
        for name in ("loss_cls", "total_loss", "data_time", "time"):
            storage.put_scalar_series(name, [0.5 + 1e-3 * i for i in its], its)
        storage.iter = iteration
        storage.put_scalar("lr", 0.01, smoothing_hint=False)
        start = time.perf_counter()
        for writer in self.writers:
            writer.write()
        self.seconds.append(time.perf_counter() - start)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


def _writes_alone(build_model, data: List, device: str, iters: int, repeats: int) -> None:
    """Print what the default writers cost in the plain loop, against it without them."""
    plain, written, in_run = [], [], []
    with tempfile.TemporaryDirectory() as root:
        for r in range(repeats + 1):
            for with_writes in (False, True) if r % 2 == 0 else (True, False):
                gc.collect()
                if not with_writes:
                    elapsed = run_plain(build_model, data, device, iters)
                    (plain if r else []).append(elapsed[1])
                    continue
                writes = _PlainLoopWrites(tempfile.mkdtemp(dir=root), iters)
                with EventStorage(0):
                    elapsed = run_plain(build_model, data, device, iters, writes)
                writes.close()
                if r:
                    written.append(elapsed[1])
                    in_run.extend(writes.seconds)
        # The same writes timed back to back, their code and data hot in the caches.
        writes = _PlainLoopWrites(tempfile.mkdtemp(dir=root), 10**7)
        with EventStorage(0):
            for i in range(200 * writes.period):
                writes(i)
        writes.close()
    extra = statistics.median(written) - statistics.median(plain)
    print(
        f"  the default writers alone, every 20 iterations of the plain loop (no engine; "
        f"medians of {repeats} pairs, training-thread CPU time): {1e6 * extra / iters:+.1f} us/it; "
        f"each write took {1e6 * statistics.median(in_run):.0f} us in the run "
        f"({1e6 * statistics.median(in_run) / writes.period:.1f} us/it), "
        f"{1e6 * statistics.median(writes.seconds[50:]):.0f} us back to back"
    )


class _TimedWriter(EventWriter):
    """Pass writes through to a writer, adding up the time they take, by writer class (on
    whichever thread they run)."""

    seconds: Dict[str, float] = {}

    def __init__(self, writer: EventWriter) -> None:
        self._writer = writer
        self._name = type(writer).__name__
        self.background = writer.background  # where PeriodicWriter("auto") writes it

    def write(self) -> None:
        start = time.perf_counter()
        self._writer.write()
        elapsed = time.perf_counter() - start
        _TimedWriter.seconds[self._name] = _TimedWriter.seconds.get(self._name, 0.0) + elapsed

    def close(self) -> None:
        self._writer.close()


# The levels of the breakdown: hooks added one at a time, then the writers one at a time.
_LEVELS = ["SimpleTrainer", "+ IterationTimer", "+ LRScheduler", "+ PeriodicCheckpointer"]
_LEVELS += ["+ PeriodicWriter: console", "+ metrics.json", "+ TensorBoard"]
_ALL = len(_LEVELS) - 1
_WRITERS = "auto"  # --writers: PeriodicWriter's background argument


class _HookClock:
    """Time, inside a run, each hook's per-iteration calls and the trainer's metric gather.

    The levels of the breakdown difference whole runs, which a noisy machine scatters by
    several microseconds per iteration; this measures each part's own calls directly (minus
    the timing shim's own cost, calibrated here). What it cannot see is the indirect cost
    of a part: caches it evicts, which slow the step after it.
    """

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = defaultdict(float)
        self.shim = self._shim_cost()

    def wrap(self, label: str, call: Callable[[], None]) -> Callable[[], None]:
        seconds, clock = self.seconds, time.perf_counter

        def timed() -> None:
            start = clock()
            call()
            seconds[label] += clock() - start

        return timed

    def instrument(self, trainer: SimpleTrainer) -> None:
        # The trainer's list of bound hook methods per hook point, which train() calls.
        calls = trainer._hook_calls
        for point in ("before_step", "after_backward", "after_step"):
            calls[point] = [
                self.wrap(f"{type(c.__self__).__name__}.{point}", c) for c in calls[point]
            ]
        trainer._gather_metrics = self.wrap(  # type: ignore[method-assign]
            "SimpleTrainer: loss gather", trainer._gather_metrics
        )

    def _shim_cost(self, n: int = 20000) -> float:
        timed = self.wrap("calibration", lambda: None)
        start = time.perf_counter()
        for _ in range(n):
            timed()
        total = time.perf_counter() - start
        self.seconds.clear()
        # The shim adds the call, two clock reads and the dict update, minus the bare call.
        return max(0.0, total / n - (self.seconds.get("calibration", 0.0) / n))


def run_engine(
    build_model,
    data: List,
    device: str,
    iters: int,
    out_dir: str,
    hooks_level: int = _ALL,
    clock: Optional[_HookClock] = None,
) -> Tuple[float, float]:
    """SimpleTrainer with the default hooks and writers (the first ``hooks_level`` levels);
    with ``clock``, each hook's calls are timed too."""
    model, optimizer, scheduler = _setup(build_model, device, iters)
    loader = itertools.cycle(data)
    if _PRECISION is None:
        trainer = SimpleTrainer(model, loader, optimizer, gather_metric_period=20)
    else:
        trainer = AMPTrainer(
            model, loader, optimizer, gather_metric_period=20, precision=_PRECISION
        )
    trainer.scheduler = scheduler
    trainer.register_hooks(_engine_hooks(hooks_level, trainer, iters, out_dir))
    if clock is not None:
        clock.instrument(trainer)
    _sync(device)
    start, start_cpu = time.perf_counter(), time.thread_time()
    trainer.train(0, iters)
    _sync(device)
    return time.perf_counter() - start, time.thread_time() - start_cpu


def _engine_hooks(level: int, trainer: SimpleTrainer, iters: int, out_dir: str) -> List:
    """The hooks and writers of ``_LEVELS[:level + 1]``: timer, LR, checkpointer, then the
    writer hook (every 20 iterations) with the first 1, 2 or 3 of ``default_writers``; below
    the LR hook's level, a bare hook steps the schedule so the work stays the same."""
    model, optimizer = trainer.model, trainer.optimizer
    built = [
        lambda: hooks.IterationTimer(),
        lambda: hooks.LRScheduler(),
        lambda: hooks.PeriodicCheckpointer(
            Checkpointer(model, out_dir, save_to_disk=False, optimizer=optimizer, trainer=trainer),
            period=10 * iters,
        ),
    ]
    chosen = [make() for make in built[:level]]
    if level < 2:
        chosen.append(hooks.CallbackHook(after_step=lambda _: trainer.scheduler.step()))
    if level > len(built):
        writers = default_writers(out_dir, iters)[: level - len(built)]
        chosen.append(
            hooks.PeriodicWriter(
                [_TimedWriter(w) for w in writers],
                period=trainer.gather_metric_period,
                background={"auto": "auto", "thread": True, "inline": False}[_WRITERS],
            )
        )
    return chosen


def breakdown(name: str, build_model, data: List, device: str, iters: int, repeats: int) -> None:
    """Print the cost of each part of the engine: the bare step, then each default hook and
    each default writer, added in turn."""
    times: Dict[int, List[float]] = {level: [] for level in range(-1, len(_LEVELS))}
    _TimedWriter.seconds = {}
    with tempfile.TemporaryDirectory() as root:
        for r in range(repeats + 1):
            # Alternate the order of the variants: whatever drifts during a round (heap,
            # caches, the machine) then favours none of them.
            for level in sorted(times, reverse=r % 2 == 1):
                gc.collect()
                if level < 0:
                    elapsed = run_plain(build_model, data, device, iters)
                else:
                    out_dir = tempfile.mkdtemp(dir=root)
                    elapsed = run_engine(build_model, data, device, iters, out_dir, level)
                if r > 0:  # the first round warms up
                    times[level].append(elapsed[1] if device == "cpu" else elapsed[0])
    base = min(times[-1])
    clock = "training-thread CPU time" if device == "cpu" else "wall clock"
    print(f"{name} breakdown (fastest of {repeats} runs of {iters} iterations, {clock}):")
    for label, level in zip(["plain loop"] + _LEVELS, times):
        best = min(times[level])
        print(
            f"  {label:28s} {1e6 * best / iters:8.1f} us/it  {best / base:.3f}x  "
            f"{1e6 * (best - base) / iters:+7.1f} us/it"
        )
    where = "the writer thread" if _WRITERS == "thread" else "the training thread"
    runs = sum(1 for level in times if level >= 4) * (repeats + 1)
    for writer, seconds in _TimedWriter.seconds.items():
        print(f"  {writer} write() on {where}: {1e6 * seconds / (runs * iters):.1f} us/it")
    # Each part's own calls, timed inside full runs.
    clock = _HookClock()
    with tempfile.TemporaryDirectory() as root:
        for _ in range(repeats):
            gc.collect()
            run_engine(build_model, data, device, iters, tempfile.mkdtemp(dir=root), _ALL, clock)
    print(
        f"  inside {repeats} full runs, each part's own calls (wall clock, less the timing "
        f"shim's {1e6 * clock.shim:.2f} us per call):"
    )
    for label, seconds in sorted(clock.seconds.items(), key=lambda kv: -kv[1]):
        calls = iters if label != "SimpleTrainer: loss gather" else -(-iters // 20)
        own = seconds - clock.shim * calls * repeats
        print(f"    {label:36s} {1e6 * own / (repeats * iters):6.1f} us/it")
    print(
        "    (LRScheduler.after_step includes the scheduler's step, which the plain loop does too)"
    )
    if _PRECISION is None:
        _writes_alone(build_model, data, device, iters, repeats)


def _median_ratio(engine: List[float], plain: List[float]) -> str:
    ratios = [e / p for e, p in zip(engine, plain)]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return f"{statistics.median(ratios):.3f}x (quartiles {q1:.3f}..{q3:.3f})"


def benchmark(name: str, build_model, data: List, device: str, iters: int, repeats: int) -> float:
    """Print the ratios of a workload; return the median engine / plain wall-clock ratio."""
    with tempfile.TemporaryDirectory() as root:
        run_dirs = (os.path.join(root, str(i)) for i in itertools.count())

        def timed(engine: bool, n: int) -> Tuple[float, float]:
            # Garbage left by earlier runs is collected before, not during, a timed run; each
            # engine run writes to a fresh directory, as a new training run does.
            out_dir = next(run_dirs)
            os.makedirs(out_dir)
            gc.collect()
            if engine:
                return run_engine(build_model, data, device, n, out_dir)
            return run_plain(build_model, data, device, n)

        timed(False, max(iters // 10, 5))  # warm-up: allocator, kernels, lazy imports
        timed(True, max(iters // 10, 5))
        plain, engine = [], []
        _TimedWriter.seconds = {}
        for r in range(repeats):
            # Alternate which loop goes first, so that drift favours neither.
            order = (False, True) if r % 2 == 0 else (True, False)
            times = {is_engine: timed(is_engine, iters) for is_engine in order}
            plain.append(times[False])
            engine.append(times[True])
    wall_p, wall_e = [w for w, _ in plain], [w for w, _ in engine]
    cpu_p, cpu_e = [c for _, c in plain], [c for _, c in engine]
    plain_us, engine_us = 1e6 * min(wall_p) / iters, 1e6 * min(wall_e) / iters
    writers_us = 1e6 * sum(_TimedWriter.seconds.values()) / (repeats * iters)
    print(f"{name} ({repeats} alternating pairs of {iters} iterations):")
    print(f"  wall clock: median ratio {_median_ratio(wall_e, wall_p)}")
    print(
        f"    fastest runs: plain {plain_us:.0f} us/it, engine {engine_us:.0f} us/it "
        f"({engine_us / plain_us:.3f}x, {engine_us - plain_us:+.1f} us/it); the writers' "
        f"write() took {writers_us:.1f} us/it on average "
        f"({'writer' if _WRITERS == 'thread' else 'training'} thread)"
    )
    if device == "cpu":
        # The training thread's CPU time does not count the time other jobs hold the cores,
        # nor waits for the disk, nor the writer thread's work: the cost on the critical path
        # of the loop, the figure that a busy machine disturbs least.
        print(f"  training-thread CPU time: median ratio {_median_ratio(cpu_e, cpu_p)}")
    return statistics.median(e / p for e, p in zip(wall_e, wall_p))


def main() -> None:
    global _WRITERS, _PRECISION
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--tiny-iters", type=int, default=1000)
    parser.add_argument("--mlp-iters", type=int, default=500)
    parser.add_argument("--cnn-iters", type=int, default=30)
    parser.add_argument("--resnet-iters", type=int, default=30)
    parser.add_argument(
        "--resnet-batch",
        type=int,
        default=32,
        help="ResNet-50 batch size (images of --resnet-size)",
    )
    parser.add_argument("--resnet-size", type=int, default=224)
    parser.add_argument(
        "--workloads",
        default="tiny,mlp,cnn",
        help="comma-separated: tiny, mlp, cnn, resnet50 (mixed precision: fp16 with a grad "
        "scaler on CUDA, bf16 on CPU; against a plain autocast loop; meant for a GPU)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time the bare SimpleTrainer step and each default hook and writer in turn",
    )
    parser.add_argument(
        "--writers",
        choices=["auto", "thread", "inline"],
        default="auto",
        help="where the writers write: as PeriodicWriter does by default (auto: the default "
        "writers inline), all on its background thread, or all inline",
    )
    args = parser.parse_args()
    _WRITERS = args.writers
    # One thread by default: on a machine shared with other jobs, a multi-threaded CPU step
    # waits for its slowest thread and the timings scatter.
    torch.set_num_threads(args.threads)
    # The console printer logs every 20 iterations, as in a real run (to a file, not the
    # terminal, to keep this output readable).
    log_dir = tempfile.mkdtemp()
    engine_logger = logging.getLogger("engine_lib")
    engine_logger.addHandler(logging.FileHandler(os.path.join(log_dir, "log.txt")))
    engine_logger.setLevel(logging.INFO)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
        f"{os.cpu_count()} CPUs, load average {load}, "
        f"writers: {_WRITERS}"
    )
    amp = "fp16" if torch.device(args.device).type == "cuda" else "bf16"
    size = args.resnet_size
    workloads = {
        # key: (model, batches (made when run), iterations, target, mixed precision)
        "tiny": (TinyMLP, lambda: _batches((32,), 32, args.device), args.tiny_iters, 1.05, None),
        "mlp": (MLP, lambda: _batches((64,), 128, args.device), args.mlp_iters, 1.05, None),
        "cnn": (
            SmallCNN,
            lambda: _batches((3, 32, 32), 32, args.device),
            args.cnn_iters,
            1.05,
            None,
        ),
        "resnet50": (
            ResNet50,
            lambda: _batches((3, size, size), args.resnet_batch, args.device, n=4),
            args.resnet_iters,
            1.02,
            amp,
        ),
    }
    results = []
    for key in args.workloads.split(","):
        if key not in workloads:
            parser.error(f"--workloads: unknown workload {key!r}; known: {', '.join(workloads)}")
        build, make_data, iters, target, _PRECISION = workloads[key]
        data = make_data()
        ratio = benchmark(build.__name__, build, data, args.device, iters, args.repeats)
        results.append(f"{build.__name__} <= {target}x (got {ratio:.3f}x)")
        if args.breakdown:
            breakdown(build.__name__, build, data, args.device, iters, args.repeats)
    print("targets: " + ", ".join(results))


if __name__ == "__main__":
    main()
