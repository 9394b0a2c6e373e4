"""Saved files name their class by module path; loading resolves only trusted modules; old files load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import latentalign
from latentalign import Procrustes
from latentalign.exceptions import PersistenceError
from latentalign.persistence import FORMAT_VERSION, class_path, resolve_class
from latentalign.preprocessing import Center, Chain, L2Normalize


def fitted_procrustes():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4))
    Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    return Procrustes().fit(X, X @ Q), X


def header_of(path):
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


def test_header_names_the_class_by_module_path(tmp_path):
    aligner, _ = fitted_procrustes()
    path = aligner.save(tmp_path / "map.safetensors")
    header = header_of(path)
    assert header["format_version"] == str(FORMAT_VERSION) == "3"
    assert json.loads(header["estimator"])["class"] == "latentalign.align.procrustes:Procrustes"
    assert header["library_version"] == latentalign.__version__


def test_load_finds_what_save_wrote_without_a_suffix(tmp_path):
    aligner, X = fitted_procrustes()
    written = aligner.save(tmp_path / "a_to_b")
    assert written.name == "a_to_b.safetensors"
    for loaded in (latentalign.load(tmp_path / "a_to_b"), Procrustes.load(tmp_path / "a_to_b")):
        np.testing.assert_array_equal(loaded.transform(X), aligner.transform(X))


def test_nested_estimators_round_trip(tmp_path):
    chain = Chain(steps=[Center(), L2Normalize()]).fit(np.random.default_rng(0).standard_normal((20, 3)))
    back = latentalign.load(chain.save(tmp_path / "chain"))
    assert [class_path(type(s)) for s in back.steps_] == [
        "latentalign.preprocessing:Center",
        "latentalign.preprocessing:L2Normalize",
    ]


def test_format_1_files_still_load(tmp_path):
    aligner, X = fitted_procrustes()
    path = aligner.save(tmp_path / "v2.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 - not a dict
    doc = json.loads(header["estimator"])
    doc["class"] = "Procrustes"  # format 1 named the bare class and had no checksum
    del header["checksum"]
    old = tmp_path / "v1.safetensors"
    save_file(tensors, str(old), metadata={**header, "format_version": "1", "estimator": json.dumps(doc)})
    loaded = latentalign.load(old)
    assert type(loaded) is Procrustes
    np.testing.assert_array_equal(loaded.transform(X), aligner.transform(X))


def test_a_user_class_with_a_library_name_does_not_replace_the_library_class(tmp_path):
    aligner, X = fitted_procrustes()
    path = aligner.save(tmp_path / "library.safetensors")

    class Procrustes(latentalign.Procrustes):  # a user's subclass that reuses the name
        pass

    assert type(latentalign.load(path)) is latentalign.Procrustes
    user = Procrustes().fit(X, X)
    user_path = user.save(tmp_path / "user.safetensors")
    with pytest.raises(PersistenceError, match=r"outside latentalign.*trusted_modules=\('tests'|test_persistence"):
        latentalign.load(user_path)


def test_trusted_modules_load_a_users_own_estimator(tmp_path):
    aligner = MyProcrustes().fit(np.eye(3), np.eye(3))
    path = aligner.save(tmp_path / "mine")
    top = MyProcrustes.__module__.split(".")[0]
    with pytest.raises(PersistenceError, match="only latentalign's own modules are loaded by default"):
        latentalign.load(path)
    assert type(latentalign.load(path, trusted_modules=[top])) is MyProcrustes


class MyProcrustes(Procrustes):
    """A user's own aligner, defined at module level so that it can be found by path."""


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("os:system", "outside latentalign"),
        ("latentalign.persistence:save", "not a latentalign estimator class"),
        ("latentalign.align.procrustes:NoSuchClass", "cannot be found"),
        ("NoSuchClass", "which this version of latentalign does not know"),
    ],
)
def test_only_latentalign_estimator_classes_are_resolved(name, match):
    with pytest.raises(PersistenceError, match=match):
        resolve_class(name)


def test_a_file_naming_an_untrusted_class_is_refused_before_importing_it(tmp_path):
    path = tmp_path / "evil.safetensors"
    doc = {"class": "subprocess:Popen", "params": {}, "state": {}}
    save_file(
        {"x": torch.zeros(1)},
        str(path),
        metadata={"format": "latentalign", "format_version": "2", "library_version": "0", "estimator": json.dumps(doc)},
    )
    with pytest.raises(PersistenceError, match="names the class 'subprocess:Popen', outside latentalign"):
        latentalign.load(path)


def test_loading_as_the_wrong_class_says_which_class_the_file_holds(tmp_path):
    aligner, _ = fitted_procrustes()
    path = aligner.save(tmp_path / "map")
    with pytest.raises(PersistenceError, match="holds a Procrustes, not a Center"):
        Center.load(path)
