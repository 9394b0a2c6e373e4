"""Optional-dependency helpers: the folder of an installed package."""

import importlib
import json
import sys
from pathlib import Path

import pytest

from latentalign._optional import package_dir
from latentalign.exceptions import MissingDependencyError


def test_package_dir_is_the_folder_of_init():
    assert package_dir(json) == Path(json.__file__).parent


def test_package_dir_rejects_a_namespace_package(tmp_path, monkeypatch):
    (tmp_path / "latentalign_ns_probe").mkdir()  # no __init__.py: a namespace package, __file__ is None
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        ns = importlib.import_module("latentalign_ns_probe")
    finally:
        sys.modules.pop("latentalign_ns_probe", None)
    assert ns.__file__ is None
    with pytest.raises(MissingDependencyError, match="'latentalign_ns_probe' has no __file__ .*namespace package"):
        package_dir(ns)
