"""The loop over iterations that calls hooks, and the trainer state that checkpoints carry."""

import logging
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from engine_lib.utils.errors import UserError
from engine_lib.utils.events import EventStorage

from .hook_base import HookBase

__all__ = ["TrainerBase"]

logger = logging.getLogger(__name__)


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
        iters_per_epoch (int): iterations per pass over the training data, for the epoch
            helpers of :class:`HookBase`; 0 (the default) means unknown: a subclass or the
            user sets it (``DefaultTrainer`` does, from the data set's size).
    """

    # A class attribute, not set in __init__: a subclass may set it before calling
    # super().__init__() (DefaultTrainer does) without it being reset.
    iters_per_epoch: int = 0

    def __init__(self) -> None:
        self._hooks: List[HookBase] = []
        # For each hook point, the bound methods of the hooks that override it. The loop calls
        # only these: most hooks act at one or two points, and skipping the no-op calls of the
        # others is a measurable share of a short iteration's overhead.
        self._hook_calls: Dict[str, List[Callable[[], None]]] = {p: [] for p in _HOOK_POINTS}
        self.iter = 0
        self.start_iter = 0
        self.max_iter = 0
        # None outside train(); typed as set, since hooks and run_step only run inside it.
        self.storage: EventStorage = None  # type: ignore[assignment]
        self._completed = False
        self._stop_reason: Optional[str] = None

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
        kept = [h for h in hooks if h is not None]
        for h in kept:
            if not isinstance(h, HookBase):
                raise TypeError(f"register_hooks() takes HookBase objects, got {h!r}")
            # A weak reference: the trainer owns its hooks, not the other way round, so that
            # dropping the trainer frees it (and its model) without waiting for the GC.
            h.trainer = weakref.proxy(self)
        self._hooks.extend(kept)
        self._hook_calls = {
            p: [getattr(h, p) for h in self._hooks if _overrides(h, p)] for p in _HOOK_POINTS
        }

    @property
    def stop_reason(self) -> Optional[str]:
        """str or None: why training ended early (:meth:`request_stop`), else None."""
        return self._stop_reason

    def request_stop(self, reason: str) -> None:
        """End training after the current iteration (early stopping), for the given reason.

        The loop finishes the iteration (every hook's ``after_step``), then ``after_train``
        runs with ``trainer.iter`` one past the last iteration done and :attr:`stop_reason`
        set: ``training_completed()`` is False (nothing that belongs to the end of a full
        schedule runs), and a hook that acts on an early end reads ``stop_reason``. The
        reason is part of :meth:`state_dict`, so that a resumed run does not train further.
        In a distributed run every rank must request it at the same iteration.

        Args:
            reason (str): logged, and kept in the checkpoints.
        """
        if self._stop_reason is None:
            self._stop_reason = reason

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run iterations ``[start_iter, max_iter)``, or fewer if a hook calls
        :meth:`request_stop`.

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
                # A run resumed from the checkpoint of an early stop has nothing left to run.
                if self._stop_reason is None:
                    for self.iter in range(start_iter, max_iter):
                        self.before_step()
                        self.run_step()
                        self.after_step()
                        if self._stop_reason is not None:
                            break
                if self._stop_reason is not None:
                    # One past the last iteration done, as after a complete run.
                    self.iter = max(self.iter + 1, start_iter)
                    logger.info(
                        "Training stopped early after iteration %d of %d: %s",
                        self.iter - 1,
                        max_iter,
                        self._stop_reason,
                    )
                else:
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
        """Put metrics buffered on the device into :attr:`storage` (nothing to put here), and
        wait until background writers wrote what they took from it.

        Hooks call it before they save or evaluate. In a distributed run it is collective:
        every rank must call it at the same iteration.
        """
        if self.storage is not None:
            self.storage.flush()

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
            current iteration; after training, ``max_iter - 1``.) After :meth:`request_stop`
            also ``"stop_reason"``.
        """
        state = {
            "iteration": self.iter - 1 if self._completed else self.iter,
            "hooks": {key: h.state_dict() for key, h in self._keyed_hooks()},
        }
        if self._stop_reason is not None:
            state["stop_reason"] = self._stop_reason
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: the iteration and the state of each registered hook.

        Hooks without saved state keep theirs, and saved states without a registered hook
        are ignored; both are logged as warnings.

        Args:
            state (dict): as returned by :meth:`state_dict`.
        """
        self.iter = int(state["iteration"])
        self._completed = False
        self._stop_reason = state.get("stop_reason")
        saved = dict(state.get("hooks", {}))
        for key, h in self._keyed_hooks():
            if key in saved:
                h.load_state_dict(saved.pop(key))
            else:
                logger.warning("The checkpoint has no state for hook %s; it starts afresh.", key)
        for key in saved:
            logger.warning("The checkpoint has state for hook %s, which is not registered.", key)
