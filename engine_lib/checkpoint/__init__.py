"""Checkpointing: atomic saves, ``weights_only`` loading and crash-safe resume.

Everything saved in a checkpoint must be loadable with ``torch.load(weights_only=True)``
(tensors, numbers, strings, and dicts/lists/tuples of them); see
:mod:`engine_lib.checkpoint.checkpointer`.
"""

from engine_lib.utils.file_io import atomic_write

from .checkpointer import Checkpointer, PeriodicCheckpointer
from .detection_checkpoint import DetectionCheckpointer
from .serialization import (
    CheckpointError,
    UnreadableCheckpointError,
    check_weights_only,
    read_checkpoint,
)

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "DetectionCheckpointer",
    "PeriodicCheckpointer",
    "UnreadableCheckpointError",
    "atomic_write",
    "check_weights_only",
    "read_checkpoint",
]
