#!/usr/bin/env python
"""``tools/train_net.py`` with a test-only model whose loss turns NaN at one iteration.

Run as a script (a subprocess of the tests): it registers ``NaNAtIterClassifier`` in
``META_ARCH_REGISTRY`` and then runs train_net's command line, so that
``MODEL.META_ARCHITECTURE NaNAtIterClassifier`` selects it. The iteration comes from the
environment variable ``NAN_AT_ITER`` (counted in training forward passes of this process);
with ``NAN_RANK`` set, only the process of that rank turns NaN.
"""

import os
import sys
from typing import Any, Dict, List

import torch

from engine_lib.engine import default_argument_parser, run_cli
from engine_lib.modeling import META_ARCH_REGISTRY, ImageClassifier
from engine_lib.utils import comm

__all__ = ["NaNAtIterClassifier"]

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import train_net  # noqa: E402


@META_ARCH_REGISTRY.register()
class NaNAtIterClassifier(ImageClassifier):
    """An :class:`ImageClassifier` whose training loss is NaN at iteration ``NAN_AT_ITER``."""

    _calls = 0

    def forward(self, batched_inputs: List[Dict[str, Any]]) -> Any:
        out = super().forward(batched_inputs)
        if self.training:
            this_rank = os.environ.get("NAN_RANK", str(comm.get_rank())) == str(comm.get_rank())
            if this_rank and NaNAtIterClassifier._calls == int(os.environ["NAN_AT_ITER"]):
                out = {name: loss * torch.tensor(float("nan")) for name, loss in out.items()}
            NaNAtIterClassifier._calls += 1
        return out


if __name__ == "__main__":
    run_cli(train_net.run, default_argument_parser().parse_args())
