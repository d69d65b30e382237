"""``WriterState``: the hook through which the trainer checkpoints its trackers' run ids."""

import logging
from typing import Any, Dict, Sequence

from ..train_loop import HookBase
from .tracker import TrackerWriter

__all__ = ["WriterState"]

logger = logging.getLogger(__name__)


class WriterState(HookBase):
    """Carries the state of tracker writers (their run ids) in the trainer's checkpoints.

    It does nothing in the loop; the trainer's ``state_dict`` holds its state. Register it on
    every process (with no writer where the process writes nothing), so that every rank has
    the same stateful hooks.

    Args:
        writers (Sequence[TrackerWriter]): the trackers of this process (empty off rank 0).
    """

    def __init__(self, writers: Sequence[TrackerWriter]) -> None:
        self._writers = list(writers)

    def state_dict(self) -> Dict[str, Any]:
        return {type(w).__name__: w.state_dict() for w in self._writers}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for w in self._writers:
            if type(w).__name__ in state:
                w.load_state_dict(state[type(w).__name__])
