"""The training loop: hooks, the hook-running trainer base class and the one-step trainers.

:class:`TrainerBase` only runs the loop and the hooks. :class:`SimpleTrainer` adds the step
(data, forward, backward, optimizer) and is the one place that knows about precision,
gradient accumulation and clipping. Everything else a training run does (timing, LR steps,
checkpoints, evaluation, logging) is a :class:`HookBase` in ``engine_lib.engine.hooks``.

Losses stay on the device: :class:`SimpleTrainer` copies them to the host only at a metric
flush (every ``gather_metric_period`` iterations, at the last iteration, and whenever a hook
calls :meth:`TrainerBase.flush_metrics`), which is also when a non-finite loss is reported.
"""

import dataclasses
import logging
import math
import time
import weakref
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine_lib.utils import comm
from engine_lib.utils.errors import ConfigError, UserError
from engine_lib.utils.events import EventStorage

__all__ = ["HookBase", "TrainerBase", "GradClip", "SimpleTrainer", "AMPTrainer"]

logger = logging.getLogger(__name__)

_AUTOCAST_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


class HookBase:
    """Base class of the hooks a :class:`TrainerBase` calls around each step.

    Each method runs on every process. ``self.trainer`` is a weak proxy of the trainer, set by
    :meth:`TrainerBase.register_hooks`; through it a hook reads ``iter``, ``max_iter``,
    ``storage`` and, for a :class:`SimpleTrainer`, ``model``, ``optimizer`` and
    ``data_loader``. A hook with state worth checkpointing overrides :meth:`state_dict` and
    :meth:`load_state_dict`; the trainer's own state then carries it.

    The trainer calls, in this order::

        hook.before_train()
        for iter in range(start_iter, max_iter):
            hook.before_step()
            trainer.run_step()      # calls hook.after_backward() before the optimizer step
            hook.after_step()
        hook.after_train()          # also after an exception
    """

    trainer: "TrainerBase" = None  # type: ignore[assignment]

    def before_train(self) -> None:
        """Called once before the first iteration."""

    def after_train(self) -> None:
        """Called once after the last iteration, or after training stopped on an exception."""

    def before_step(self) -> None:
        """Called before each iteration."""

    def after_backward(self) -> None:
        """Called after the gradients of an iteration are computed, before they are clipped
        (with fp16, they are still multiplied by the grad scaler's scale)."""

    def after_step(self) -> None:
        """Called after each iteration's optimizer step."""

    def state_dict(self) -> Dict[str, Any]:
        """Return the hook's state for a checkpoint; the default hook is stateless.

        A stateful hook returns plain data (numbers, strings, tensors, lists and dicts of
        them) so that checkpoints load with ``torch.load(weights_only=True)``.
        """
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Args:
            state (dict): the hook's saved state.
        """

    def every_n_iters(self, n: int) -> bool:
        """Return True after every ``n``-th iteration (``(iter + 1) % n == 0``); never if n <= 0.

        Args:
            n (int): the period in iterations.
        """
        return n > 0 and (self.trainer.iter + 1) % n == 0

    def is_last_iter(self) -> bool:
        """Return True during the last iteration of training."""
        return self.trainer.iter == self.trainer.max_iter - 1

    def every_n_iters_or_last(self, n: int) -> bool:
        """Return True after every ``n``-th iteration and during the last one.

        Args:
            n (int): the period in iterations (<= 0: only the last iteration).
        """
        return self.every_n_iters(n) or self.is_last_iter()

    def training_completed(self) -> bool:
        """Return True in :meth:`after_train` when every iteration ran (no exception)."""
        return self.trainer.iter >= self.trainer.max_iter

    # Epoch helpers: "before_epoch" / "after_epoch" behaviour without new hook points. They
    # derive the epoch from the iteration, so they stay right after a resume mid-epoch; they
    # need ``trainer.iters_per_epoch`` (set by DefaultTrainer).
    def current_epoch(self) -> int:
        """Return the 0-based epoch of the current iteration."""
        return self.trainer.iter // self.trainer.iters_per_epoch

    def is_epoch_start(self) -> bool:
        """Return True during the first iteration of an epoch (use in ``before_step``)."""
        return self.trainer.iter % self.trainer.iters_per_epoch == 0

    def is_epoch_end(self) -> bool:
        """Return True during the last iteration of an epoch, or of training (a last partial
        epoch also ends); use in ``after_step``."""
        return (self.trainer.iter + 1) % self.trainer.iters_per_epoch == 0 or self.is_last_iter()


def _is_stateful(hook: HookBase) -> bool:
    return type(hook).state_dict is not HookBase.state_dict


_HOOK_POINTS = ("before_train", "after_train", "before_step", "after_backward", "after_step")


def _overrides(hook: HookBase, point: str) -> bool:
    """Whether ``hook`` does something at ``point``: its class or the instance overrides it."""
    return getattr(type(hook), point) is not getattr(HookBase, point) or point in vars(hook)


class TrainerBase:
    """A loop over iterations that calls the registered hooks around :meth:`run_step`.

    Attributes:
        iter (int): the current iteration; after training completed, ``max_iter``.
        start_iter (int): the iteration :meth:`train` started at.
        max_iter (int): the iteration training stops before.
        storage (EventStorage): the metrics of the current :meth:`train` call.
    """

    def __init__(self) -> None:
        self._hooks: List[HookBase] = []
        # For each hook point, the bound methods of the hooks that override it. The loop calls
        # only these: most hooks act at one or two points, and skipping the no-op calls of the
        # others is a measurable share of a short iteration's overhead.
        self._hook_calls: Dict[str, List[Callable[[], None]]] = {p: [] for p in _HOOK_POINTS}
        self.iter = 0
        self.start_iter = 0
        self.max_iter = 0
        self.storage: Optional[EventStorage] = None
        self._completed = False

    @property
    def hooks(self) -> Tuple[HookBase, ...]:
        """tuple[HookBase]: the registered hooks, in the order they are called."""
        return tuple(self._hooks)

    def register_hooks(self, hooks: Sequence[Optional[HookBase]]) -> None:
        """Append hooks; they are called in the order registered. ``None`` entries are dropped.

        Args:
            hooks (list[HookBase or None]): the hooks.

        Raises:
            TypeError: if an entry is neither a :class:`HookBase` nor None.
        """
        hooks = [h for h in hooks if h is not None]
        for h in hooks:
            if not isinstance(h, HookBase):
                raise TypeError(f"register_hooks() takes HookBase objects, got {h!r}")
            # A weak reference: the trainer owns its hooks, not the other way round, so that
            # dropping the trainer frees it (and its model) without waiting for the GC.
            h.trainer = weakref.proxy(self)
        self._hooks.extend(hooks)
        self._hook_calls = {
            p: [getattr(h, p) for h in self._hooks if _overrides(h, p)] for p in _HOOK_POINTS
        }

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run iterations ``[start_iter, max_iter)``.

        Args:
            start_iter (int): the first iteration (0, or the one after a checkpoint's).
            max_iter (int): the iteration to stop before.
        """
        logger.info("Starting training from iteration %d", start_iter)
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        self._completed = False
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                for self.iter in range(start_iter, max_iter):
                    self.before_step()
                    self.run_step()
                    self.after_step()
                # iter == max_iter tells after_train hooks that every iteration ran.
                self.iter = max_iter
                self._completed = True
            except UserError as e:
                # Bad input met during training (e.g. an unreadable image): the entry point
                # prints it on one line, which a traceback in the log would only bury.
                logger.error("Training stopped at iteration %d: %s", self.iter, e)
                raise
            except Exception:
                logger.exception("Exception during training:")
                raise
            finally:
                self.after_train()

    def before_train(self) -> None:
        """Call every hook's ``before_train``."""
        for call in self._hook_calls["before_train"]:
            call()

    def after_train(self) -> None:
        """Call every hook's ``after_train``, with the storage at the trainer's iteration."""
        self.storage.iter = self.iter
        for call in self._hook_calls["after_train"]:
            call()

    def before_step(self) -> None:
        """Set the storage's iteration and call every hook's ``before_step``."""
        self.storage.iter = self.iter
        for call in self._hook_calls["before_step"]:
            call()

    def after_backward(self) -> None:
        """Call every hook's ``after_backward`` (``run_step`` calls it)."""
        for call in self._hook_calls["after_backward"]:
            call()

    def after_step(self) -> None:
        """Call every hook's ``after_step``, then advance the storage's iteration."""
        for call in self._hook_calls["after_step"]:
            call()
        self.storage.step()

    def run_step(self) -> None:
        """Run one iteration; subclasses implement it."""
        raise NotImplementedError

    def flush_metrics(self) -> None:
        """Put metrics buffered on the device into :attr:`storage`; a no-op here.

        Hooks call it before they save or evaluate. In a distributed run it is collective:
        every rank must call it at the same iteration.
        """

    def _keyed_hooks(self) -> List[Tuple[str, HookBase]]:
        """The stateful hooks with their state keys: the class's qualified name, then
        ``Name#1``, ``Name#2``... for later hooks of the same class, in registration order."""
        seen: Dict[str, int] = {}
        keyed = []
        for h in self._hooks:
            name = type(h).__qualname__
            count = seen.get(name, 0)
            seen[name] = count + 1
            if _is_stateful(h):
                keyed.append((name if count == 0 else f"{name}#{count}", h))
        return keyed

    def state_dict(self) -> Dict[str, Any]:
        """Return the iteration and every stateful hook's state.

        Returns:
            dict: ``{"iteration": last completed iteration, "hooks": {key: state}}``; a
            resumed run starts at ``iteration + 1``. (Taken in ``after_step``, that is the
            current iteration; after training, ``max_iter - 1``.)
        """
        return {
            "iteration": self.iter - 1 if self._completed else self.iter,
            "hooks": {key: h.state_dict() for key, h in self._keyed_hooks()},
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: the iteration and the state of each registered hook.

        Hooks without saved state keep theirs, and saved states without a registered hook
        are ignored; both are logged as warnings.

        Args:
            state (dict): as returned by :meth:`state_dict`.
        """
        self.iter = int(state["iteration"])
        self._completed = False
        saved = dict(state.get("hooks", {}))
        for key, h in self._keyed_hooks():
            if key in saved:
                h.load_state_dict(saved.pop(key))
            else:
                logger.warning("The checkpoint has no state for hook %s; it starts afresh.", key)
        for key in saved:
            logger.warning("The checkpoint has state for hook %s, which is not registered.", key)


@dataclasses.dataclass(frozen=True)
class GradClip:
    """How :class:`SimpleTrainer` clips gradients before each optimizer step.

    Args:
        clip_type (str): ``"norm"`` clips the global norm of all gradients together,
            ``"value"`` clamps each element. Default: ``"norm"``.
        clip_value (float): the maximum norm or absolute value. Default: 1.0.
        norm_type (float): the p of the p-norm for ``"norm"`` (``float("inf")`` or "inf" for
            the max norm). Default: 2.0.

    Raises:
        ConfigError: for an unknown ``clip_type`` or a non-positive ``clip_value``.
    """

    clip_type: str = "norm"
    clip_value: float = 1.0
    norm_type: float = 2.0

    def __post_init__(self) -> None:
        if self.clip_type not in ("norm", "value"):
            raise ConfigError(
                f"GradClip.clip_type must be 'norm' or 'value', got {self.clip_type!r}"
            )
        if not self.clip_value > 0:
            raise ConfigError(f"GradClip.clip_value must be positive, got {self.clip_value!r}")
        # frozen dataclass: object.__setattr__ is the documented way to normalise a field.
        object.__setattr__(self, "norm_type", float(self.norm_type))

    def apply(self, parameters: List[torch.Tensor]) -> None:
        """Clip the gradients of ``parameters`` in place, without a host sync.

        Args:
            parameters (list[Tensor]): the parameters; those without a gradient are skipped.
        """
        if self.clip_type == "norm":
            nn.utils.clip_grad_norm_(parameters, self.clip_value, self.norm_type)
        else:
            nn.utils.clip_grad_value_(parameters, self.clip_value)


class _DeviceMetrics:
    """Per-iteration losses held on the device until a flush copies them to the host at once.

    Each iteration only keeps references to its detached loss tensors; a flush stacks them,
    reduces them over ranks (one collective) and copies them to the host (one copy), however
    many iterations it covers. Each value is put into the storage at its own iteration, so the
    histories are the same as if they had been put at every step.
    """

    def __init__(self) -> None:
        # (iteration, loss names, detached losses in the same order, data time in seconds)
        self._pending: List[Tuple[int, Tuple[str, ...], List[torch.Tensor], float]] = []

    def append(
        self, iteration: int, names: Tuple[str, ...], losses: List[torch.Tensor], data_time: float
    ) -> None:
        self._pending.append((iteration, names, losses, data_time))

    def flush(self, storage: EventStorage) -> None:
        """Put the pending losses (and ``total_loss``, ``data_time``) into ``storage``.

        Raises:
            FloatingPointError: if a loss is infinite or NaN, naming the earliest such
                iteration; raised on every rank because the values are reduced first.
        """
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        losses, data_times = _to_host(pending)
        offset, first_bad = 0, None
        for (iteration, names, _, _), data_time in zip(pending, data_times):
            values = losses[offset : offset + len(names)]
            offset += len(names)
            loss_dict = dict(zip(names, values))
            total = sum(values)
            # As in detectron2: a total only when there is something to add up.
            scalars = {"total_loss": total, **loss_dict} if len(names) > 1 else dict(loss_dict)
            scalars["data_time"] = data_time
            for name, value in scalars.items():
                storage.put_scalar(name, value, cur_iter=iteration)
            if first_bad is None and not math.isfinite(total):
                first_bad = (iteration, loss_dict)
        if first_bad is not None:
            raise FloatingPointError(
                f"Loss became infinite or NaN at iteration={first_bad[0]}!\n"
                f"loss_dict = {first_bad[1]}"
            )


def _to_host(pending: List[Tuple]) -> Tuple[List[float], List[float]]:
    """All pending losses (averaged over ranks) and data times (max over ranks) as floats."""
    tensors = [t for _, _, step_losses, _ in pending for t in step_losses]
    if any(t.dtype != torch.float32 for t in tensors):
        # bf16/fp16 losses join the float32 ones (only then: each float() is a dispatch).
        tensors = [t.float() for t in tensors]
    losses = torch.stack(tensors)
    data_times = [data_time for *_, data_time in pending]
    world_size = comm.get_world_size()
    if world_size == 1:
        return losses.tolist(), data_times
    # One all_gather of [losses, data times] serves both reductions: the mean loss and the
    # slowest rank's data time, which is the one that holds the others back.
    n = losses.numel()
    packed = torch.cat([losses, torch.tensor(data_times, device=losses.device)])
    gathered = [torch.empty_like(packed) for _ in range(world_size)]
    dist.all_gather(gathered, packed)
    stacked = torch.stack(gathered)
    reduced = torch.cat([stacked[:, :n].mean(dim=0), stacked[:, n:].amax(dim=0)]).tolist()
    return reduced[:n], reduced[n:]


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
        grad_accum_steps (int): micro-batches per optimizer step; each loss is divided by
            it. Default: 1.
        clip_grad (GradClip, optional): gradient clipping; None: no clipping.
        precision (str): ``"fp32"``, ``"fp16"`` (autocast with a grad scaler) or ``"bf16"``
            (autocast, no scaler; also on CPU). Default: ``"fp32"``.
        grad_scaler (torch.amp.GradScaler, optional): the scaler for fp16; one is created
            for the model's device when None.

    Raises:
        ConfigError: for an unknown precision, a non-positive period or step count, or a
            grad scaler given without fp16.
        TypeError: if ``clip_grad`` is not a :class:`GradClip`.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable,
        optimizer: torch.optim.Optimizer,
        *,
        gather_metric_period: int = 1,
        zero_grad_before_forward: bool = False,
        grad_accum_steps: int = 1,
        clip_grad: Optional[GradClip] = None,
        precision: str = "fp32",
        grad_scaler: Optional[torch.amp.GradScaler] = None,
    ) -> None:
        super().__init__()
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
        self.grad_accum_steps = grad_accum_steps
        self.clip_grad = clip_grad
        self.precision = precision
        self._autocast_dtype = _AUTOCAST_DTYPES[precision]
        self._device_type = _model_device_type(model)
        if precision == "fp16" and grad_scaler is None:
            grad_scaler = torch.amp.GradScaler(self._device_type)
        self.grad_scaler = grad_scaler
        self.samples_consumed = 0
        self._metrics = _DeviceMetrics()

    @property
    def _data_loader_iter(self) -> Iterator:
        # Created on first use so that a resume can reposition the sampler before it starts.
        if self._data_loader_iter_obj is None:
            self._data_loader_iter_obj = iter(self.data_loader)
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
            self.data_loader = None
            data_loader = data_loader()
        self.data_loader = data_loader

    def before_train(self) -> None:
        # Losses left buffered by a train() that ended in an exception belong to no storage.
        self._metrics = _DeviceMetrics()
        super().before_train()

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
        self._metrics.append(self.iter, names, losses, data_time)
        if (self.iter + 1) % self.gather_metric_period == 0 or self.iter == self.max_iter - 1:
            self.flush_metrics()

    def _forward_backward(self, is_last: bool) -> Tuple[Tuple[str, ...], List[torch.Tensor], float]:
        """One micro-batch; returns the loss names, the detached losses and the data time."""
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        self.samples_consumed += len(data)
        # DDP all-reduces gradients in backward; only the last micro-batch needs it.
        if not is_last and isinstance(self.model, DistributedDataParallel):
            with self.model.no_sync():
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

        Raises:
            FloatingPointError: if a buffered loss is infinite or NaN (on every rank).
        """
        self._metrics.flush(self.storage)

    def state_dict(self) -> Dict[str, Any]:
        """Return :meth:`TrainerBase.state_dict` plus ``samples_consumed`` and the grad scaler.

        Returns:
            dict: with ``"samples_consumed"`` (the number of samples pulled from the data
            loader, for repositioning a resumable sampler) and, with fp16, ``"grad_scaler"``.
        """
        state = super().state_dict()
        state["samples_consumed"] = self.samples_consumed
        if self.grad_scaler is not None:
            state["grad_scaler"] = self.grad_scaler.state_dict()
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`.

        Args:
            state (dict): as returned by :meth:`state_dict`.
        """
        super().load_state_dict(state)
        self.samples_consumed = int(state.get("samples_consumed", 0))
        if self.grad_scaler is not None:
            if "grad_scaler" in state:
                self.grad_scaler.load_state_dict(state["grad_scaler"])
            else:
                logger.warning("The checkpoint has no grad scaler state; the scale starts afresh.")


class AMPTrainer(SimpleTrainer):
    """A :class:`SimpleTrainer` with mixed precision on by default (fp16 with a grad scaler).

    Only the defaults differ: the step is :meth:`SimpleTrainer.run_step`.

    Args:
        model (nn.Module): as in :class:`SimpleTrainer`.
        data_loader (Iterable): as in :class:`SimpleTrainer`.
        optimizer (torch.optim.Optimizer): as in :class:`SimpleTrainer`.
        precision (str): ``"fp16"`` or ``"bf16"``. Default: ``"fp16"``.
        grad_scaler (torch.amp.GradScaler, optional): as in :class:`SimpleTrainer`.
        **kwargs: the other keyword arguments of :class:`SimpleTrainer`.

    Raises:
        ConfigError: if ``precision`` is ``"fp32"``.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable,
        optimizer: torch.optim.Optimizer,
        *,
        precision: str = "fp16",
        grad_scaler: Optional[torch.amp.GradScaler] = None,
        **kwargs: Any,
    ) -> None:
        if precision == "fp32":
            raise ConfigError("AMPTrainer needs precision 'fp16' or 'bf16'; use SimpleTrainer")
        super().__init__(
            model, data_loader, optimizer, precision=precision, grad_scaler=grad_scaler, **kwargs
        )
