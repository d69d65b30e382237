"""Where a run resumes from: the ``resume`` argument, and the checkpoint files to try.

The one place that says what ``resume`` means, for training (``DefaultTrainer.resume_or_load``)
and evaluation (``--eval-only``) alike:

==================  =========================================================================
``True``, "auto"    the newest readable checkpoint in ``OUTPUT_DIR`` (everything restored), or
                    the weights ``MODEL.WEIGHTS`` when there is none yet
``False``, ``""``   the weights ``MODEL.WEIGHTS`` only (nothing else restored)
any other string    that checkpoint, restored like a resume (it must fit the model exactly)
==================  =========================================================================
"""

import logging
import os
import re
from typing import List, Tuple, Union

__all__ = [
    "LAST_CHECKPOINT",
    "ResumeArg",
    "checkpoints_by_iteration",
    "parse_resume",
    "resume_order",
]

logger = logging.getLogger(__name__)

#: The file in ``save_dir`` that names the newest complete checkpoint.
LAST_CHECKPOINT = "last_checkpoint"

#: What ``--resume`` and ``resume_or_load(resume=...)`` accept.
ResumeArg = Union[bool, str, None]


def parse_resume(resume: ResumeArg) -> Union[bool, str]:
    """What a ``resume`` argument asks for (see the module docstring).

    Args:
        resume (bool, str or None): ``True`` / ``"auto"``, ``False`` / ``""`` / None, or a
            checkpoint path.

    Returns:
        bool or str: True (resume from ``save_dir``), False (load the weights only) or the
        path of the checkpoint to resume from.

    Raises:
        TypeError: ``resume`` is of another type.
    """
    if resume is None or resume is False or resume == "":
        return False
    if resume is True or resume == "auto":
        return True
    if isinstance(resume, str):
        return resume
    raise TypeError(
        f"resume must be True, False, 'auto', '' or a checkpoint path, got {resume!r} "
        f"of type {type(resume).__name__}"
    )


def checkpoints_by_iteration(paths: List[str], file_prefix: str = "model") -> List[Tuple[int, str]]:
    """``(iteration, path)`` of the ``<file_prefix>_<iteration>.pth`` files, oldest first.

    Args:
        paths (list[str]): file paths, e.g. every ``.pth`` file of a directory.
        file_prefix (str): the prefix of periodic checkpoints. Default: "model".

    Returns:
        list[tuple[int, str]]: the periodic checkpoints among ``paths``, by iteration.
    """
    # A sharded checkpoint is a directory of the same name without ".pth".
    pattern = re.compile(rf"{re.escape(file_prefix)}_(\d+)(?:\.pth)?")
    found = []
    for path in paths:
        match = pattern.fullmatch(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def resume_order(periodic: List[str], final: str, tagged: str) -> List[str]:
    """The files to try when resuming: the tagged one first, then older ones, newest first.

    Args:
        periodic (list[str]): the periodic checkpoints, oldest first.
        final (str): the path of ``model_final.pth`` if it exists, else ``""``; it was saved
            at the last iteration, so it is newer than any periodic one.
        tagged (str): the file ``last_checkpoint`` names, or ``""``.

    Returns:
        list[str]: the candidates, best first.
    """
    order = {path: i for i, path in enumerate(periodic)}
    if final:
        order[final] = len(periodic)
    newest_first = sorted(order, key=order.__getitem__, reverse=True)
    if not tagged:
        return newest_first
    if tagged in order:
        return [tagged] + [p for p in newest_first if order[p] < order[tagged]]
    # A tag naming another file (e.g. model_best.pth): any of the others may follow it.
    return [tagged] + newest_first
