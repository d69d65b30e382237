"""Sharded checkpoints: ``torch.distributed.checkpoint`` (DCP) directories, saved and loaded.

A sharded checkpoint ``<save_dir>/<name>/`` holds:

* the model and optimizer states, written by ``dcp.save`` / ``dcp.async_save`` from
  ``get_state_dict`` (each rank writes its own shard; replicated DDP tensors are written once);
  DCP reshards them on load, so a checkpoint of N ranks loads on M ranks, DDP or FSDP2;
* ``extra_state.pth``: everything else (the trainer's state with the RNG states of every rank,
  the hooks' states, the sampler position, the iteration), written by the main process with
  ``torch.save`` and loadable with ``weights_only=True``.

Completeness: the directory is written under ``<name>.incomplete`` and renamed to ``<name>``
by the main process once DCP's save has returned there (for an asynchronous save: once its
future has completed). DCP's coordinator writes ``.metadata`` only after gathering every
rank's write results, and its writer fsyncs each file, so at that point every shard is
durable. A rename is used, rather than relying on ``.metadata`` being last, because
``extra_state.pth`` is written outside DCP: the rename covers both, and a directory with the
final name is complete by construction. A kill at any instant leaves at most an
``.incomplete`` directory, which resume ignores (and the next save of that name removes).
"""

import contextlib
import logging
import os
import shutil
import warnings
from concurrent.futures import Future
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

from .dist_types import is_dtensor
from .serialization import CheckpointError, UnreadableCheckpointError

__all__ = [
    "EXTRA_STATE_FILE",
    "INCOMPLETE_SUFFIX",
    "PendingSave",
    "checkpoint_format",
    "is_sharded_checkpoint",
    "load_sharded_states",
    "read_extra_state",
    "read_sharded_weights",
    "has_sharded_params",
    "replace_dir",
    "save_sharded_states",
    "set_full_model_weights",
    "split_checkpointables",
]

logger = logging.getLogger(__name__)

#: The main process's file of non-sharded state inside a sharded checkpoint directory.
EXTRA_STATE_FILE = "extra_state.pth"
#: The suffix of a sharded checkpoint directory that is still being written.
INCOMPLETE_SUFFIX = ".incomplete"
#: Values of ``SOLVER.CHECKPOINT_FORMAT``.
FORMATS = ("auto", "torch", "dcp")


def checkpoint_format(cfg: Any) -> str:
    """The format a run saves in: ``"torch"`` (one file) or ``"dcp"`` (a sharded directory).

    ``"auto"`` is ``"dcp"`` when ``PARALLEL.STRATEGY`` shards the model (fsdp, hsdp) and
    ``"torch"`` otherwise. ``PARALLEL`` is read with ``get`` so that configs without it work.

    Args:
        cfg (CfgNode): the config.

    Returns:
        str: ``"torch"`` or ``"dcp"``.

    Raises:
        ValueError: ``SOLVER.CHECKPOINT_FORMAT`` is not one of ``FORMATS``.
    """
    fmt = cfg.SOLVER.CHECKPOINT_FORMAT
    if fmt not in FORMATS:
        raise ValueError(f"SOLVER.CHECKPOINT_FORMAT must be one of {FORMATS}, got {fmt!r}")
    if fmt != "auto":
        return fmt
    strategy = str((cfg.get("PARALLEL") or {}).get("STRATEGY", "ddp")).lower()
    return "dcp" if strategy in ("fsdp", "hsdp") else "torch"


def is_sharded_checkpoint(path: str) -> bool:
    """Whether ``path`` is a directory with DCP metadata (not necessarily a full checkpoint)."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, ".metadata"))


@dataclass
class PendingSave:
    """An asynchronous save in flight: its DCP future and where it goes when complete."""

    future: Optional[Future]  # None for a synchronous save, finished as soon as started
    incomplete_dir: str
    final_dir: str


def _dcp() -> ModuleType:
    # Imported on first use: torch.distributed.checkpoint costs ~0.7 s (it loads DTensor and
    # sympy), which runs that never write or read a sharded checkpoint should not pay.
    import torch.distributed.checkpoint as dcp

    # The submodules read as attributes below (dcp.state_dict, dcp.metadata).
    import torch.distributed.checkpoint.metadata
    import torch.distributed.checkpoint.state_dict  # noqa: F401

    return dcp


@contextlib.contextmanager
def _single_process_ok() -> Iterator[None]:
    # DCP warns on every call without a process group that it "assumes" one process; in a
    # single-process run (no_dist=True, given explicitly) that is what is meant.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _sharded_state(model: nn.Module, optimizers: List[torch.optim.Optimizer]) -> Dict[str, Any]:
    model_state, optim_state = _dcp().state_dict.get_state_dict(model, optimizers)
    state: Dict[str, Any] = {"model": model_state}
    if optimizers:
        state["optim"] = optim_state
    return state


def save_sharded_states(
    model: nn.Module,
    optimizers: List[torch.optim.Optimizer],
    directory: str,
    *,
    asynchronous: bool = False,
    group: Optional[Any] = None,
) -> Optional[Future]:
    """Write the model and optimizer states into ``directory`` with DCP, on every rank.

    Args:
        model (nn.Module): a plain, DDP-unwrapped or ``fully_shard``-ed model.
        optimizers (list[Optimizer]): optimizers of ``model`` (their state is resharded on
            load).
        directory (str): where to write.
        asynchronous (bool): save with ``dcp.async_save`` and return its future. Default:
            False.
        group (ProcessGroup | None): the group of an asynchronous save's collectives, a
            separate one so that they never interleave with the training's. Default: None.

    Returns:
        Future | None: the asynchronous save's future, or None.
    """
    dcp = _dcp()
    state = _sharded_state(model, optimizers)
    no_dist = not (dist.is_available() and dist.is_initialized())
    if not asynchronous:
        with _single_process_ok():
            dcp.save(state, checkpoint_id=directory, no_dist=no_dist)
        return None
    # async_save first stages a CPU copy (the only part the training loop waits for), then
    # writes from a background thread.
    with _single_process_ok():
        future = dcp.async_save(
            state,
            checkpoint_id=directory,
            process_group=None if no_dist else group,
            no_dist=no_dist,
        )
    # An AsyncSaveResponse comes back only when given an asynchronous stager.
    assert isinstance(future, Future), type(future)
    return future


def load_sharded_states(
    model: nn.Module, optimizers: List[torch.optim.Optimizer], directory: str
) -> None:
    """Load the model and optimizer states of ``directory`` in place, resharding as needed.

    Args:
        model (nn.Module): the model (any world size, DDP or FSDP2).
        optimizers (list[Optimizer]): its optimizers (empty: weights only, strict).
        directory (str): a sharded checkpoint.

    Raises:
        CheckpointError: the checkpoint does not fit the model or optimizers.
    """
    dcp = _dcp()
    state = _sharded_state(model, optimizers)
    no_dist = not (dist.is_available() and dist.is_initialized())
    try:
        with _single_process_ok():
            dcp.load(state, checkpoint_id=directory, no_dist=no_dist)
        dcp.state_dict.set_state_dict(
            model,
            optimizers,
            model_state_dict=state["model"],
            optim_state_dict=state.get("optim", {}),
        )
    except Exception as e:  # DCP raises CheckpointException/RuntimeError/KeyError on mismatch
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"Cannot resume from sharded checkpoint {directory}: {first}. Was it written by a "
            "different model or config?"
        ) from e


def read_extra_state(directory: str) -> Dict[str, Any]:
    """Read ``extra_state.pth`` of a sharded checkpoint (``weights_only``).

    Raises:
        UnreadableCheckpointError: no metadata or no extra state: the save did not complete.
    """
    path = os.path.join(directory, EXTRA_STATE_FILE)
    if not is_sharded_checkpoint(directory) or not os.path.isfile(path):
        raise UnreadableCheckpointError(
            f"Sharded checkpoint {directory} is incomplete (no .metadata or {EXTRA_STATE_FILE}):"
            " its save did not finish."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or corrupt bytes
        raise UnreadableCheckpointError(f"Cannot read {path}: {e}") from e


def read_sharded_weights(directory: str) -> Dict[str, torch.Tensor]:
    """The full (unsharded) model weights of a sharded checkpoint, on the CPU.

    Reads only the ``model.*`` entries, in this process alone (no collectives), so it serves
    ``MODEL.WEIGHTS``, evaluation, prediction and conversion.

    Args:
        directory (str): a DCP directory written by the checkpointer (or by
            ``tools/convert_checkpoint.py``).

    Returns:
        dict[str, Tensor]: parameter name to full tensor.

    Raises:
        UnreadableCheckpointError: not a DCP directory, or one without model weights.
    """
    if not is_sharded_checkpoint(directory):
        raise UnreadableCheckpointError(
            f"{directory} is a directory but not a sharded checkpoint: it has no .metadata "
            "file (an incomplete save, or not a torch.distributed.checkpoint directory); "
            "weights are a .pth file or a complete sharded checkpoint directory."
        )
    dcp = _dcp()
    reader = dcp.FileSystemReader(directory)
    entries = reader.read_metadata().state_dict_metadata
    state: Dict[str, Any] = {"model": {}}
    for key, meta in entries.items():
        if key.startswith("model.") and isinstance(meta, dcp.metadata.TensorStorageMetadata):
            state["model"][key[len("model.") :]] = torch.empty(
                meta.size, dtype=meta.properties.dtype
            )
    if not state["model"]:
        raise UnreadableCheckpointError(f"Sharded checkpoint {directory} holds no model weights.")
    with _single_process_ok():
        dcp.load(state, storage_reader=reader, no_dist=True)
    return state["model"]


def set_full_model_weights(model: nn.Module, weights: Dict[str, torch.Tensor]) -> Any:
    """Load full weights into a ``fully_shard``-ed model (each rank keeps its shard).

    Args:
        model (nn.Module): a model whose parameters are DTensors.
        weights (dict[str, Tensor]): full tensors, the same on every rank.

    Returns:
        the missing and unexpected keys (``strict=False``).
    """
    api = _dcp().state_dict
    options = api.StateDictOptions(full_state_dict=True, strict=False)
    return api.set_model_state_dict(model, weights, options=options)


def has_sharded_params(model: nn.Module) -> bool:
    """Whether some parameter of ``model`` is a DTensor (FSDP2 / tensor parallel)."""
    return any(is_dtensor(p) for p in model.parameters())


def replace_dir(incomplete: str, final: str) -> None:
    """Move a finished ``incomplete`` directory to ``final``, replacing an older ``final``.

    An older directory of the same name (``model_final`` saved again after a resume,
    ``model_best``) is moved aside first and removed afterwards; a crash in between leaves
    no directory of that name, and resume falls back to the next older checkpoint.
    """
    old = final + ".old"
    if os.path.isdir(final):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(incomplete, final)
    _fsync_dir(os.path.dirname(final) or ".")
    shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def split_checkpointables(
    checkpointables: Dict[str, Any],
) -> Tuple[Dict[str, torch.optim.Optimizer], Dict[str, Any]]:
    """``(optimizers, others)``: optimizers are sharded with the model; the rest is extra."""
    optimizers = {k: v for k, v in checkpointables.items() if isinstance(v, torch.optim.Optimizer)}
    others = {k: v for k, v in checkpointables.items() if k not in optimizers}
    return optimizers, others
