#!/usr/bin/env python
"""``tools/train_net.py`` with a test-only model whose process dies once, for elastic restarts.

Run as a script under ``torchrun --max-restarts 1``: it registers ``DieOnceClassifier`` in
``META_ARCH_REGISTRY`` and runs train_net's command line. In the first worker group
(``TORCHELASTIC_RESTART_COUNT`` 0) the process of rank ``DIE_RANK`` exits abruptly at its
training forward pass number ``DIE_AT_ITER``; restarted groups train normally. The weights are
``ImageClassifier``'s, so train_net.py can evaluate its checkpoints.
"""

import os
import sys
from typing import Any, Dict, List

from engine_lib.engine import default_argument_parser, run_cli
from engine_lib.modeling import META_ARCH_REGISTRY, ImageClassifier
from engine_lib.utils import comm

__all__ = ["DieOnceClassifier"]

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import train_net  # noqa: E402


@META_ARCH_REGISTRY.register()
class DieOnceClassifier(ImageClassifier):
    """An :class:`ImageClassifier` whose process dies at one forward pass of the first group."""

    _calls = 0

    def forward(self, batched_inputs: List[Dict[str, Any]]) -> Any:
        if self.training:
            first_group = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
            this_rank = os.environ.get("DIE_RANK", "1") == str(comm.get_rank())
            at = int(os.environ.get("DIE_AT_ITER", "-1"))
            if first_group and this_rank and DieOnceClassifier._calls == at:
                os._exit(17)  # a lost worker: no cleanup, no checkpoint
            DieOnceClassifier._calls += 1
        return super().forward(batched_inputs)


if __name__ == "__main__":
    run_cli(train_net.run, default_argument_parser().parse_args())
