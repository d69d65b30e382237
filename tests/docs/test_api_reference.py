"""The API reference (docs/api/*.rst, built by Sphinx) documents every public name of DESIGN.md.

The name checks read the .rst pages and need no Sphinx: a name counts as documented when an
``automodule`` directive covers it (the package's ``__all__``, less ``:exclude-members:``) or an
explicit entry names it. Where Sphinx is installed (``pip install -e ".[docs]"``), the site is
also built with warnings as errors and every name is looked up in its object inventory, the
index that cross-references and the search resolve against.
"""

import importlib
import inspect
import logging
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Dict, List, Set

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
API = DOCS / "api"

# The public API table of DESIGN.md ("Public module paths follow detectron2"), copied here
# because CI checks out this repository alone. "the hooks module" and "samplers" are modules.
DESIGN_TABLE: Dict[str, List[str]] = {
    "engine_lib.config": ["CfgNode", "get_cfg", "configurable"],
    "engine_lib.engine": [
        "launch",
        "HookBase",
        "TrainerBase",
        "SimpleTrainer",
        "SimpleTrainer.reset_data_loader",
        "AMPTrainer",
        "DefaultTrainer",
        "DefaultPredictor",
        "default_argument_parser",
        "default_setup",
        "default_writers",
        "create_ddp_model",
        "hooks",
    ],
    "engine_lib.engine.hooks": [
        "CallbackHook",
        "IterationTimer",
        "PeriodicWriter",
        "PeriodicCheckpointer",
        "BestCheckpointer",
        "LRScheduler",
        "EvalHook",
        "PreciseBN",
        "TorchProfiler",
        "TorchMemoryStats",
        "EMA",
        "LayerFreeze",
    ],
    "engine_lib.checkpoint": ["Checkpointer", "PeriodicCheckpointer"],
    "engine_lib.solver": [
        "build_optimizer",
        "get_default_optimizer_params",
        "reduce_param_groups",
        "build_lr_scheduler",
        "LRMultiplier",
        "WarmupParamScheduler",
    ],
    "engine_lib.data": [
        "DatasetCatalog",
        "MetadataCatalog",
        "build_train_loader",
        "build_test_loader",
        "samplers",
    ],
    "engine_lib.data.samplers": [
        "TrainingSampler",
        "InferenceSampler",
        "IdentitySampler",
        "NaiveIdentitySampler",
    ],
    "engine_lib.modeling": ["META_ARCH_REGISTRY", "BACKBONE_REGISTRY", "build_model"],
    "engine_lib.evaluation": [
        "DatasetEvaluator",
        "DatasetEvaluators",
        "inference_on_dataset",
        "inference_context",
        "print_csv_format",
        "verify_results",
    ],
    "engine_lib.utils.comm": [
        "get_world_size",
        "get_rank",
        "get_local_rank",
        "get_local_size",
        "is_main_process",
        "synchronize",
        "all_gather",
        "gather",
        "reduce_dict",
        "shared_random_seed",
    ],
    "engine_lib.utils.events": [
        "EventStorage",
        "get_event_storage",
        "has_event_storage",
        "EventWriter",
        "JSONWriter",
        "TensorboardXWriter",
        "CommonMetricPrinter",
    ],
    "engine_lib.utils.logger": [
        "setup_logger",
        "log_first_n",
        "log_every_n",
        "log_every_n_seconds",
        "create_small_table",
    ],
}

_AUTO_ENTRY = re.compile(
    r"^\.\. (?:auto(?:class|function|data|exception|attribute|method)|"
    r"py:(?:class|function|data|exception|attribute|method))::\s*(\S+)",
    re.M,
)


def design_names() -> List[str]:
    """Every dotted name of DESIGN.md's table, plus every hook class the hooks package exports
    (the table says "every hook class")."""
    names = [f"{module}.{name}" for module, members in DESIGN_TABLE.items() for name in members]
    from engine_lib.engine import HookBase, hooks

    for name in hooks.__all__:
        obj = getattr(hooks, name)
        if inspect.isclass(obj) and issubclass(obj, HookBase) and obj is not HookBase:
            names.append(f"engine_lib.engine.hooks.{name}")
    return sorted(set(names))


def resolve(dotted: str) -> object:
    """Import the longest importable module prefix of ``dotted`` and get the rest as attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _split_directives(text: str) -> List[str]:
    """The text of each top-level directive (``.. name::`` up to the next one)."""
    return re.split(r"^(?=\.\. )", text, flags=re.M)


def documented_in_rst() -> Set[str]:
    """The dotted names the .rst pages document, as autodoc reads them.

    An ``automodule`` (its ``:members:`` are on by default in conf.py) documents the module and
    what its ``__all__`` lists, less ``:exclude-members:``, and, for a class, its public methods
    that have a docstring (autodoc skips undocumented ones); it also sets the current module for
    the explicit entries after it, as ``currentmodule`` does.
    """
    found: Set[str] = set()
    for page in sorted(API.glob("*.rst")):
        current = None
        for block in _split_directives(page.read_text()):
            head = re.match(r"\.\. (automodule|currentmodule|py:module|module)::\s*(\S+)", block)
            if head:
                current = head.group(2)
                if head.group(1) != "automodule":
                    continue
                module = importlib.import_module(current)
                excluded = set()
                option = re.search(r"^\s+:exclude-members:(.*)$", block, re.M)
                if option:
                    excluded = {name.strip() for name in option.group(1).split(",")}
                found.add(current)
                for name in getattr(module, "__all__", []):
                    if name in excluded:
                        continue
                    obj = getattr(module, name)
                    # autodoc documents a module's data only with a doc comment: an instance (a
                    # registry, a catalog) needs an explicit entry on the page.
                    if inspect.isclass(obj) or inspect.isroutine(obj):
                        found.add(f"{current}.{name}")
                    if inspect.isclass(obj):
                        for attr, value in vars(obj).items():
                            if not attr.startswith("_") and inspect.getdoc(value):
                                found.add(f"{current}.{name}.{attr}")
                continue
            entry = _AUTO_ENTRY.match(block)
            if entry:
                assert current, f"{page.name}: '{entry.group(1)}' comes before any module"
                found.add(f"{current}.{entry.group(1)}")
    return found


def test_design_names_are_importable():
    for dotted in design_names():
        obj = resolve(dotted)
        # A "module" entry of the table must be the module, not something that shadows it.
        if dotted.rsplit(".", 1)[1] in ("hooks", "samplers"):
            assert isinstance(obj, types.ModuleType), dotted


def test_every_design_name_is_on_an_api_page():
    documented = documented_in_rst()
    missing = [name for name in design_names() if name not in documented]
    assert not missing, f"public names of DESIGN.md missing from docs/api/*.rst: {missing}"


def test_every_api_page_and_guide_is_in_a_toctree():
    index = (DOCS / "index.rst").read_text()
    api_index = (API / "index.rst").read_text()
    guides = sorted(path.stem for path in DOCS.glob("*.md"))
    pages = sorted(path.stem for path in API.glob("*.rst") if path.stem != "index")
    assert guides and pages
    listed = set(re.findall(r"^   (\S+)$", index, re.M))
    assert not [g for g in guides if g not in listed], "docs/*.md missing from docs/index.rst"
    listed_api = set(re.findall(r"^   (\S+)$", api_index, re.M))
    assert not [p for p in pages if p not in listed_api], "pages missing from docs/api/index.rst"


def _load_conf() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("engine_lib_docs_conf", DOCS / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


@pytest.mark.parametrize(
    "message, dropped",
    [
        ("'myst' cross-reference target not found: '../projects/Detection/'", True),
        ("'myst' cross-reference target not found: '../engine_lib/engine/hooks/'", True),
        ("'myst' cross-reference target not found: 'hooks.md#no-such-heading'", False),
        ("'myst' cross-reference target not found: 'no_such_page.md'", False),
        ("duplicate object description of engine_lib.engine.HookBase", False),
    ],
)
def test_conf_drops_only_links_to_repository_files(message, dropped):
    record = logging.LogRecord("sphinx.myst", logging.WARNING, "x.md", 1, message, None, None)
    assert _load_conf()._RepoFileLinkFilter().filter(record) is (not dropped)


def _inventory_names(html: Path) -> Set[str]:
    from sphinx.util.inventory import InventoryFile

    with open(html / "objects.inv", "rb") as f:
        inventory = InventoryFile.load(f, "", os.path.join)
    data = inventory.data if hasattr(inventory, "data") else inventory
    return {name for kind, entries in data.items() if kind.startswith("py:") for name in entries}


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> Path:
    """The HTML site: the one .ci/run just built (ENGINE_LIB_DOCS_HTML), or a fresh build."""
    prebuilt = os.environ.get("ENGINE_LIB_DOCS_HTML")
    if prebuilt:
        return Path(prebuilt)
    pytest.importorskip("sphinx", reason='the site build needs pip install -e ".[docs]"')
    pytest.importorskip("myst_parser", reason='the site build needs pip install -e ".[docs]"')
    out = tmp_path_factory.mktemp("html")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    proc = subprocess.run(
        [*cmd, str(DOCS), str(out)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"sphinx build failed (warnings are errors):\n{proc.stderr}"
    return out


def test_built_site_indexes_every_design_name(built_site):
    indexed = _inventory_names(built_site)
    missing = [name for name in design_names() if name not in indexed]
    assert not missing, f"public names of DESIGN.md not in the built API reference: {missing}"
