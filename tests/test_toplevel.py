"""What ``import latentalign`` offers: the names of the README's Python API, lazily, without side effects."""

from __future__ import annotations

import subprocess
import sys

import pytest

import latentalign

#: Names the README's "Python API in 5 minutes" and "Quick start" use, reachable from the top level.
README_NAMES = (
    "make_aligner",
    "list_aligners",
    "load",
    "save",
    "Procrustes",
    "OTAligner",
    "SelfLearning",
    "UnsupervisedAligner",
    "UniversalSpace",
    "Stitcher",
    "retrieval_scores",
    "csls_knn",
    "linear_cka",
    "mutual_knn",
)


@pytest.mark.parametrize("name", README_NAMES)
def test_readme_names_are_top_level_listed_and_the_same_objects_as_in_their_modules(name):
    assert name in latentalign.__all__ and name in dir(latentalign)
    obj = getattr(latentalign, name)
    assert getattr(sys.modules[obj.__module__], name) is obj


def test_every_listed_name_resolves_and_unknown_names_raise():
    for name in latentalign.__all__:
        assert getattr(latentalign, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'stitcher'"):
        latentalign.stitcher  # noqa: B018


def test_importing_the_package_loads_neither_stitching_nor_evaluation():
    code = (
        "import sys, latentalign\n"
        "heavy = [m for m in ('latentalign.stitching', 'latentalign.evaluation', 'latentalign.functional.similarity')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "latentalign.Stitcher\n"
        "assert 'latentalign.stitching' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
