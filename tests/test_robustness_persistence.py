"""Damaged or forged saved maps never load silently; complex torch inputs are refused, never cut to real.

A map file (``latentalign.save``) or a Stitcher file whose bytes changed after saving, that holds NaN
weights, malformed JSON, or arrays of the wrong shape raises PersistenceError; the fuzz tests below flip
bits, truncate files and forge descriptions (with a correct checksum, so the checks behind it are reached).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

import latentalign
from latentalign import Procrustes, UniversalSpace
from latentalign.align import list_aligners, make_aligner
from latentalign.base import BaseEstimator
from latentalign.exceptions import PersistenceError
from latentalign.functional.retrieval import retrieval_scores
from latentalign.functional.similarity import cknna, linear_cka, mutual_knn, similarity_scores
from latentalign.persistence import MAX_DEPTH, content_digest
from latentalign.stitching import Stitcher


def planted(n: int = 40, d: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return X, X @ Q


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A fitted Procrustes, its file's bytes, header and tensors, and its output on X."""
    X, Y = planted()
    aligner = Procrustes().fit(X, Y)
    path = aligner.save(tmp_path_factory.mktemp("map") / "map.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
    return {"bytes": path.read_bytes(), "header": header, "tensors": tensors, "X": X, "Z": aligner.transform(X)}


def forge(path, header, tensors, doc=None, **fields):
    """Write a latentalign file whose checksum matches its (possibly malformed) contents."""
    text = header["estimator"] if doc is None else (doc if isinstance(doc, str) else json.dumps(doc))
    meta = {**header, "estimator": text, "checksum": content_digest(tensors, text), **fields}
    save_file(tensors, str(path), metadata=meta)
    return path


def test_one_flipped_bit_in_a_tensor_is_caught(saved, tmp_path):
    data = bytearray(saved["bytes"])
    data[-3] ^= 0x01  # the last tensor's bytes sit at the end of the file
    path = tmp_path / "flipped.safetensors"
    path.write_bytes(bytes(data))
    with pytest.raises(PersistenceError, match="fails its integrity check: the checksum in its header"):
        latentalign.load(path)


def test_a_changed_description_is_caught(saved, tmp_path):
    doc = json.loads(saved["header"]["estimator"])
    doc["params"]["__dict__"]["center"] = False
    path = tmp_path / "edited.safetensors"
    save_file(saved["tensors"], str(path), metadata={**saved["header"], "estimator": json.dumps(doc)})
    with pytest.raises(PersistenceError, match="fails its integrity check"):
        latentalign.load(path)


@pytest.mark.parametrize("version", ["3", None])
def test_nan_weights_are_refused_naming_the_tensor(saved, tmp_path, version):
    tensors = dict(saved["tensors"])
    tensors["state.rotation_."] = tensors["state.rotation_."].clone()
    tensors["state.rotation_."][0, 0] = float("nan")
    path = tmp_path / "nan.safetensors"
    if version is None:  # a format-2 file from before checksums: still checked for finiteness
        header = {k: v for k, v in saved["header"].items() if k != "checksum"}
        save_file(tensors, str(path), metadata={**header, "format_version": "2"})
    else:
        forge(path, saved["header"], tensors)
    with pytest.raises(PersistenceError, match=r"holds the tensor 'state.rotation_.' with NaN or infinite values"):
        latentalign.load(path)


def test_format_2_files_without_a_checksum_still_load(saved, tmp_path):
    header = {k: v for k, v in saved["header"].items() if k != "checksum"}
    path = tmp_path / "v2.safetensors"
    save_file(saved["tensors"], str(path), metadata={**header, "format_version": "2"})
    np.testing.assert_array_equal(latentalign.load(path).transform(saved["X"]), saved["Z"])


def test_a_format_3_file_without_its_checksum_is_refused(saved, tmp_path):
    header = {k: v for k, v in saved["header"].items() if k != "checksum"}
    path = tmp_path / "stripped.safetensors"
    save_file(saved["tensors"], str(path), metadata=header)
    with pytest.raises(PersistenceError, match=r"checksum in its header \(None\) does not match"):
        latentalign.load(path)


def _nested(depth):
    value: object = 0
    for _ in range(depth):
        value = [value]
    return value


def _doc(saved, **changes):
    doc = json.loads(saved["header"]["estimator"])
    doc.update(changes)
    return doc


def _state(saved, **changes):
    doc = json.loads(saved["header"]["estimator"])
    doc["state"]["__dict__"].update(changes)
    return doc


MALFORMED = {
    "not an object": (lambda s: [1, 2], "an estimator description should be a JSON dict, got list"),
    "class not a string": (lambda s: _doc(s, **{"class": 7}), "'class' should be a JSON str, got int"),
    "params a list": (lambda s: _doc(s, params=[1]), "'params' should be a JSON dict, got list"),
    "state missing": (lambda s: {k: v for k, v in _doc(s).items() if k != "state"}, "'state' should be"),
    "deep nesting": (lambda s: _state(s, extra_=_nested(MAX_DEPTH + 5)), f"nests deeper than {MAX_DEPTH}"),
    "very deep nesting": (lambda s: "[" * 100_000 + "]" * 100_000, "corrupted estimator description|nests deeper"),
    "not JSON": (lambda s: "{not json", "corrupted estimator description"),
    "tensor reference not a string": (
        lambda s: _state(s, rotation_={"__tensor__": 3}),
        "a tensor reference should be a JSON str",
    ),
    "missing tensor": (lambda s: _state(s, rotation_={"__tensor__": "nope"}), "missing the tensor 'nope'"),
    "private state entry": (lambda s: _state(s, _secret=1), "'_secret', not a fitted attribute name"),
    "method as state": (lambda s: _state(s, transform=1), "'transform', not a fitted attribute name"),
    "invalid parameter value": (
        lambda s: _doc(s, params={"__dict__": {"pad": "bogus"}}),
        "saved parameters of latentalign.align.procrustes:Procrustes are not valid",
    ),
    "unknown parameter": (lambda s: _doc(s, params={"nope": 1}), "saved parameters .* are not valid"),
    "n_features_in_ not an int": (lambda s: _state(s, n_features_in_="4"), "n_features_in_ .* positive integer"),
    "rotation of the wrong shape": (
        lambda s: _state(s, n_features_out_=2),
        r"rotation_ .* has shape \(4, 4\); expected \(4, 2\)",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_each_malformed_description_raises_persistence_error(saved, tmp_path, case):
    make, match = MALFORMED[case]
    path = forge(tmp_path / "bad.safetensors", saved["header"], saved["tensors"], make(saved))
    with pytest.raises(PersistenceError, match=match):
        latentalign.load(path)


@pytest.mark.parametrize("version", ["2.0", "abc", "", " 3", "-1", "3e0", "٣", "99"])
def test_a_bad_format_version_raises_persistence_error(saved, tmp_path, version):
    path = forge(tmp_path / "v.safetensors", saved["header"], saved["tensors"], format_version=version)
    with pytest.raises(PersistenceError, match="format_version|reads formats 1 to 3"):
        latentalign.load(path)


def test_a_truncated_file_raises_persistence_error(saved, tmp_path):
    path = tmp_path / "short.safetensors"
    for size in (0, 5, len(saved["bytes"]) // 2, len(saved["bytes"]) - 1):
        path.write_bytes(saved["bytes"][:size])
        with pytest.raises(PersistenceError, match="not a readable safetensors file"):
            latentalign.load(path)


def _same_as_saved(loaded, saved):
    return type(loaded) is Procrustes and np.array_equal(loaded.transform(saved["X"]), saved["Z"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_damaged_bytes_give_persistence_error_or_the_original(saved, tmp_path, data):
    raw = bytearray(saved["bytes"])
    for _ in range(data.draw(st.integers(1, 4), label="n_flips")):
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        raw[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw)), label="size")]
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(bytes(raw))
    try:
        loaded = latentalign.load(path)
    except PersistenceError:
        return
    assert _same_as_saved(loaded, saved)  # only flips in unchecked header text (e.g. library_version)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "class",
        "params",
        "state",
        "__dict__",
        "__tensor__",
        "__ndarray__",
        "__strings__",
        "__estimator__",
        "__tuple__",
        "rotation_",
        "n_features_in_",
        "center",
        "pad",
    ]
)


def _mutate(value, draw):
    """Replace one node of a JSON document (picked by the fuzzer) with arbitrary JSON or a renamed key."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        out = dict(value)
        if draw(st.booleans()):
            out[key] = _mutate(value[key], draw)
        else:
            out[draw(KEYS)] = out.pop(key)
        return out
    if isinstance(value, list) and value and draw(st.booleans()):
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], _mutate(value[i], draw), *value[i + 1 :]]
    return draw(JSON)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_forged_descriptions_give_persistence_error_or_an_estimator(saved, tmp_path, data):
    doc = _mutate(json.loads(saved["header"]["estimator"]), data.draw)
    path = forge(tmp_path / "forged.safetensors", saved["header"], saved["tensors"], doc)
    try:
        loaded = latentalign.load(path)
    except PersistenceError:
        return
    assert isinstance(loaded, BaseEstimator)  # a well-formed file, just not the one saved


# -- Stitcher files ----------------------------------------------------------------------------------


@pytest.fixture()
def stitcher_file(tmp_path):
    X, Y = planted(d=8)
    head = torch.nn.Linear(8, 3).double()
    path = Stitcher(None, Procrustes().fit(X, Y), head).save(tmp_path / "s.safetensors")
    return path, torch.as_tensor(X)


def test_a_stitcher_file_round_trips_with_its_checksum(stitcher_file):
    path, X = stitcher_file
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata()["checksum"].startswith("blake2b-256:")
    head = torch.nn.Linear(8, 3).double()
    assert Stitcher.load(path, head_b=head)(X).shape == (len(X), 3)


def test_a_flipped_bit_in_a_stitcher_file_is_caught(stitcher_file):
    path, _ = stitcher_file
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(PersistenceError, match="fails its integrity check"):
        Stitcher.load(path, head_b=torch.nn.Linear(8, 3).double())


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"format_version": "1.5"}, "format_version '1.5'"),
        ({"format_version": "1", "names": "[1, 2]"}, "malformed header"),
        ({"format_version": "1", "map": '{"type": 3}'}, "malformed header"),
        ({"format_version": "1", "nan": True}, "holds the tensor .* with NaN or infinite values"),
    ],
)
def test_malformed_stitcher_files_raise_persistence_error(stitcher_file, fields, match):
    path, _ = stitcher_file
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
    del header["checksum"]  # format-1 files have none, so the checks behind the checksum are reached
    if fields.pop("nan", False):
        name = sorted(tensors)[0]
        tensors[name] = torch.full_like(tensors[name], float("inf"))
    save_file(tensors, str(path), metadata={**header, **fields})
    with pytest.raises(PersistenceError, match=match):
        Stitcher.load(path, head_b=torch.nn.Linear(8, 3).double())


# -- the command line ----------------------------------------------------------------------------------


def test_evaluate_with_a_corrupt_map_exits_non_zero_with_one_line(saved, tmp_path):
    from latentalign.cli import app

    X = saved["X"].astype(np.float32)
    np.save(tmp_path / "q.npy", X)
    np.save(tmp_path / "k.npy", X)
    data = bytearray(saved["bytes"])
    data[-3] ^= 0x01
    (tmp_path / "map.safetensors").write_bytes(bytes(data))
    args = ["evaluate", tmp_path / "q.npy", tmp_path / "k.npy", "--map", tmp_path / "map.safetensors"]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "-o", tmp_path / "runs"]])
    assert result.exit_code != 0
    assert "fails its integrity check" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


# -- complex torch tensors -----------------------------------------------------------------------------


def _aligner(name: str):
    return make_aligner(name, **({"method": "emd"} if name == "ot" else {}))


def _complex(n: int = 30, d: int = 4, seed: int = 0) -> torch.Tensor:
    X, _ = planted(n, d, seed)
    return torch.complex(torch.as_tensor(X), torch.as_tensor(X[::-1].copy()))


COMPLEX_CALLS = {
    **{f"{name}.fit": (lambda name=name: _aligner(name).fit(_complex(), _complex(seed=1))) for name in list_aligners()},
    **{
        f"{name}.transform": (
            lambda name=name: _aligner(name).fit(*map(torch.as_tensor, planted(30))).transform(_complex())
        )
        for name in list_aligners()
    },
    "UniversalSpace.fit": lambda: UniversalSpace().fit({"a": _complex(), "b": _complex(seed=1)}),
    "UniversalSpace.translate": lambda: (
        UniversalSpace()
        .fit({"a": torch.as_tensor(planted(30)[0]), "b": torch.as_tensor(planted(30)[1])})
        .translate(_complex(), "a", "b")
    ),
    "retrieval_scores": lambda: retrieval_scores(_complex(), _complex(seed=1)),
    "similarity_scores": lambda: similarity_scores(_complex(), _complex(seed=1)),
    "linear_cka": lambda: linear_cka(_complex(), _complex(seed=1)),
    "mutual_knn": lambda: mutual_knn(_complex(), _complex(seed=1), k=3),
    "cknna": lambda: cknna(_complex(), _complex(seed=1), k=3),
}


@pytest.mark.parametrize("call", list(COMPLEX_CALLS))
def test_complex_torch_tensors_are_refused_not_cut_to_their_real_part(call):
    with pytest.raises(ValueError, match="Complex data not supported"):
        COMPLEX_CALLS[call]()
