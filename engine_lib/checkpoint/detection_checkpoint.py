"""detectron2's ``DetectionCheckpointer`` name for :class:`engine_lib.checkpoint.Checkpointer`.

The constructor is detectron2's, ``(model, save_dir="", *, save_to_disk=None,
**checkpointables)``, plus ``allow_pickle``. One intended difference: files are read with
``torch.load(weights_only=True)``; ``allow_pickle=True`` restores detectron2's full unpickling
(needed for its ``.pkl`` model-zoo files), for files you trust. detectron2's conversion of
Caffe2/Detectron weight names is detection-specific and not provided.
"""

import logging

from .checkpointer import Checkpointer

__all__ = ["DetectionCheckpointer"]

logger = logging.getLogger(__name__)

DetectionCheckpointer = Checkpointer
