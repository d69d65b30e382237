"""Read checkpoint files safely, and check that what is saved can be read back that way.

Checkpoints are loaded with ``torch.load(weights_only=True)``, which refuses to run the
arbitrary code a pickled python object may carry. What it accepts: tensors, numbers,
strings, bytes, ``None``, and dicts, lists, tuples and sets of these (plus ``torch.Size``,
``torch.dtype``, ``torch.device``). Numpy arrays and scalars, ``defaultdict``, named tuples
and other class instances are refused, so state that goes into a checkpoint must be
converted first (e.g. ``torch.from_numpy(array)``, ``float(np_scalar)``, ``dict(d)``).
"""

import collections
import logging
import os
import pickle
import zipfile
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from engine_lib.utils.errors import UserError

__all__ = ["CheckpointError", "UnreadableCheckpointError", "check_weights_only", "read_checkpoint"]

logger = logging.getLogger(__name__)

_ATOMS = (str, bytes, bytearray, bool, int, float, complex, type(None), torch.dtype, torch.device)
_CONTAINERS = (dict, collections.OrderedDict, collections.Counter, list, tuple, set, torch.Size)


class CheckpointError(UserError):
    """A checkpoint cannot be used: unreadable, refused as unsafe, or not matching."""


class UnreadableCheckpointError(CheckpointError):
    """A checkpoint file is missing, truncated, corrupt or not a checkpoint at all.

    Resuming skips such a file and falls back to an older checkpoint.
    """


def read_checkpoint(path: str, allow_pickle: bool = False) -> Dict[str, Any]:
    """Load a checkpoint file onto the CPU and check that it is a checkpoint.

    A plain model state dict (a dict of tensors, as from ``torch.save(model.state_dict())``)
    is accepted and returned as ``{"model": state_dict}``.

    Args:
        path (str): a local file.
        allow_pickle (bool): load with full pickle instead of ``weights_only=True``. Only for
            files from a trusted source: unpickling can run arbitrary code. Default: False.

    Returns:
        dict: the checkpoint, with a ``"model"`` state dict.

    Raises:
        UnreadableCheckpointError: the file is missing, truncated, corrupt or not a dict
            with a model state dict.
        CheckpointError: the file holds python objects that ``weights_only`` refuses.
    """
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise UnreadableCheckpointError(
            f"Checkpoint file {path} {what}; expected a .pth file written by "
            "Checkpointer.save or torch.save."
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as e:
        if not allow_pickle and "Weights only load failed" in str(e) and zipfile.is_zipfile(path):
            lines = [line.strip() for line in str(e).strip().splitlines()]
            # torch names the refused class on a line of its own ("Unsupported global: ...").
            reason = next((line for line in lines if "Unsupported global" in line), lines[-1])
            raise CheckpointError(
                f"Checkpoint {path} holds python objects that torch.load(weights_only=True) "
                f"refuses to unpickle ({reason}). Unpickling can run arbitrary code; if you "
                "trust the file's source, opt in with MODEL.WEIGHTS_ALLOW_PICKLE True (config "
                "or command line), or Checkpointer(..., allow_pickle=True) in code."
            ) from e
        raise _unreadable(path, e) from e
    except Exception as e:  # torch raises RuntimeError, EOFError, IndexError, ... on bad bytes
        raise _unreadable(path, e) from e
    return _as_checkpoint(data, path)


def check_weights_only(obj: Any, name: str = "checkpoint") -> None:
    """Raise if ``obj`` holds something ``torch.load(weights_only=True)`` would refuse.

    Checking before writing turns a resume that would fail hours later into an error at the
    first save, naming the offending entry.

    Args:
        obj (Any): the data to be saved.
        name (str): what ``obj`` is called in the message. Default: ``"checkpoint"``.

    Raises:
        TypeError: naming the first entry of a type that cannot be loaded back.
    """
    found = _first_refused(obj, ())
    if found is not None:
        keys, bad = found
        entry = "".join(f"[{key!r}]" for key in keys) or "(the whole object)"
        raise TypeError(
            f"{name}: entry {entry} is a {type(bad).__module__}.{type(bad).__qualname__}, which "
            "torch.load(weights_only=True) refuses to load back. Store tensors, numbers, "
            "strings, lists, tuples or dicts instead (e.g. torch.from_numpy(array), float(x), "
            "dict(defaultdict))."
        )


def _first_refused(obj: Any, keys: Tuple) -> Optional[Tuple[Tuple, Any]]:
    """``(path of keys, object)`` of the first refused object in ``obj``, or None."""
    if isinstance(obj, torch.Tensor) or type(obj) in _ATOMS:
        return None
    if type(obj) in _CONTAINERS:
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for key, value in items:
            found = _first_refused(key, keys) or _first_refused(value, keys + (key,))
            if found is not None:
                return found
        return None
    if type(obj) in _user_safe_globals():
        return None
    return keys, obj


def _user_safe_globals() -> set:
    """Classes registered with ``torch.serialization.add_safe_globals`` (torch >= 2.5)."""
    get_safe_globals = getattr(torch.serialization, "get_safe_globals", None)
    if get_safe_globals is None:
        return set()
    return {g[0] if isinstance(g, tuple) else g for g in get_safe_globals()}


def _unreadable(path: str, error: Exception) -> UnreadableCheckpointError:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if "Weights only load failed" in detail:
        # torch's advice to retry without weights_only is wrong for a file that is no archive.
        detail = "neither a zip archive nor a pickle torch can read"
    return UnreadableCheckpointError(
        f"Cannot read checkpoint {path}: it is truncated, corrupt or not a PyTorch checkpoint "
        f"({type(error).__name__}{': ' + detail if detail else ''}); expected a file written by "
        "Checkpointer.save or torch.save."
    )


def _as_checkpoint(data: Any, path: str) -> Dict[str, Any]:
    if not isinstance(data, dict):
        raise UnreadableCheckpointError(
            f"Checkpoint {path} holds a {type(data).__name__}; expected a dict with a 'model' "
            "state dict (as written by Checkpointer.save)."
        )
    if "model" not in data:
        if data and all(isinstance(v, torch.Tensor) for v in data.values()):
            logger.info("%s is a bare state dict; loading it as the model's weights.", path)
            return {"model": data}
        raise UnreadableCheckpointError(
            f"Checkpoint {path} has no 'model' entry (keys: {sorted(map(str, data))[:10]}); "
            "expected a dict with a 'model' state dict (as written by Checkpointer.save) or a "
            "dict of tensors."
        )
    model = data["model"]
    if not isinstance(model, dict):
        raise UnreadableCheckpointError(
            f"Checkpoint {path}: the 'model' entry is a {type(model).__name__}; expected a dict "
            "mapping parameter names to tensors."
        )
    # fvcore converts numpy arrays (old or pickled checkpoints) to tensors; nothing else loads.
    bad = [k for k, v in model.items() if not isinstance(v, (torch.Tensor, np.ndarray))]
    if bad:
        raise UnreadableCheckpointError(
            f"Checkpoint {path}: the 'model' entries {bad[:5]} are not tensors; expected a dict "
            "mapping parameter names to tensors."
        )
    return data
