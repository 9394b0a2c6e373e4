"""A corrupt or edited store is detected before any row is returned, never read silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentalign.exceptions import PersistenceError
from latentalign.store import EmbeddingStore, pair_stores, write_embeddings
from latentalign.store.integrity import manifest_digest

N, DIM, SHARD = 12, 4, 4  # three equal-size shards


def rows(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, DIM)).astype(np.float32)


def ids() -> list[str]:
    return [f"id{i:02d}" for i in range(N)]


def make_store(path: Path, seed: int = 0) -> EmbeddingStore:
    return write_embeddings(path, rows(seed), ids(), shard_size=SHARD)


def touch_later(path: Path) -> None:
    # a changed file is re-verified in this process when its mtime changes; an in-place edit within the
    # file system's timestamp granularity would keep it, so tests move the mtime on explicitly
    st_ = path.stat()
    os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 10**9))


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    touch_later(path)


def swap(a: Path, b: Path) -> None:
    tmp = a.with_name("swap.tmp")
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)


def manifest_of(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def rewrite_manifest(path: Path, manifest: dict, *, resign: bool = True) -> None:
    if resign:  # a well-formed digest, so that the shape check is what is tested
        manifest["manifest_sha256"] = manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


# ------------------------------------------------------------------------------------ shard contents
@pytest.mark.parametrize("read", ["to_numpy", "get", "iter_batches", "ids", "shard"])
def test_a_flipped_byte_in_a_shard_is_caught_on_first_read_by_default(tmp_path, read):
    make_store(tmp_path / "s")
    field = "metadata" if read == "ids" else "embeddings"
    flip_last_byte(tmp_path / "s" / manifest_of(tmp_path / "s")["shards"][1][field])
    store = EmbeddingStore(tmp_path / "s")  # same size: opening alone cannot tell
    reads = {
        "to_numpy": lambda: store.to_numpy(),
        "get": lambda: store.get(["id05"]),
        "iter_batches": lambda: list(store.iter_batches(5)),
        "ids": lambda: store.ids,
        "shard": lambda: store.shard(1),
    }
    with pytest.raises(PersistenceError, match=rf"shard 1 {field} file .* is corrupt: its sha256 differs"):
        reads[read]()


def test_rows_of_intact_shards_are_still_readable_when_another_is_corrupt(tmp_path):
    make_store(tmp_path / "s")
    flip_last_byte(tmp_path / "s" / "embeddings" / "emb_00002.npy")
    store = EmbeddingStore(tmp_path / "s")
    np.testing.assert_array_equal(store.get(["id00", "id05"]), rows()[[0, 5]])
    with pytest.raises(PersistenceError, match="shard 2 embeddings file"):
        store.get(["id09"])


@pytest.mark.parametrize("what", ["embeddings", "both"])
def test_swapped_equal_size_shards_are_caught(tmp_path, what):
    make_store(tmp_path / "s")
    d = tmp_path / "s"
    swap(d / "embeddings" / "emb_00000.npy", d / "embeddings" / "emb_00001.npy")
    if what == "both":  # ids swapped along: each file still pairs with its ids, but not with its entry
        swap(d / "metadata" / "metadata_00000.parquet", d / "metadata" / "metadata_00001.parquet")
    with pytest.raises(PersistenceError, match="shard [01] .*is corrupt"):
        EmbeddingStore(d).to_numpy()


def test_pair_stores_refuses_a_store_with_swapped_shards(tmp_path):
    make_store(tmp_path / "a")
    make_store(tmp_path / "b", seed=1)
    swap(tmp_path / "b" / "embeddings" / "emb_00000.npy", tmp_path / "b" / "embeddings" / "emb_00001.npy")
    with pytest.raises(PersistenceError, match="is corrupt"):
        pair_stores(tmp_path / "a", tmp_path / "b")


def test_a_fresh_process_catches_an_in_place_flip_with_an_unchanged_mtime(tmp_path):
    make_store(tmp_path / "s")
    path = tmp_path / "s" / "embeddings" / "emb_00000.npy"
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # bit rot leaves no trace in the metadata
    code = f"from latentalign.store import EmbeddingStore; EmbeddingStore({str(tmp_path / 's')!r}).to_numpy()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "PersistenceError" in out.stderr and "emb_00000.npy" in out.stderr and "is corrupt" in out.stderr


def test_verify_none_and_size_skip_the_checksum_and_say_so(tmp_path):
    make_store(tmp_path / "s")
    flip_last_byte(tmp_path / "s" / "embeddings" / "emb_00000.npy")
    assert EmbeddingStore(tmp_path / "s", verify=None).to_numpy().shape == (N, DIM)  # explicitly unchecked
    assert EmbeddingStore(tmp_path / "s", verify="size").to_numpy().shape == (N, DIM)
    with pytest.raises(PersistenceError, match="is corrupt"):
        EmbeddingStore(tmp_path / "s", verify="checksum")
    with pytest.raises(ValueError, match="verify must be one of 'read', 'size', 'checksum' or None, got 'always'"):
        EmbeddingStore(tmp_path / "s", verify="always")


def test_a_file_repaired_after_a_failed_check_is_read(tmp_path):
    make_store(tmp_path / "s")
    path = tmp_path / "s" / "embeddings" / "emb_00001.npy"
    good = path.read_bytes()
    flip_last_byte(path)
    with pytest.raises(PersistenceError):
        EmbeddingStore(tmp_path / "s").to_numpy()
    path.write_bytes(good)
    touch_later(path)
    np.testing.assert_array_equal(EmbeddingStore(tmp_path / "s").to_numpy(), rows())


def test_a_file_corrupted_after_it_was_verified_is_caught_by_the_next_store_object(tmp_path):
    make_store(tmp_path / "s")
    np.testing.assert_array_equal(EmbeddingStore(tmp_path / "s").to_numpy(), rows())
    flip_last_byte(tmp_path / "s" / "embeddings" / "emb_00000.npy")
    with pytest.raises(PersistenceError, match="is corrupt"):
        EmbeddingStore(tmp_path / "s").to_numpy()


# ---------------------------------------------------------------------------------- the manifest
def test_a_manifest_edited_after_writing_fails_its_digest(tmp_path):
    make_store(tmp_path / "s")
    m = manifest_of(tmp_path / "s")
    m["shards"][0], m["shards"][1] = m["shards"][1], m["shards"][0]
    m["shards"][0]["index"], m["shards"][1]["index"] = 0, 1  # renumbered, so only the digest can tell
    m["shards"][1]["start"], m["shards"][0]["start"] = SHARD, 0
    rewrite_manifest(tmp_path / "s", m, resign=False)
    with pytest.raises(PersistenceError, match="differs from the 'manifest_sha256' recorded"):
        EmbeddingStore(tmp_path / "s")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../../outside.npy", r"leaves the store directory \(absolute or '\.\.'\)"),
        ("/etc/passwd", r"leaves the store directory"),
        ("embeddings/../../x/emb_00000.npy", r"leaves the store directory"),
        ("embeddings/other.npy", "is not a shard file name"),
        (7, "must be a string, got 7"),
    ],
)
def test_shard_paths_must_stay_inside_the_store(tmp_path, path, reason):
    make_store(tmp_path / "s")
    m = manifest_of(tmp_path / "s")
    m["shards"][0]["embeddings"] = path
    rewrite_manifest(tmp_path / "s", m)
    with pytest.raises(PersistenceError, match=rf"shard entry 0: embeddings path .*{reason}"):
        EmbeddingStore(tmp_path / "s", verify=None)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(shards={"0": 1}), "'shards' must be a list, got dict"),
        (lambda m: m.pop("shards"), "'shards' must be a list, got NoneType"),
        (lambda m: m.update(dim="4"), "'dim' must be an integer >= 1, got '4'"),
        (lambda m: m.update(complete="yes"), "'complete' must be true or false"),
        (lambda m: m.update(n_total=-1), "'n_total' must be an integer >= 0"),
        (lambda m: m.update(n_total=99), "its shards hold 12 rows, but the complete store records n_total=99"),
        (lambda m: m.update(dtype="float64"), "'dtype' must be 'float32'"),
        (lambda m: m["shards"][1].pop("rows"), "shard entry 1: 'rows' must be an integer >= 1, got None"),
        (lambda m: m["shards"][1].update(rows=True), "shard entry 1: 'rows' must be an integer"),
        (lambda m: m["shards"][2].update(index=5), "shard entry 2: is numbered 5"),
        (lambda m: m["shards"][2].update(start=3), "shard entry 2: starts at row 3"),
        (lambda m: m["shards"][0].update(sha256="abc"), "'sha256' must be 64 lowercase hex digits"),
        (lambda m: m["shards"].append([1, 2]), "shard entry 3: must be an object, got list"),
        (lambda m: m.update(encoder=[1]), "'encoder' must be an object"),
    ],
)
def test_a_manifest_of_the_wrong_shape_is_a_persistence_error(tmp_path, edit, message):
    make_store(tmp_path / "s")
    m = manifest_of(tmp_path / "s")
    edit(m)
    rewrite_manifest(tmp_path / "s", m)
    with pytest.raises(PersistenceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EmbeddingStore(tmp_path / "s", verify=None)


@pytest.mark.parametrize("text", ["[1, 2]", '"a string"', "null", "[" * 100_000 + "]" * 100_000, '{"format": 3}'])
def test_manifest_text_that_is_not_an_object_is_a_persistence_error(tmp_path, text):
    make_store(tmp_path / "s")
    (tmp_path / "s" / "manifest.json").write_text(text)
    with pytest.raises(PersistenceError):
        EmbeddingStore(tmp_path / "s")


def test_a_store_written_before_manifests_carried_a_digest_still_opens(tmp_path):
    make_store(tmp_path / "s")
    m = manifest_of(tmp_path / "s")
    del m["manifest_sha256"]
    rewrite_manifest(tmp_path / "s", m, resign=False)
    np.testing.assert_array_equal(EmbeddingStore(tmp_path / "s").to_numpy(), rows())


# ------------------------------------------------------------------------------------------- fuzzing
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _leaf_paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaf_paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaf_paths(v, (*prefix, i))
    yield prefix


def _assert_correct_or_refused(path: Path) -> None:
    try:
        store = EmbeddingStore(path)
        X, got_ids = store.to_numpy(), store.ids
    except PersistenceError:
        return
    np.testing.assert_array_equal(X, rows())
    assert got_ids == ids()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    path = tmp_path_factory.mktemp("pristine") / "s"
    make_store(path)
    return path


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), resign=st.booleans())
def test_fuzzed_manifests_give_persistence_error_or_the_right_rows(pristine, tmp_path_factory, data, resign):
    import shutil

    work = tmp_path_factory.mktemp("fuzz") / "s"
    shutil.copytree(pristine, work)
    m = manifest_of(work)
    target = data.draw(st.sampled_from([p for p in _leaf_paths(m) if p]))
    parent = m
    for key in target[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[target[-1]]
    else:
        parent[target[-1]] = data.draw(_JSON)
    rewrite_manifest(work, m, resign=resign)
    _assert_correct_or_refused(work)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_shard_bytes_give_persistence_error_or_the_right_rows(pristine, tmp_path_factory, data):
    import shutil

    work = tmp_path_factory.mktemp("fuzzb") / "s"
    shutil.copytree(pristine, work)
    files = sorted(p for p in work.rglob("*") if p.is_file() and p.name != "manifest.json")
    target = data.draw(st.sampled_from(files))
    blob = bytearray(target.read_bytes())
    action = data.draw(st.sampled_from(["flip", "truncate", "append"]))
    if action == "flip":
        blob[data.draw(st.integers(0, len(blob) - 1))] ^= data.draw(st.integers(1, 255))
    elif action == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:
        blob += data.draw(st.binary(min_size=1, max_size=16))
    target.write_bytes(bytes(blob))
    touch_later(target)
    store = None
    with pytest.raises(PersistenceError):  # any changed byte changes the file's sha256
        store = EmbeddingStore(work)
        store.to_numpy(), store.ids


# ------------------------------------------------------------------------------- the paths that read
def test_embed_does_not_serve_a_corrupted_finished_store(tmp_path, monkeypatch):
    import torch

    from latentalign.encoders import TorchModuleEncoder
    from latentalign.store import embed

    monkeypatch.setenv("LATENTALIGN_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    enc = TorchModuleEncoder(torch.nn.Linear(DIM, 3), dim=3, name="lin")
    X = rows()
    store = embed(enc, X, ids(), store_dir=tmp_path / "e", shard_size=SHARD, progress=False)
    flip_last_byte(store.path / "embeddings" / "emb_00001.npy")
    again = embed(enc, X, ids(), store_dir=tmp_path / "e", shard_size=SHARD, progress=False)  # the fast path
    with pytest.raises(PersistenceError, match="shard 1 embeddings file .* is corrupt"):
        again.to_numpy()
    fixed = embed(enc, X, ids(), store_dir=tmp_path / "e", shard_size=SHARD, progress=False, overwrite=True)
    np.testing.assert_allclose(fixed.to_numpy(), enc.encode(X, progress=False), atol=1e-6)


def test_the_cli_refuses_a_corrupted_store_input_and_writes_no_map(tmp_path):
    from typer.testing import CliRunner

    from latentalign.cli import app

    make_store(tmp_path / "a")
    make_store(tmp_path / "b", seed=1)
    swap(tmp_path / "b" / "embeddings" / "emb_00000.npy", tmp_path / "b" / "embeddings" / "emb_00002.npy")
    out = tmp_path / "map.safetensors"
    result = CliRunner().invoke(app, ["fit", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out)])
    assert result.exit_code != 0
    assert "is corrupt" in str(result.output) + str(result.exception)
    assert not out.exists()
