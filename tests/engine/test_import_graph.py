"""Layering: the engine imports no task code, distillation included (docs/architecture.md)."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_PROBE = """
import json, sys
import engine_lib.engine, engine_lib.engine.hooks, engine_lib.modeling, engine_lib.checkpoint
print(json.dumps(sorted(m for m in sys.modules if "distill" in m)))
"""


def _modules_loaded_by(code):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_engine_loads_no_distillation_module():
    # A fresh interpreter: this test process may have imported distillation already.
    assert _modules_loaded_by(_PROBE) == []


def test_the_old_distillation_import_paths_still_work():
    loaded = _modules_loaded_by(
        "import json, sys\n"
        "from engine_lib.modeling import Distiller, build_distiller\n"
        "from engine_lib.modeling.distillation import build_teacher, kd_loss\n"
        "import engine_lib.distillation as d\n"
        "assert Distiller is d.Distiller and build_teacher is d.build_teacher\n"
        "print(json.dumps(sorted(m for m in sys.modules if 'distill' in m)))\n"
    )
    assert "engine_lib.distillation" in loaded
