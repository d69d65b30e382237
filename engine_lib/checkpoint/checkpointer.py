"""Checkpointers: fvcore's, with atomic saves, safe loading and a resume that survives crashes.

What a checkpoint holds must be loadable with ``torch.load(weights_only=True)``: tensors,
numbers, strings, bytes, ``None``, and dicts, lists, tuples and sets of these. Every
``state_dict()`` registered as a checkpointable and every extra value given to
:meth:`Checkpointer.save` must follow this rule (convert numpy arrays with
``torch.from_numpy``, numpy scalars with ``float``/``int``, a ``defaultdict`` with ``dict``).
``save`` checks it and names the offending entry, so a broken resume is caught at the first
save instead of after a crash. See :mod:`engine_lib.checkpoint.serialization`.
"""

import logging
import os
from typing import IO, Any, ContextManager, Dict, List, Optional

import torch
from fvcore.common.checkpoint import Checkpointer as _FvcoreCheckpointer
from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

from engine_lib.utils import comm
from engine_lib.utils.file_io import (
    NoSpaceLeftError,
    PathManager,
    atomic_write,
    remove_stale_temp_files,
)
from engine_lib.utils.remote_weights import RemoteWeightsError

from .mismatch import check_optimizer_state, format_shape, load_summary, shape_table
from .periodic_checkpointer import PeriodicCheckpointer
from .resume import LAST_CHECKPOINT, ResumeArg, checkpoints_by_iteration, parse_resume, resume_order
from .serialization import (
    CheckpointError,
    UnreadableCheckpointError,
    check_weights_only,
    read_checkpoint,
)
from .sharded import INCOMPLETE_SUFFIX, is_sharded_checkpoint
from .sharded_checkpointer import ShardedCheckpointMixin

# PeriodicCheckpointer lives in its own module; it is re-exported here, where it used to be.
__all__ = ["Checkpointer", "PeriodicCheckpointer"]

logger = logging.getLogger(__name__)


class Checkpointer(ShardedCheckpointMixin, _FvcoreCheckpointer):
    """Save and load a model and other checkpointable objects (optimizer, scheduler, ...).

    Differences from fvcore's ``Checkpointer``:

    * saves are atomic: a crash at any instant leaves the previous checkpoint and
      ``last_checkpoint`` readable;
    * files are read with ``torch.load(weights_only=True)`` unless ``allow_pickle`` is set,
      and a bad file raises a :class:`CheckpointError` naming it;
    * :meth:`resume_or_load` skips an unreadable newest checkpoint and resumes from the
      newest readable older one;
    * by default only the main process writes;
    * with ``checkpoint_format="dcp"``, a checkpoint is a sharded ``torch.distributed.checkpoint``
      directory ``<save_dir>/<name>/`` that every rank writes its shard of, optionally
      asynchronously (see :mod:`engine_lib.checkpoint.sharded`); loading accepts either
      format, whatever the saving format, and a directory reshards to this run's world size.

    Args:
        model (nn.Module): the model; a DDP/DataParallel wrapper is saved as its ``module``.
        save_dir (str): the directory checkpoints are written to and resumed from.
            Default: ``""`` (never save).
        save_to_disk (bool | None): whether :meth:`save` writes. Default: None, meaning only
            the main process (``comm.is_main_process()``).
        allow_pickle (bool): load files with full pickle instead of ``weights_only=True``, and
            save values of any type. Only for checkpoints from a trusted source. Default: False.
        checkpoint_format (str): ``"torch"`` (one file, ``<name>.pth``) or ``"dcp"`` (a
            sharded directory). Default: ``"torch"``.
        async_save (bool): with ``"dcp"``, save asynchronously (one save in flight at most;
            call :meth:`poll` each step and :meth:`wait` at the end). Default: False.
        **checkpointables: objects with ``state_dict()``/``load_state_dict()`` to save and
            restore along with the model, by name (e.g. ``optimizer=optimizer``).

    Example:
        >>> checkpointer = Checkpointer(model, "output", optimizer=opt, scheduler=sched)
        >>> checkpointer.save("model_0000999", iteration=999)
        >>> extra = checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=True)
        >>> start_iter = extra.get("iteration", -1) + 1
    """

    def __init__(
        self,
        model: nn.Module,
        save_dir: str = "",
        *,
        save_to_disk: Optional[bool] = None,
        allow_pickle: bool = False,
        checkpoint_format: str = "torch",
        async_save: bool = False,
        **checkpointables: Any,
    ) -> None:
        if save_to_disk is None:
            save_to_disk = comm.is_main_process()
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.allow_pickle = allow_pickle
        # fvcore builds a private PathManager; ours carries the handlers a project registered.
        self.path_manager = PathManager
        # fvcore logs under its own name; ours follows engine_lib's logging setup.
        self.logger = logger
        if save_to_disk and save_dir and "://" not in save_dir:
            # A process killed mid-save leaves a hidden temporary file; nothing reads it, but
            # it holds a whole checkpoint's worth of disk.
            remove_stale_temp_files(save_dir)
        self._init_sharded(checkpoint_format, async_save)

    @property
    def model(self) -> nn.Module:
        """The model whose weights are saved and loaded (never a DDP/DataParallel wrapper)."""
        return self._model

    @model.setter
    def model(self, model: nn.Module) -> None:
        # fvcore unwraps only in its constructor; unwrapping on every assignment keeps the
        # saved and loaded keys free of "module." even for a model wrapped later.
        if isinstance(model, (DistributedDataParallel, DataParallel)):
            model = model.module
        self._model = model

    # ------------------------------------------------------------------ saving
    def save(self, name: str, **kwargs: Any) -> None:
        """Write the model, the checkpointables and ``kwargs`` to ``<save_dir>/<name>.pth``.

        The file is complete on disk before it replaces any old one, and ``last_checkpoint``
        is pointed at it only afterwards. Writes nothing unless ``save_to_disk`` and
        ``save_dir`` are set. Call it on every process (see the comment in the body).

        Args:
            name (str): the file name without ``.pth``.
            **kwargs: extra data to store (e.g. ``iteration=999``), loadable with
                ``weights_only=True``.

        Raises:
            TypeError: if some value could not be loaded back with ``weights_only=True``.
            NoSpaceLeftError: the disk is full; the previous checkpoints and
                ``last_checkpoint`` are unchanged, so ``--resume`` continues from them.
        """
        if not self.save_dir:
            return
        if self.checkpoint_format == "dcp":
            self._save_sharded(name, kwargs)
            return
        # Every process builds the state, even those that don't write it: a checkpointable's
        # state_dict may be collective (the trainer gathers the RNG states of every rank), so
        # save() must be called on all processes at the same point, as the hooks do.
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        if not self.save_to_disk:
            return
        if not self.allow_pickle:
            check_weights_only(data, name=f"Checkpoint {name!r}")

        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        assert os.path.basename(save_file) == basename, f"bad checkpoint name {name!r}"
        self.logger.info("Saving checkpoint to %s", save_file)
        self.path_manager.mkdirs(self.save_dir)
        try:
            with self._open_for_write(save_file, "wb") as f:
                torch.save(data, f)
        except NoSpaceLeftError as e:
            previous = self.get_checkpoint_file()
            kept = (
                f"{LAST_CHECKPOINT} still names {previous}, which --resume continues from"
                if previous
                else "there is no earlier checkpoint"
            )
            raise NoSpaceLeftError(
                e.errno,
                f"the checkpoint was not written and {kept}. Free some space (or choose "
                "another OUTPUT_DIR) and resume.",
                save_file,
            ) from e
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Point ``last_checkpoint`` at a saved file, atomically.

        Args:
            last_filename_basename (str): the checkpoint's file name inside ``save_dir``.
        """
        with self._open_for_write(os.path.join(self.save_dir, LAST_CHECKPOINT), "w") as f:
            f.write(last_filename_basename)

    def _open_for_write(self, path: str, mode: str) -> ContextManager[IO[Any]]:
        if "://" in path:
            # Remote stores (an iopath handler) have no rename; write through the handler.
            return self.path_manager.open(path, mode)
        return atomic_write(path, mode)

    # ------------------------------------------------------------------ loading
    def load(
        self, path: str, checkpointables: Optional[List[str]] = None, *, for_resume: bool = False
    ) -> Dict[str, Any]:
        """Load a checkpoint into the model and the checkpointables.

        Parameters whose shape differs from the model's are skipped (and reported); the
        others are loaded. With ``for_resume``, they are an error instead.

        Args:
            path (str): a file path or URL; ``""`` loads nothing.
            checkpointables (list[str] | None): names of the checkpointables to restore;
                None restores all of them. Default: None.
            for_resume (bool): the checkpoint continues a run, so it must fit the model
                exactly. Default: False.

        Returns:
            dict: the checkpoint's remaining entries (e.g. ``{"iteration": 999}``).

        Raises:
            UnreadableCheckpointError: the file is missing, truncated or not a checkpoint.
            CheckpointError: the file is refused by ``weights_only`` or a state does not fit.
        """
        if not path:
            self.logger.info("No checkpoint given; the model keeps its initial weights.")
            return {}
        if os.path.isdir(path):
            return self._load_sharded(path, checkpointables, for_resume)
        checkpoint = self._load_file(self._local_file(path))
        return self._apply(checkpoint, path, checkpointables, for_resume=for_resume)

    def _load_file(self, f: str) -> Dict[str, Any]:
        """Read a local file with ``weights_only`` unless pickle was allowed (see fvcore)."""
        return read_checkpoint(f, allow_pickle=self.allow_pickle)

    def _local_file(self, path: str) -> str:
        if os.path.isfile(path):
            return path
        try:
            local = self.path_manager.get_local_path(path)
        except RemoteWeightsError:
            raise
        except Exception as e:  # a download or a remote store can fail in many ways
            raise UnreadableCheckpointError(f"Checkpoint {path} cannot be fetched: {e}") from e
        if not os.path.isfile(local):
            what = "is a directory" if os.path.isdir(local) else "does not exist"
            raise UnreadableCheckpointError(
                f"Checkpoint file {path} {what}; expected a .pth file written by "
                "Checkpointer.save or torch.save."
            )
        return local

    def _apply(
        self,
        checkpoint: Dict[str, Any],
        path: str,
        checkpointables: Optional[List[str]],
        for_resume: bool = False,
    ) -> Dict[str, Any]:
        self.logger.info("Loading checkpoint from %s", path)
        total = len(self.model.state_dict())
        incompatible = self._load_model(checkpoint)
        if for_resume and incompatible.incorrect_shapes:
            # Continuing a run (everything restored) with a different model would train a
            # half-loaded model and fail later in the optimizer; unlike initialising from
            # weights (a new head, say), it is never intended.
            shapes = incompatible.incorrect_shapes
            self.logger.error(
                "The parameters of %s that differ from the model's:\n%s",
                path,
                shape_table(shapes),
            )
            key, in_file, in_model = shapes[0]
            more = f" and {len(shapes) - 1} more (listed in the log)" if len(shapes) > 1 else ""
            raise CheckpointError(
                f"Cannot resume from {path}: it was written by a different model (was a MODEL "
                f"key changed since?): {key} is {format_shape(in_file)} in the checkpoint, "
                f"{format_shape(in_model)} in the model{more}"
            )
        self._log_incompatible_keys(incompatible)
        self._log_load_counts(incompatible, total, path)
        for key in self.checkpointables if checkpointables is None else checkpointables:
            if key not in checkpoint:
                self.logger.warning("%s has no %r state; it keeps its current state.", path, key)
                continue
            try:
                self.checkpointables[key].load_state_dict(checkpoint.pop(key))
                if isinstance(self.checkpointables[key], torch.optim.Optimizer):
                    check_optimizer_state(self.checkpointables[key])
            except (ValueError, KeyError, TypeError, RuntimeError) as e:
                raise CheckpointError(
                    f"Cannot restore {key!r} from checkpoint {path}: {e}. Was it written by a "
                    "different model or config?"
                ) from e
        return checkpoint

    def _log_incompatible_keys(self, incompatible: Any) -> None:
        # fvcore logs one warning per skipped parameter and reports it a second time as "not
        # found in the checkpoint"; one table lists each once, with both shapes.
        if incompatible.incorrect_shapes:
            self.logger.warning(
                "%d parameter(s) of the checkpoint were NOT loaded because their shapes differ "
                "from the model's; they keep their initial values (expected when, e.g., the "
                "number of classes changed; otherwise check MODEL.WEIGHTS and the config).\n%s",
                len(incompatible.incorrect_shapes),
                shape_table(incompatible.incorrect_shapes),
            )
        skipped = {key for key, _, _ in incompatible.incorrect_shapes}
        missing = [key for key in incompatible.missing_keys if key not in skipped]
        super()._log_incompatible_keys(
            incompatible._replace(missing_keys=missing, incorrect_shapes=[])
        )

    def _log_load_counts(self, incompatible: Any, total: int, path: str) -> None:
        """Say how much of the model the file filled: a file of another model fills little."""
        not_loaded = set(incompatible.missing_keys)
        not_loaded.update(key for key, _, _ in incompatible.incorrect_shapes)
        unexpected = len(incompatible.unexpected_keys)
        level, message = load_summary(total, len(not_loaded), unexpected, path)
        self.logger.log(level, message)

    # ------------------------------------------------------------------ resuming
    def resume_or_load(self, path: str, *, resume: ResumeArg = True) -> Dict[str, Any]:
        """Resume from ``save_dir`` if it has a checkpoint, else load the weights at ``path``.

        Resuming restores everything (model and checkpointables) from the file
        ``last_checkpoint`` names. If that file cannot be read, a warning names it and the
        newest readable older checkpoint (``model_final.pth`` and ``model_<iter>.pth``, by
        iteration) is used instead. Loading ``path`` restores the model's weights only.
        ``resume`` may also name the checkpoint to resume from; its forms are those of
        :func:`~engine_lib.checkpoint.resume.parse_resume`, the one definition of them.

        Args:
            path (str): weights to start from when not resuming (``""`` for none).
            resume (bool or str): True or "auto": resume from ``save_dir``; False or "": load
                ``path`` only; another string: resume from that checkpoint. Default: True.

        Returns:
            dict: the checkpoint's remaining entries (e.g. ``{"iteration": 999}``).

        Raises:
            UnreadableCheckpointError: when resuming and no checkpoint is readable.
            CheckpointError: see :meth:`load`; when resuming, also a checkpoint written by a
                different model (a parameter's shape differs) or an optimizer state that does
                not fit its parameters.
        """
        target = parse_resume(resume)
        if isinstance(target, str):
            return self.load(target, for_resume=True)
        if target:
            candidates = self._resume_candidates()
            if candidates:
                return self._resume_from(candidates)
            self.logger.info(
                "Resume requested, but %s holds no checkpoint yet: starting from scratch%s.",
                self.save_dir or "(no save_dir)",
                f" with the weights of {path}" if path else "",
            )
        return self.load(path, checkpointables=[])

    def has_checkpoint(self) -> bool:
        """Whether :meth:`resume_or_load` would resume (a tag or checkpoint files exist).

        Returns:
            bool: True if ``save_dir`` holds ``last_checkpoint`` or checkpoint files.
        """
        return bool(self._resume_candidates())

    def get_periodic_checkpoint_files(self, file_prefix: str = "model") -> List[str]:
        """List ``<file_prefix>_<iteration>.pth`` files in ``save_dir``, oldest first.

        Args:
            file_prefix (str): the prefix the periodic checkpointer uses. Default: "model".

        Returns:
            list[str]: paths sorted by iteration.
        """
        files = self.get_all_checkpoint_files()
        return [path for _, path in checkpoints_by_iteration(files, file_prefix)]

    def get_all_checkpoint_files(self) -> List[str]:
        """List all ``.pth`` files in ``save_dir`` ([] if it does not exist yet).

        Returns:
            list[str]: the paths, in directory order.
        """
        if not self.save_dir or not self.path_manager.isdir(self.save_dir):
            return []
        files = super().get_all_checkpoint_files()
        if "://" in self.save_dir:
            return files
        # Sharded checkpoints: directories renamed from "<name>.incomplete" once complete.
        dirs = [
            os.path.join(self.save_dir, name)
            for name in sorted(os.listdir(self.save_dir))
            if not name.endswith(INCOMPLETE_SUFFIX)
            and is_sharded_checkpoint(os.path.join(self.save_dir, name))
        ]
        return files + dirs

    def get_checkpoint_file(self) -> str:
        """Return the file ``last_checkpoint`` names.

        Returns:
            str: its path in ``save_dir``, or ``""`` if there is no (non-empty) tag.
        """
        try:
            with self.path_manager.open(os.path.join(self.save_dir, LAST_CHECKPOINT)) as f:
                name = f.read().strip()
        except OSError:
            return ""
        return os.path.join(self.save_dir, name) if name else ""

    def _resume_candidates(self) -> List[str]:
        """Files to try when resuming: the tagged one first, then older ones, newest first."""
        if not self.save_dir:
            return []
        finals = [os.path.join(self.save_dir, n) for n in ("model_final.pth", "model_final")]
        finals = [p for p in finals if self.path_manager.exists(p)]
        return resume_order(
            self.get_periodic_checkpoint_files(),
            finals[-1] if finals else "",
            self.get_checkpoint_file(),
        )

    def _resume_from(self, candidates: List[str]) -> Dict[str, Any]:
        first_error: Optional[UnreadableCheckpointError] = None
        for path in candidates:
            try:
                if os.path.isdir(path):
                    # Reads nothing before it knows the directory is complete.
                    return self._load_sharded(path, None, for_resume=True)
                checkpoint = self._load_file(self._local_file(path))
            except UnreadableCheckpointError as e:
                self.logger.warning(
                    "Cannot resume from %s; trying an older checkpoint. %s", path, e
                )
                first_error = first_error or e
                continue
            if first_error is not None:
                self.logger.warning("Resuming from %s, the newest readable checkpoint.", path)
            return self._apply(checkpoint, path, checkpointables=None, for_resume=True)
        raise UnreadableCheckpointError(
            f"No readable checkpoint to resume from in {self.save_dir} (tried {candidates}). "
            f"First error: {first_error}"
        ) from first_error
