"""Sphinx configuration: the API reference (from the docstrings) and the guides in ``docs/*.md``.

Build it as CI does, with warnings as errors::

    pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import logging
import re
import sys
from pathlib import Path

# The checkout, not an installed copy, is what the reference describes.
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import engine_lib  # noqa: E402

project = "engine_lib"
author = "engine_lib authors"
release = engine_lib.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the Google-style docstrings of STYLE.md
    "sphinx.ext.viewcode",
    "myst_parser",  # the guides are Markdown
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Document each name where the package exports it (``engine_lib.engine.DefaultTrainer``), in the
# order of the source, with its signature's type hints in the description.
autodoc_default_options = {"members": True, "member-order": "bysource", "show-inheritance": True}
autodoc_typehints = "description"
autodoc_class_signature = "separated"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Heading anchors, so that the guides' links to "page.md#section" resolve.
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"engine_lib {release}"


class _RepoFileLinkFilter(logging.Filter):
    """Drop the "target not found" warning for a guide's link to a file outside ``docs/``.

    The guides link to source files and folders of the repository (``../engine_lib/...``,
    ``../projects/...``): on GitHub, and in an editor, those links work, but they are not pages of
    this site, so MyST cannot resolve them. Only those warnings are dropped; a broken link to a
    page or heading inside ``docs/`` still fails the build.
    """

    _pattern = re.compile(r"cross-reference target not found: '\.\./")

    def filter(self, record: logging.LogRecord) -> bool:
        return not self._pattern.search(record.getMessage())


def setup(app) -> None:
    # Sphinx has installed its log handlers by the time it runs this; a logger's own filters do
    # not see its children's records, so the filter goes on the handlers, ahead of the one that
    # turns warnings into errors (-W).
    for handler in logging.getLogger("sphinx").handlers:
        handler.filters.insert(0, _RepoFileLinkFilter())
