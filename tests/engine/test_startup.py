"""Start-up: what importing the engine loads, and the start-up line of the log."""

import json
import logging
import os
import subprocess
import sys
import time

from engine_lib.engine.train_loop import startup

from ._toy_training import make_trainer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Heavy modules that only some runs use: each is imported where it is used. The torch ones
# cost ~0.7 s together (torchvision brings torch._dynamo; .fsdp, .tensor and .checkpoint bring
# sympy), against a ~0.3 s budget for `import engine_lib.engine` on top of `import torch`.
_HEAVY = (
    "torchvision",
    "tensorboard",
    "torch.utils.tensorboard",
    "fvcore.nn",
    "PIL",
    "sklearn",
    "torch._dynamo",
    "torch.distributed.fsdp",
    "torch.distributed.tensor",
    "torch.distributed.checkpoint",
    "sympy",
)
# The tools too: `tools/<name>.py --help` imports what the module imports.
_PROBE = f"""
import glob, importlib.util, json, os, sys
import engine_lib.engine, engine_lib.engine.hooks, engine_lib.modeling, engine_lib.data
for path in sorted(glob.glob(os.path.join({REPO!r}, "tools", "*.py"))):
    spec = importlib.util.spec_from_file_location("tool_" + os.path.basename(path)[:-3], path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps(sorted(m for m in {_HEAVY!r} if m in sys.modules)))
"""


def test_importing_the_engine_and_the_tools_loads_no_heavy_module():
    # A fresh interpreter: this test process has imported them already.
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_seconds_since_process_start_counts_from_the_process_start():
    before = startup.seconds_since_process_start()
    time.sleep(0.05)
    after = startup.seconds_since_process_start()
    # This process started before this test did (pytest imported torch first), and the
    # clock ticks with it.
    assert 0.0 < before < after
    assert 0.03 < after - before < 1.0


def test_the_first_train_logs_the_start_up_time_once(monkeypatch, caplog):
    monkeypatch.setattr(startup, "_logged", False)
    with caplog.at_level(logging.INFO, logger="engine_lib.engine.train_loop.startup"):
        trainer = make_trainer()
        trainer.train(0, 2)
        trainer.train(2, 3)
    lines = [r.getMessage() for r in caplog.records if "Start-up:" in r.getMessage()]
    assert len(lines) == 1
    assert "from process start to the first training iteration (0)" in lines[0]
