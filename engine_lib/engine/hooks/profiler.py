"""Profile chosen iterations with the PyTorch profiler."""

import logging
import os
import tempfile
import warnings
from typing import Callable, Iterable, Optional

import torch

from engine_lib.utils import comm
from engine_lib.utils.file_io import PathManager

from ..train_loop import HookBase

__all__ = ["AutogradProfiler", "TorchProfiler"]

logger = logging.getLogger(__name__)


class TorchProfiler(HookBase):
    """Profile the iterations ``enable_predicate(trainer)`` selects; write a trace for each.

    Each selected iteration (hooks' ``before_step``/``after_step`` included) is profiled
    with ``torch.profiler`` and written to ``output_dir`` as a Chrome trace
    (``profiler-trace-iter<iter>[-rank<r>].json``, open it in chrome://tracing or Perfetto),
    or with ``save_tensorboard`` as TensorBoard profiler files under
    ``output_dir/profiler-tensorboard-iter<iter>``.

    Args:
        enable_predicate (callable): takes the trainer, returns whether to profile the
            coming iteration, e.g. ``lambda t: t.iter in (10, 11)``.
        output_dir (str): where traces are written (any iopath path for Chrome traces).
        activities (list[torch.profiler.ProfilerActivity], optional): default: CPU, and CUDA
            when available.
        save_tensorboard (bool): write TensorBoard profiler files instead of a Chrome trace
            (needs a local ``output_dir``). Default: False.
    """

    def __init__(
        self,
        enable_predicate: Callable[..., bool],
        output_dir: str,
        *,
        activities: Optional[Iterable[torch.profiler.ProfilerActivity]] = None,
        save_tensorboard: bool = False,
    ) -> None:
        self._enable_predicate = enable_predicate
        self._output_dir = output_dir
        if activities is None:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
        self._activities = list(activities)
        self._save_tensorboard = save_tensorboard
        self._profiler: Optional[torch.profiler.profile] = None

    def before_step(self) -> None:
        if not self._enable_predicate(self.trainer):
            return
        on_trace_ready = None
        if self._save_tensorboard:
            on_trace_ready = torch.profiler.tensorboard_trace_handler(
                os.path.join(self._output_dir, f"profiler-tensorboard-iter{self.trainer.iter}"),
                worker_name=f"rank{comm.get_rank()}",
            )
        self._profiler = torch.profiler.profile(
            activities=self._activities,
            on_trace_ready=on_trace_ready,
            record_shapes=True,
            profile_memory=True,
        )
        self._profiler.start()

    def after_step(self) -> None:
        if self._profiler is None:
            return
        profiler, self._profiler = self._profiler, None
        profiler.stop()
        if self._save_tensorboard:
            return
        suffix = f"-rank{comm.get_rank()}" if comm.get_world_size() > 1 else ""
        name = f"profiler-trace-iter{self.trainer.iter}{suffix}.json"
        path = os.path.join(self._output_dir, name)
        if "://" in path:
            # A remote store cannot be written in place: export locally, then copy.
            with tempfile.TemporaryDirectory() as tmp:
                local_path = os.path.join(tmp, name)
                profiler.export_chrome_trace(local_path)
                PathManager.copy_from_local(local_path, path, overwrite=True)
        else:
            os.makedirs(self._output_dir, exist_ok=True)
            profiler.export_chrome_trace(path)
        logger.info("Wrote the profile of iteration %d to %s", self.trainer.iter, path)

    def after_train(self) -> None:
        # Training stopped during a profiled iteration: end the profiler, drop its trace.
        if self._profiler is not None:
            self._profiler.stop()
            self._profiler = None


class AutogradProfiler(TorchProfiler):
    """detectron2's older profiler hook, kept so ported code runs; use :class:`TorchProfiler`.

    Same behaviour as :class:`TorchProfiler` writing Chrome traces, with detectron2's
    arguments.

    Args:
        enable_predicate (callable): as in :class:`TorchProfiler`.
        output_dir (str): as in :class:`TorchProfiler`.
        use_cuda (bool): also profile CUDA kernels. Default: False.
    """

    def __init__(
        self, enable_predicate: Callable[..., bool], output_dir: str, *, use_cuda: bool = False
    ) -> None:
        warnings.warn(
            "AutogradProfiler is deprecated (as in detectron2); use TorchProfiler.",
            DeprecationWarning,
            stacklevel=2,
        )
        activities = [torch.profiler.ProfilerActivity.CPU]
        if use_cuda:
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        super().__init__(enable_predicate, output_dir, activities=activities)
