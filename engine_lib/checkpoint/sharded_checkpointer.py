"""The sharded (DCP) format of :class:`~engine_lib.checkpoint.Checkpointer`: save, finish, load.

A mixin, not a second checkpointer: ``Checkpointer.save`` and ``Checkpointer.load`` call it
when the format is ``"dcp"`` or the path is a directory. The directory layout and why a
directory is complete only once renamed are in :mod:`engine_lib.checkpoint.sharded`.

Asynchronous saves (``async_save=True``): at most one is in flight. The training thread
starts it (it waits only for DCP's CPU staging copy), and finishes it, renaming the directory
and moving ``last_checkpoint``, in :meth:`poll` once its future is done, in :meth:`wait`, or
before the next save starts. Its collectives run on a separate gloo group.
"""

import logging
import os
import shutil
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import torch
import torch.distributed as dist
from torch import nn

from engine_lib.utils import comm
from engine_lib.utils.file_io import atomic_write

from .serialization import CheckpointError, check_weights_only
from .sharded import (
    EXTRA_STATE_FILE,
    INCOMPLETE_SUFFIX,
    PendingSave,
    has_sharded_params,
    load_sharded_states,
    read_extra_state,
    read_sharded_weights,
    replace_dir,
    save_sharded_states,
    set_full_model_weights,
    split_checkpointables,
)

__all__ = ["ShardedCheckpointMixin"]

logger = logging.getLogger(__name__)


class ShardedCheckpointMixin:
    """DCP saving and loading for a checkpointer with ``model``, ``save_dir``,
    ``checkpointables``, ``save_to_disk`` and ``tag_last_checkpoint``."""

    # What the checkpointer it is mixed into provides (only declared here: a definition would
    # shadow the checkpointer's, which comes later in the method resolution order).
    model: nn.Module
    save_dir: str
    save_to_disk: bool
    allow_pickle: bool
    checkpointables: Dict[str, Any]
    if TYPE_CHECKING:

        def tag_last_checkpoint(self, last_filename_basename: str) -> None: ...

        def _apply(
            self,
            checkpoint: Dict[str, Any],
            path: str,
            checkpointables: Optional[List[str]],
            for_resume: bool = False,
        ) -> Dict[str, Any]: ...

    def _init_sharded(self, checkpoint_format: str, async_save: bool) -> None:
        if checkpoint_format not in ("torch", "dcp"):
            raise ValueError(
                f"checkpoint_format must be 'torch' or 'dcp', got {checkpoint_format!r}"
            )
        self.checkpoint_format = checkpoint_format
        self.async_save = bool(async_save) and checkpoint_format == "dcp"
        self._pending: Optional[PendingSave] = None
        self._async_group = None
        if self.async_save and dist.is_available() and dist.is_initialized():
            # Collective: every rank builds its checkpointer at the same point of the run.
            # The background save's collectives must not interleave with the training's
            # (DDP's all-reduce, metric gathers) on the default group.
            self._async_group = dist.new_group(backend="gloo")

    # ------------------------------------------------------------------ saving
    def _save_sharded(self, name: str, kwargs: Dict[str, Any]) -> None:
        self.wait()  # at most one save in flight
        optimizers, others = split_checkpointables(self.checkpointables)
        # Collective (the trainer's state gathers the RNG states of every rank).
        extra = {key: obj.state_dict() for key, obj in others.items()}
        extra.update(kwargs)
        final = os.path.join(self.save_dir, name)
        incomplete = final + INCOMPLETE_SUFFIX
        if self.save_to_disk:
            if not self.allow_pickle:
                check_weights_only(extra, name=f"Checkpoint {name!r}")
            # "Saving checkpoint to" as for single files: tools/resume_check.py kills on it.
            logger.info(
                "Saving checkpoint to %s (sharded%s)", final, ", asynchronous" * self.async_save
            )
            # Left by a save that was killed: never a resume point, safe to replace.
            shutil.rmtree(incomplete, ignore_errors=True)
            os.makedirs(incomplete)
            with atomic_write(os.path.join(incomplete, EXTRA_STATE_FILE), "wb") as f:
                torch.save(extra, f)
        comm.synchronize()  # the directory exists before any rank writes its shard
        future = save_sharded_states(
            self.model,
            list(optimizers.values()),
            incomplete,
            asynchronous=self.async_save,
            group=self._async_group,
        )
        pending = PendingSave(future, incomplete, final)
        if future is None:
            self._finish_save(pending)
        else:
            self._pending = pending

    def _finish_save(self, pending: PendingSave) -> None:
        if pending.future is not None:
            pending.future.result()  # re-raises a failed write
        # On the main process, DCP returns (or completes the future) only after every rank's
        # shard is written and fsynced and .metadata is written: the save is durable.
        if self.save_to_disk:
            replace_dir(pending.incomplete_dir, pending.final_dir)
            self.tag_last_checkpoint(os.path.basename(pending.final_dir))
            logger.info("Sharded checkpoint %s is complete", pending.final_dir)

    def poll(self) -> bool:
        """Finish an asynchronous save whose writes are done; call it from the training thread.

        Returns:
            bool: whether a save is still in flight.
        """
        pending = self._pending
        if pending is not None and (pending.future is None or pending.future.done()):
            self._pending = None
            self._finish_save(pending)
        return self._pending is not None

    def wait(self) -> None:
        """Block until the asynchronous save in flight (if any) is complete and finished."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._finish_save(pending)

    # ------------------------------------------------------------------ loading
    def _load_sharded(
        self, path: str, checkpointables: Optional[List[str]], for_resume: bool
    ) -> Dict[str, Any]:
        if not for_resume:
            weights = read_sharded_weights(path)
            if has_sharded_params(self.model):
                set_full_model_weights(self.model, weights)
                logger.info("Loaded the weights of sharded checkpoint %s", path)
                return {}
            return self._apply({"model": weights}, path, checkpointables)
        extra = read_extra_state(path)  # raises UnreadableCheckpointError when incomplete
        logger.info("Resuming from sharded checkpoint %s", path)
        optimizers, _ = split_checkpointables(self.checkpointables)
        names = list(self.checkpointables) if checkpointables is None else checkpointables
        load_sharded_states(self.model, [optimizers[n] for n in names if n in optimizers], path)
        for key in names:
            if key in optimizers:
                continue
            if key not in extra:
                logger.warning("%s has no %r state; it keeps its current state.", path, key)
                continue
            try:
                self.checkpointables[key].load_state_dict(extra.pop(key))
            except (ValueError, KeyError, TypeError, RuntimeError) as e:
                raise CheckpointError(
                    f"Cannot restore {key!r} from checkpoint {path}: {e}. Was it written by a "
                    "different model or config?"
                ) from e
        return extra
