"""The embedding store under hostile or careless use: the cache key, the float32 cast, ``overwrite``."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from latentalign.encoders import TorchModuleEncoder
from latentalign.exceptions import PersistenceError
from latentalign.store import PrecisionLossWarning, cache_key, embed, write_embeddings
from latentalign.store.format import FORMAT_VERSION, ids_digest, inputs_digest


def linear_encoder(seed: int = 0) -> TorchModuleEncoder:
    torch.manual_seed(seed)
    return TorchModuleEncoder(torch.nn.Linear(4, 3), dim=3, name="lin", seed=seed)


def data(n: int = 12, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    X = np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)
    return X, [f"id{i:03d}" for i in range(n)]


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTALIGN_HOME", str(tmp_path / "home"))


# ------------------------------------------------------------------------------------------ the cache key
def test_new_inputs_under_the_same_ids_are_encoded_not_served_from_the_cache(tmp_path):
    enc = linear_encoder()
    X, ids = data()
    X_new = X + 1.0
    old = embed(enc, X, ids, dataset="d", progress=False)
    new = embed(enc, X_new, ids, dataset="d", progress=False)
    assert new.path != old.path
    np.testing.assert_allclose(new.to_numpy(), enc.encode(X_new, progress=False), atol=1e-6)
    # an explicit store_dir holding the old inputs' rows is refused, not read back
    embed(enc, X, ids, store_dir=tmp_path / "s", progress=False)
    with pytest.raises(ValueError, match="another key .*inputs"):
        embed(enc, X_new, ids, store_dir=tmp_path / "s", progress=False)


def test_ids_and_texts_with_separator_characters_do_not_collide():
    assert ids_digest(["a\x00b", "c"], "str") != ids_digest(["a", "b\x00c"], "str")
    assert ids_digest(["a\x01", "b"], "str") != ids_digest(["a", "\x01b"], "str")
    assert inputs_digest(["a\x00b", "c"]) != inputs_digest(["a", "b\x00c"])
    meta, settings = {"model_id": "m"}, {"normalize": False}
    assert cache_key(meta, None, ["a\x00b", "c"], settings, inputs=["x", "y"]) != cache_key(
        meta, None, ["a", "b\x00c"], settings, inputs=["x", "y"]
    )


def test_inputs_digest_keys_arrays_tensors_and_files_by_content(tmp_path):
    X = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert inputs_digest(X) == inputs_digest(X.copy())
    assert inputs_digest(X) != inputs_digest(X.reshape(3, 2))  # shape is part of the key
    assert inputs_digest(X) != inputs_digest(X.astype(np.float64))  # so is dtype
    assert inputs_digest(torch.from_numpy(X)) == inputs_digest(torch.from_numpy(X.copy()))
    assert inputs_digest(torch.from_numpy(X)) != inputs_digest(torch.from_numpy(X + 1))
    assert inputs_digest(torch.zeros(2, dtype=torch.bfloat16)) != inputs_digest(torch.ones(2, dtype=torch.bfloat16))
    f = tmp_path / "img.bin"
    f.write_bytes(b"one")
    before = inputs_digest([f])
    f.write_bytes(b"three")  # a rewritten file (new size and mtime) under the same path
    assert inputs_digest([f]) != before
    with pytest.raises(TypeError, match="cannot key by content .* Convert the inputs"):
        inputs_digest([object()])


def test_a_store_of_the_previous_format_version_is_recomputed_not_misread(tmp_path):
    enc = linear_encoder()
    X, ids = data()
    store = embed(enc, X, ids, store_dir=tmp_path / "s", progress=False)
    # an older store whose key happens to equal today's key but whose rows are other inputs' rows
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    X_other = X * 3
    other = embed(enc, X_other, ids, store_dir=tmp_path / "o", progress=False)
    for entry in manifest["shards"]:
        (tmp_path / "s" / entry["embeddings"]).write_bytes((tmp_path / "o" / entry["embeddings"]).read_bytes())
    manifest["version"] = FORMAT_VERSION - 1
    del manifest["manifest_sha256"]  # older versions wrote no digest
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(manifest))
    again = embed(enc, X, ids, store_dir=tmp_path / "s", progress=False)
    assert again.manifest["version"] == FORMAT_VERSION and again.key == store.key
    np.testing.assert_allclose(again.to_numpy(), enc.encode(X, progress=False), atol=1e-6)
    assert not np.allclose(again.to_numpy(), other.to_numpy())


# --------------------------------------------------------------------------------------- the float32 cast
def test_write_embeddings_rejects_values_that_overflow_float32(tmp_path):
    X = np.ones((5, 3))
    X[3, 1] = 1e39  # finite in float64, inf in float32
    with pytest.raises(ValueError, match=r"embeddings\[3, 1\] = 1e\+39 is NaN or infinite as float32"):
        write_embeddings(tmp_path / "s", X, list(range(5)))
    assert not (tmp_path / "s" / "manifest.json").exists()  # nothing was written


def test_write_embeddings_warns_when_values_flush_to_zero(tmp_path):
    X = np.ones((4, 2))
    X[1, 0] = 1e-50
    with pytest.warns(PrecisionLossWarning, match="1 nonzero values of embeddings .* stored as 0"):
        store = write_embeddings(tmp_path / "s", X, list(range(4)))
    assert store.get([1]).tolist() == [[0.0, 1.0]]
    X[1, 0] = 1e-40  # a float32 subnormal: stored, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = write_embeddings(tmp_path / "t", X, list(range(4)))
    assert store.get([1])[0, 0] > 0


# ------------------------------------------------------------------------------------------- overwrite
def test_overwrite_deletes_only_the_files_the_store_wrote(tmp_path):
    d = tmp_path / "s"
    write_embeddings(d, np.ones((5, 2)), list(range(5)), shard_size=2)
    (d / "embeddings" / "notes.txt").write_text("mine")
    (d / "metadata" / "labels.csv").write_text("mine")
    (d / "README").write_text("mine")
    store = write_embeddings(d, np.zeros((3, 2)), list(range(3)), overwrite=True)
    assert store.to_numpy().tolist() == [[0.0, 0.0]] * 3 and store.n_shards == 1
    assert (d / "embeddings" / "notes.txt").read_text() == "mine"
    assert (d / "metadata" / "labels.csv").read_text() == "mine"
    assert (d / "README").read_text() == "mine"
    assert sorted(p.name for p in (d / "embeddings").iterdir()) == ["emb_00000.npy", "notes.txt"]
    # embed(..., overwrite=True) goes through the same deletion
    X, ids = data()
    embed(linear_encoder(), X, ids, store_dir=d, overwrite=True, progress=False)
    assert (d / "embeddings" / "notes.txt").read_text() == "mine"


def test_overwrite_refuses_a_manifest_that_is_not_latentaligns(tmp_path):
    d = tmp_path / "s"
    (d / "embeddings").mkdir(parents=True)
    (d / "embeddings" / "data.npy").write_bytes(b"precious")
    (d / "manifest.json").write_text(json.dumps({"name": "my web app", "icons": []}))
    with pytest.raises(
        PersistenceError, match=r"not a latentalign embedding manifest \(format=None.*Nothing was deleted"
    ):
        write_embeddings(d, np.ones((2, 2)), [0, 1], overwrite=True)
    X, ids = data()
    with pytest.raises(PersistenceError, match="not a latentalign embedding manifest"):
        embed(linear_encoder(), X, ids, store_dir=d, overwrite=True, progress=False)
    (d / "manifest.json").write_text("[1, 2")  # not even JSON
    with pytest.raises(PersistenceError, match="not a latentalign embedding manifest"):
        write_embeddings(d, np.ones((2, 2)), [0, 1], overwrite=True)
    assert (d / "embeddings" / "data.npy").read_bytes() == b"precious"
    assert (d / "manifest.json").read_text() == "[1, 2"


def test_overwrite_refuses_unlisted_shard_files_and_paths_outside_the_store(tmp_path):
    d = tmp_path / "s"
    write_embeddings(d, np.ones((2, 2)), [0, 1])
    (d / "embeddings" / "emb_00007.npy").write_bytes(b"someone else's")  # a name a store would write
    with pytest.raises(PersistenceError, match=r"1 shard-named files that its manifest does not list .*emb_00007"):
        write_embeddings(d, np.ones((2, 2)), [0, 1], overwrite=True)
    assert (d / "embeddings" / "emb_00007.npy").read_bytes() == b"someone else's"
    assert (d / "embeddings" / "emb_00000.npy").exists()  # the refusal deleted nothing
    (d / "embeddings" / "emb_00007.npy").unlink()

    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["shards"][0]["embeddings"] = "../victim.txt"
    (d / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PersistenceError, match=r"lists '../victim.txt' as a shard file"):
        write_embeddings(d, np.ones((2, 2)), [0, 1], overwrite=True)
    assert victim.read_text() == "keep"


def test_a_new_store_never_replaces_shard_named_files_it_did_not_write(tmp_path):
    d = tmp_path / "s"
    (d / "embeddings").mkdir(parents=True)
    (d / "embeddings" / "emb_00000.npy").write_bytes(b"someone else's")
    X, ids = data()
    with pytest.raises(PersistenceError, match="writing a store there would replace them"):
        embed(linear_encoder(), X, ids, store_dir=d, progress=False)
    with pytest.raises(PersistenceError, match="writing a store there would replace them"):
        write_embeddings(d, X, ids)
    assert (d / "embeddings" / "emb_00000.npy").read_bytes() == b"someone else's"


def test_cli_embed_overwrite_keeps_a_users_file(tmp_path):
    pytest.importorskip("typer")
    from typer.testing import CliRunner

    from latentalign.cli import app

    src = tmp_path / "w.txt"
    src.write_text("cat\ndog\n")
    out = tmp_path / "w.npy"
    runner = CliRunner()
    first = runner.invoke(app, ["embed", "glove-50", str(src), "-o", str(out), "--no-progress"])
    if first.exit_code != 0 and "glove" in first.output.lower() and "not" in first.output.lower():
        pytest.skip(f"glove-50 is not available offline: {first.output.strip()[:200]}")
    assert first.exit_code == 0, first.output
    store = tmp_path / "w.store"
    (store / "embeddings" / "notes.txt").write_text("mine")
    again = runner.invoke(app, ["embed", "glove-50", str(src), "-o", str(out), "--overwrite", "--no-progress"])
    assert again.exit_code == 0, again.output
    assert (store / "embeddings" / "notes.txt").read_text() == "mine"
    (store / "manifest.json").write_text(json.dumps({"format": "something.else"}))
    refused = runner.invoke(app, ["embed", "glove-50", str(src), "-o", str(out), "--overwrite", "--no-progress"])
    assert refused.exit_code != 0 and "not a latentalign embedding manifest" in refused.output
    assert (store / "embeddings" / "notes.txt").read_text() == "mine"
