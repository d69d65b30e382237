"""Import a script from ``tools/`` as a module, so tests call its functions in-process."""

import importlib.util
import os
from types import ModuleType

__all__ = ["REPO", "load_tool"]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_tool(name: str) -> ModuleType:
    """Load ``tools/<name>.py`` (the tools are scripts, not a package)."""
    path = os.path.join(REPO, "tools", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"engine_lib_tools_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
