"""Sphinx configuration of latentalign's documentation site.

``make docs`` builds it in full; ``make docs-reduced`` (run by ``make test``) sets
``LATENTALIGN_DOCS_REDUCED=1`` so that the gallery examples use fewer items.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))
sys.path.insert(0, str(DOCS))

from _cli_pages import write_cli_page  # noqa: E402

import latentalign  # noqa: E402

REDUCED = os.environ.get("LATENTALIGN_DOCS_REDUCED", "0") not in ("", "0")
# The gallery's scripts run in this process: no progress bars in their captured output.
os.environ.setdefault("LATENTALIGN_PROGRESS", "0")

project = "latentalign"
author = "The latentalign developers"
copyright = "The latentalign developers"
version = release = latentalign.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "examples/GALLERY_HEADER.rst", "**.ipynb_checkpoints"]
root_doc = "index"
default_role = "py:obj"
nitpicky = False

autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"
autodoc_default_options = {"inherited-members": False, "show-inheritance": True}
autodoc_member_order = "groupwise"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
# docstrings are checked for parse errors only: their prose conventions are the library's own
numpydoc_validation_checks: set[str] = set()

html_theme = "pydata_sphinx_theme"
html_title = f"latentalign {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_prev_next": False,
    "navbar_end": ["theme-switcher", "navbar-icon-links"],
    "secondary_sidebar_items": ["page-toc"],
}
html_static_path: list[str] = []
html_show_sourcelink = False

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"/_",
    "within_subsection_order": "FileNameSortKey",
    # a broken example fails the build (make test runs it)
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "run_stale_examples": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "min_reported_time": 1,
    "show_memory": False,
    "backreferences_dir": None,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
}


def _cli_page(app: object) -> None:
    write_cli_page(DOCS / "generated" / "cli_commands.rst")


def setup(app: object) -> None:
    app.connect("builder-inited", _cli_page)  # type: ignore[attr-defined]
