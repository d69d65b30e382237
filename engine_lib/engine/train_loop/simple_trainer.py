"""The one-step trainers: :class:`SimpleTrainer` and its mixed-precision variant `AMPTrainer`."""

import logging
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import torch
from torch import nn

from engine_lib.data.prefetch import DevicePrefetcher
from engine_lib.utils.errors import ConfigError
from engine_lib.utils.events import BackgroundRunner
from engine_lib.utils.periodic import every_n_iters, every_n_iters_or_last

from .device_metrics import DeviceMetrics
from .grad_clip import GradClip
from .grad_sync import skip_grad_sync
from .startup import log_start_up_time
from .trainer_base import TrainerBase

__all__ = ["SimpleTrainer", "AMPTrainer"]

logger = logging.getLogger(__name__)

_AUTOCAST_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
# detectron2's AMPTrainer takes a torch dtype as its precision (names, also looked up here,
# pass through).
_DTYPE_NAMES: Dict[Union[str, torch.dtype], str] = {
    torch.float32: "fp32",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
}


def _model_device_type(model: nn.Module) -> str:
    param = next(model.parameters(), None)
    return param.device.type if param is not None else "cpu"


class SimpleTrainer(TrainerBase):
    """A trainer for the common case: one model, one optimizer, losses returned by the model.

    Each iteration pulls ``grad_accum_steps`` batches from ``data_loader``, runs
    ``model(batch)`` (a dict of scalar losses, or a single loss tensor) under the chosen
    precision, back-propagates their sum, then clips the gradients and steps the optimizer
    once. Iterations count optimizer steps.

    The losses are not copied to the host at every step: see :meth:`flush_metrics`.

    Args:
        model (nn.Module): the model, in training mode; may be wrapped in DDP.
        data_loader (Iterable): yields batches, e.g. lists of dicts; iterated forever.
        optimizer (torch.optim.Optimizer): the optimizer of the model's parameters.
        gather_metric_period (int): copy losses to the host (and check they are finite)
            every this many iterations; use the writer period (``DefaultTrainer`` passes
            its ``SOLVER.LOG_PERIOD``). Default: 1.
        zero_grad_before_forward (bool): clear the gradients at the start of each step, so
            that ``after_step`` hooks still see them; by default they are cleared right after
            the optimizer step, which frees their memory sooner. Default: False.
        async_write_metrics (bool): do the host copy of gathered losses and their puts into
            the storage on a background thread (the cross-rank reduction stays on the
            training thread). A non-finite loss is then raised at the next gather, at the
            last iteration or at :meth:`flush_metrics` (before any checkpoint). Default: False.
        gather_all_iterations (bool): record every iteration's losses at each gather (the
            histories hold one value per iteration); False records only the losses of every
            ``gather_metric_period``-th iteration, as detectron2 does. Default: True.
        grad_accum_steps (int): micro-batches per optimizer step; each loss is divided by
            it. Default: 1.
        clip_grad (GradClip, optional): gradient clipping; None: no clipping.
        precision (str): ``"fp32"``, ``"fp16"`` (autocast with a grad scaler) or ``"bf16"``
            (autocast, no scaler; also on CPU). Default: ``"fp32"``.
        grad_scaler (torch.amp.GradScaler, optional): the scaler for fp16; one is created
            for the model's device when None.
        log_grad_scaler (bool): put the grad scaler's scale as ``"[metric]grad_scaler"`` at
            each gather (fp16 only). Default: False.
        defer_metric_read (bool, optional): at the periodic gathers, do not wait for the
            device: the losses are copied to pinned host memory without blocking and put
            into the storage at the next gather (the writer thread reads them for its
            writes at once), so the GPU's queue never drains; :meth:`flush_metrics` (before
            a checkpoint or an evaluation) and the last iteration still read them at once,
            and raise for a non-finite loss. None: on when the model is on CUDA (it changes
            nothing on the CPU). Default: None.
        prefetch_device (str or torch.device, optional): draw each batch one step ahead and
            copy it to this device on a side stream while the current step runs
            (:class:`~engine_lib.data.prefetch.DevicePrefetcher`; give the loader
            ``pin_memory=True``). :attr:`samples_consumed` still counts the batches the
            steps received, so resume stays exact. None: batches go to the model as the
            loader yields them. Default: None.
        optimizer_in_state_dict (bool): include the optimizer's state in
            :meth:`state_dict`, as detectron2 does, for a checkpointer given only the trainer;
            by default a checkpointer is given ``optimizer=`` too (``DefaultTrainer`` does),
            which avoids saving it twice. Default: False.

    Raises:
        ConfigError: for an unknown precision, a non-positive period or step count, or a
            grad scaler given without fp16.
        TypeError: if ``clip_grad`` is not a :class:`GradClip`.
    """

    # Over 60 lines for its argument list alone: detectron2's positional arguments, kept so
    # that ported code runs unchanged, and ours after them as keywords.
    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable,
        optimizer: torch.optim.Optimizer,
        gather_metric_period: int = 1,
        zero_grad_before_forward: bool = False,
        async_write_metrics: bool = False,
        *,
        gather_all_iterations: bool = True,
        grad_accum_steps: int = 1,
        clip_grad: Optional[GradClip] = None,
        precision: Union[str, torch.dtype] = "fp32",
        grad_scaler: Optional[torch.amp.GradScaler] = None,
        log_grad_scaler: bool = False,
        defer_metric_read: Optional[bool] = None,
        prefetch_device: Optional[Union[str, torch.device]] = None,
        optimizer_in_state_dict: bool = False,
    ) -> None:
        super().__init__()
        precision = _DTYPE_NAMES.get(precision, precision)
        if precision not in _AUTOCAST_DTYPES:
            raise ConfigError(
                f"precision must be one of {sorted(_AUTOCAST_DTYPES)}, got {precision!r}"
            )
        for name, value in (
            ("gather_metric_period", gather_metric_period),
            ("grad_accum_steps", grad_accum_steps),
        ):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if clip_grad is not None and not isinstance(clip_grad, GradClip):
            raise TypeError(
                f"clip_grad must be a GradClip or None, got {type(clip_grad).__name__}; "
                "e.g. clip_grad=GradClip(clip_type='norm', clip_value=1.0)"
            )
        if grad_scaler is not None and precision != "fp16":
            raise ConfigError(
                f"A grad_scaler is only used with precision='fp16', not {precision!r}"
            )
        model.train()
        self.model = model
        self.data_loader = data_loader
        self._data_loader_iter_obj: Optional[Iterator] = None
        self.optimizer = optimizer
        self.gather_metric_period = gather_metric_period
        self.zero_grad_before_forward = zero_grad_before_forward
        self.async_write_metrics = async_write_metrics
        self.gather_all_iterations = gather_all_iterations
        self.log_grad_scaler = log_grad_scaler
        self.optimizer_in_state_dict = optimizer_in_state_dict
        self.grad_accum_steps = grad_accum_steps
        self.clip_grad = clip_grad
        self.precision = precision
        self._autocast_dtype = _AUTOCAST_DTYPES[precision]
        self._device_type = _model_device_type(model)
        if defer_metric_read is None:
            defer_metric_read = self._device_type == "cuda"
        self.defer_metric_read = defer_metric_read
        self.prefetch_device = prefetch_device
        if precision == "fp16" and grad_scaler is None:
            grad_scaler = torch.amp.GradScaler(self._device_type)
        self.grad_scaler = grad_scaler
        self.samples_consumed = 0
        self._metrics = DeviceMetrics()

    @property
    def _data_loader_iter(self) -> Iterator:
        # Created on first use so that a resume can reposition the sampler before it starts.
        if self._data_loader_iter_obj is None:
            loader = self.data_loader
            if self.prefetch_device is not None:
                loader = DevicePrefetcher(loader, self.prefetch_device)
            self._data_loader_iter_obj = iter(loader)
        return self._data_loader_iter_obj

    def reset_data_loader(self, data_loader: Union[Iterable, Callable[[], Iterable]]) -> None:
        """Replace the data loader; the next step starts a fresh iterator over it.

        Args:
            data_loader (Iterable or callable): the new loader (it may be the current one,
                e.g. after its sampler was repositioned), or a function without arguments
                that builds it, called after the old loader is released (as in detectron2).
        """
        self._data_loader_iter_obj = None
        if callable(data_loader) and not isinstance(data_loader, Iterable):
            self.data_loader = None  # type: ignore[assignment]  # released before the new one
            data_loader = data_loader()
        self.data_loader = data_loader

    def before_train(self) -> None:
        # Losses left buffered by a train() that ended in an exception belong to no storage.
        self._metrics = DeviceMetrics(BackgroundRunner() if self.async_write_metrics else None)
        super().before_train()
        log_start_up_time(self.start_iter)

    def after_train(self) -> None:
        # Metrics put from the background thread must be in the storage before the hooks'
        # after_train (the writers' last write); the thread then stops.
        try:
            self._metrics.flush(self.storage, wait=True)
        finally:
            self._metrics.close()
            super().after_train()

    def run_step(self) -> None:
        """Run one iteration: forward/backward over the micro-batches, then one optimizer step."""
        assert self.model.training, "[SimpleTrainer] the model was switched to eval mode!"
        if self.zero_grad_before_forward:
            self.optimizer.zero_grad(set_to_none=True)
        steps = self.grad_accum_steps
        names, losses, data_time = self._forward_backward(is_last=steps == 1)
        for micro_step in range(1, steps):
            _, more, seconds = self._forward_backward(is_last=micro_step == steps - 1)
            losses = [a + b for a, b in zip(losses, more)]
            data_time += seconds
        if steps > 1:
            losses = [loss / steps for loss in losses]  # report the mean over micro-batches
        self.after_backward()
        self._optimizer_step()
        if not self.zero_grad_before_forward:
            self.optimizer.zero_grad(set_to_none=True)
        period = self.gather_metric_period
        if self.gather_all_iterations or every_n_iters(self.iter, period):
            self._metrics.append(self.iter, names, losses, data_time)
        if every_n_iters_or_last(self.iter, period, self.max_iter):
            self._gather_metrics()

    def _gather_metrics(self) -> None:
        """The periodic gather: like :meth:`flush_metrics`, without waiting for a background
        flush, except at the last iteration."""
        if self.log_grad_scaler and self.grad_scaler is not None:
            self.storage.put_scalar("[metric]grad_scaler", self.grad_scaler.get_scale())
        last = self.iter == self.max_iter - 1
        self._metrics.flush(self.storage, wait=last, defer=self.defer_metric_read and not last)

    def _forward_backward(self, is_last: bool) -> Tuple[Tuple[str, ...], List[torch.Tensor], float]:
        """One micro-batch; returns the loss names, the detached losses and the data time."""
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        self.samples_consumed += len(data)
        # DDP and FSDP reduce gradients in backward; only the last micro-batch needs it.
        if not is_last:
            with skip_grad_sync(self.model):
                names, losses = self._losses_backward(data)
        else:
            names, losses = self._losses_backward(data)
        return names, losses, data_time

    def _losses_backward(self, data: Any) -> Tuple[Tuple[str, ...], List[torch.Tensor]]:
        """Forward ``data``, back-propagate the (scaled) sum of the losses; return them detached."""
        # Branches, not a null context manager, on the fp32 path: it runs every micro-batch.
        if self._autocast_dtype is None:
            loss_dict = self.model(data)
        else:
            with torch.autocast(device_type=self._device_type, dtype=self._autocast_dtype):
                loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        if not loss_dict:
            raise ValueError("The model returned no losses in training mode.")
        names = tuple(sorted(loss_dict)) if len(loss_dict) > 1 else tuple(loss_dict)
        losses = loss_dict[names[0]]
        for name in names[1:]:
            losses = losses + loss_dict[name]
        if self.grad_accum_steps > 1:
            losses = losses / self.grad_accum_steps
        if self.grad_scaler is not None:
            losses = self.grad_scaler.scale(losses)
        losses.backward()
        return names, [loss_dict[n].detach() for n in names]

    def _optimizer_step(self) -> None:
        scaler = self.grad_scaler
        if self.clip_grad is not None:
            if scaler is not None:
                scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            self.clip_grad.apply(params)
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()

    def flush_metrics(self) -> None:
        """Copy the losses buffered since the last flush to the host and into :attr:`storage`.

        Each loss (and ``total_loss`` and ``data_time``) is put at the iteration it belongs
        to. Called by the trainer every ``gather_metric_period`` iterations and at the last
        one, and by hooks before they save a checkpoint or evaluate. Idempotent: a second call
        with nothing buffered does nothing. Collective in a distributed run: every rank must
        call it at the same iteration.

        Also waits for the writes that background writers (``PeriodicWriter``) queued, so
        that what they write (e.g. ``metrics.json``) is complete up to the last write.

        Raises:
            FloatingPointError: if a buffered loss is infinite or NaN (on every rank).
            Exception: the error of a background write that failed.
        """
        self._metrics.flush(self.storage)
        self.storage.flush()

    def state_dict(self) -> Dict[str, Any]:
        """Return :meth:`TrainerBase.state_dict` plus ``samples_consumed`` and the grad scaler.

        Returns:
            dict: with ``"samples_consumed"`` (the number of samples pulled from the data
            loader, for repositioning a resumable sampler), with fp16 ``"grad_scaler"``, and
            with ``optimizer_in_state_dict`` ``"optimizer"``.
        """
        state = super().state_dict()
        state["samples_consumed"] = self.samples_consumed
        if self.grad_scaler is not None:
            state["grad_scaler"] = self.grad_scaler.state_dict()
        if self.optimizer_in_state_dict:
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`.

        Args:
            state (dict): as returned by :meth:`state_dict`.
        """
        super().load_state_dict(state)
        self.samples_consumed = int(state.get("samples_consumed", 0))
        if "optimizer" in state:  # saved with optimizer_in_state_dict (or by detectron2)
            self.optimizer.load_state_dict(state["optimizer"])
        if self.grad_scaler is not None:
            if "grad_scaler" in state:
                self.grad_scaler.load_state_dict(state["grad_scaler"])
            else:
                logger.warning("The checkpoint has no grad scaler state; the scale starts afresh.")


class AMPTrainer(SimpleTrainer):
    """A :class:`SimpleTrainer` with mixed precision on by default (fp16 with a grad scaler).

    Only the defaults differ: the step is :meth:`SimpleTrainer.run_step`. The positional
    arguments are detectron2's.

    Args:
        model (nn.Module): as in :class:`SimpleTrainer`.
        data_loader (Iterable): as in :class:`SimpleTrainer`.
        optimizer (torch.optim.Optimizer): as in :class:`SimpleTrainer`.
        gather_metric_period (int): as in :class:`SimpleTrainer`. Default: 1.
        zero_grad_before_forward (bool): as in :class:`SimpleTrainer`. Default: False.
        grad_scaler (torch.amp.GradScaler, optional): as in :class:`SimpleTrainer`.
        precision (str or torch.dtype): ``"fp16"`` / ``torch.float16`` or ``"bf16"`` /
            ``torch.bfloat16``. Default: ``"fp16"``.
        log_grad_scaler (bool): as in :class:`SimpleTrainer`. Default: False.
        async_write_metrics (bool): as in :class:`SimpleTrainer`. Default: False.
        **kwargs: the other keyword arguments of :class:`SimpleTrainer`.

    Raises:
        ConfigError: if ``precision`` is fp32.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable,
        optimizer: torch.optim.Optimizer,
        gather_metric_period: int = 1,
        zero_grad_before_forward: bool = False,
        grad_scaler: Optional[torch.amp.GradScaler] = None,
        precision: Union[str, torch.dtype] = "fp16",
        log_grad_scaler: bool = False,
        async_write_metrics: bool = False,
        **kwargs: Any,
    ) -> None:
        if _DTYPE_NAMES.get(precision, precision) == "fp32":
            raise ConfigError("AMPTrainer needs precision 'fp16' or 'bf16'; use SimpleTrainer")
        super().__init__(
            model,
            data_loader,
            optimizer,
            gather_metric_period,
            zero_grad_before_forward,
            async_write_metrics,
            precision=precision,
            grad_scaler=grad_scaler,
            log_grad_scaler=log_grad_scaler,
            **kwargs,
        )
