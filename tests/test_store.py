"""Embedding store: round trips, id-keyed reads, the content-keyed cache, kill-and-resume, corruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from latentalign.encoders import TorchModuleEncoder
from latentalign.exceptions import PersistenceError
from latentalign.store import EmbeddingStore, align_by_id, cache_key, embed, pair_stores, write_embeddings

ROOT = Path(__file__).resolve().parents[1]


class CountingPre:
    """Preprocessing that counts the rows it sees (the encoder's real work)."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, batch):
        self.rows += len(batch)
        return torch.as_tensor(np.ascontiguousarray(batch))


def linear_encoder(seed: int = 0, d_in: int = 5, d_out: int = 3) -> TorchModuleEncoder:
    torch.manual_seed(seed)
    return TorchModuleEncoder(torch.nn.Linear(d_in, d_out), dim=d_out, preprocess=CountingPre(), name="lin", seed=seed)


def data(n: int = 50, d: int = 5, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    X = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return X, [f"id{i:04d}" for i in range(n)]


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTALIGN_HOME", str(tmp_path / "home"))


# ------------------------------------------------------------------------------------------ round trip
def test_write_read_round_trip_memmap_and_layout(tmp_path):
    X, ids = data(23)
    store = write_embeddings(tmp_path / "s", X, ids, shard_size=5)
    assert (len(store), store.dim, store.n_shards, store.complete) == (23, 5, 5, True)
    np.testing.assert_array_equal(store.to_numpy(), X)
    assert store.ids == ids
    shard = store.shard(1)
    assert isinstance(shard, np.memmap) and not shard.flags.writeable
    np.testing.assert_array_equal(shard, X[5:10])
    np.testing.assert_array_equal(store.get(["id0022", "id0003", "id0010"]), X[[22, 3, 10]])
    # embedding-reader "parquet_npy" layout: sorted .npy and .parquet files pair up row for row
    import pyarrow.parquet as pq

    npys = sorted((tmp_path / "s" / "embeddings").glob("*.npy"))
    parquets = sorted((tmp_path / "s" / "metadata").glob("*.parquet"))
    assert len(npys) == len(parquets) == 5
    for a, b in zip(npys, parquets):
        assert np.load(a).shape[0] == pq.read_table(b).num_rows
    assert pq.read_table(parquets[0]).column_names == ["id"]


def test_integer_ids_and_empty_store(tmp_path):
    X, _ = data(4)
    store = write_embeddings(tmp_path / "i", X, [10, 11, 12, 13], shard_size=3)
    assert store.ids == [10, 11, 12, 13] and store.manifest["id_type"] == "int"
    np.testing.assert_array_equal(store.get(np.array([13, 10])), X[[3, 0]])
    empty = write_embeddings(tmp_path / "e", np.zeros((0, 3), np.float32), [])
    assert len(empty) == 0 and empty.to_numpy().shape == (0, 3)


def test_iter_batches_streams_in_bounded_blocks(tmp_path):
    X, ids = data(37)
    store = write_embeddings(tmp_path / "s", X, ids, shard_size=10)
    blocks = list(store.iter_batches(batch_size=8))
    assert [b[1].shape[0] for b in blocks] == [8, 8, 8, 8, 5]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in blocks]), X)
    assert sum((b[0] for b in blocks), []) == ids
    assert all(not isinstance(b[1], np.memmap) for b in blocks)  # copies: the memory map can be closed
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        next(store.iter_batches(batch_size=0))


# ------------------------------------------------------------------------------------------ embed + cache
def test_embed_equals_encode_and_second_call_is_a_cache_hit(tmp_path):
    X, ids = data(50)
    enc = linear_encoder()
    store = embed(enc, X, ids, dataset="toy", shard_size=16, batch_size=7, progress=False)
    assert enc.preprocess.rows == 50
    np.testing.assert_allclose(store.to_numpy(), enc.encode(X, progress=False), rtol=1e-6, atol=1e-6)
    assert store.ids == ids and store.n_shards == 4
    assert store.path.parent == tmp_path / "home" / "embeddings"
    assert store.metadata["weights_fingerprint"] == enc.metadata["weights_fingerprint"]

    enc2 = linear_encoder()  # equal weights -> equal metadata -> same key
    again = embed(enc2, X, ids, dataset="toy", shard_size=16, progress=False)
    assert enc2.preprocess.rows == 0 and again.path == store.path

    # anything in the key changes the directory: settings, dataset, ids order, weights
    assert embed(enc2, X, ids, dataset="toy", normalize=True, progress=False).path != store.path
    assert embed(enc2, X, ids, dataset="other", progress=False).path != store.path
    assert embed(enc2, X[::-1], ids[::-1], dataset="toy", progress=False).path != store.path
    assert embed(linear_encoder(seed=1), X, ids, dataset="toy", progress=False).path != store.path
    normed = EmbeddingStore(embed(enc2, X, ids, dataset="toy", normalize=True, progress=False).path)
    np.testing.assert_allclose(np.linalg.norm(normed.to_numpy(), axis=1), 1.0, rtol=1e-5)


def test_cache_key_is_deterministic():
    meta = {"model_id": "m", "versions": {"torch": "x"}}
    texts = ["text a", "text b"]
    k = cache_key(meta, "d", ["a", "b"], {"normalize": False}, inputs=texts)
    assert k == cache_key(dict(meta), "d", ["a", "b"], {"normalize": False}, inputs=list(texts))
    assert k != cache_key(meta, "d", ["a", "b"], {"normalize": True}, inputs=texts)
    assert k != cache_key({**meta, "layer": 3}, "d", ["a", "b"], {"normalize": False}, inputs=texts)


def test_embed_keys_its_store_with_cache_key(tmp_path):
    X, ids = data(12)
    enc = linear_encoder()
    store = embed(enc, X, ids, dataset="toy", settings={"layer": 2}, progress=False)
    assert store.key == cache_key(enc.metadata, "toy", ids, {"normalize": False, "layer": 2}, inputs=X)
    assert store.path.name.endswith(store.key[:16])


def test_store_dir_with_another_key_and_overwrite(tmp_path):
    X, ids = data(10)
    embed(linear_encoder(0), X, ids, store_dir=tmp_path / "s", progress=False)
    with pytest.raises(ValueError, match="holds embeddings with another key"):
        embed(linear_encoder(1), X, ids, store_dir=tmp_path / "s", progress=False)
    store = embed(linear_encoder(1), X, ids, store_dir=tmp_path / "s", overwrite=True, progress=False)
    np.testing.assert_allclose(store.to_numpy(), linear_encoder(1).encode(X, progress=False), atol=1e-6)


def test_embed_input_errors(tmp_path):
    X, ids = data(6)
    enc = linear_encoder()
    with pytest.raises(ValueError, match="ids must be unique .* 1 are repeated"):
        embed(enc, X, ids[:5] + ids[:1], progress=False)
    with pytest.raises(ValueError, match="got 6 inputs but 5 ids"):
        embed(enc, X, ids[:5], progress=False)
    with pytest.raises(TypeError, match="ids must be all str or all int"):
        embed(enc, X, ids[:5] + [5], progress=False)
    with pytest.raises(TypeError, match="inputs must be a sequence with len"):
        embed(enc, iter(X), ids, progress=False)
    with pytest.raises(ValueError, match="shard_size must be >= 1, got 0"):
        embed(enc, X, ids, shard_size=0, progress=False)
    with pytest.raises(TypeError, match="encoder must follow the Encoder protocol"):
        embed(object(), X, ids, progress=False)
    with pytest.raises(ValueError, match="already holds a store"):
        write_embeddings(tmp_path / "w", X, ids)
        write_embeddings(tmp_path / "w", X, ids)
    with pytest.raises(ValueError, match="NaN or infinite"):
        write_embeddings(tmp_path / "n", np.full((1, 2), np.nan), ["a"])


# ------------------------------------------------------------------------------------------ kill and resume
WORKER = textwrap.dedent(
    """
    import sys, time
    import numpy as np, torch
    from latentalign.encoders import TorchModuleEncoder
    from latentalign.store import embed

    N, D = 400, 6

    class SlowPre:
        def __init__(self, sleep):
            self.sleep, self.rows = sleep, 0
        def __call__(self, batch):
            time.sleep(self.sleep)
            self.rows += len(batch)
            return torch.as_tensor(np.ascontiguousarray(batch))

    def build(sleep=0.0):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(D, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
        return TorchModuleEncoder(net, dim=4, preprocess=SlowPre(sleep), name="mlp", seed=0)

    def inputs():
        X = np.random.default_rng(0).standard_normal((N, D)).astype(np.float32)
        return X, [f"row{i:05d}" for i in range(N)]

    def main(store_dir):
        X, ids = inputs()
        embed(build(sleep=0.08), X, ids, store_dir=store_dir, shard_size=20, batch_size=10, progress=False)
    """
)


def _shards_listed(store_dir: Path) -> int:
    try:
        return len(json.loads((store_dir / "manifest.json").read_text())["shards"])
    except (OSError, ValueError, KeyError):
        return 0


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_result(tmp_path):
    (tmp_path / "resume_worker.py").write_text(WORKER)
    store_dir = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    # imported as a module (not run as __main__): the preprocessing's qualified name is part of the cache key
    code = f"import resume_worker; resume_worker.main({str(store_dir)!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while _shards_listed(store_dir) < 3:
            if proc.poll() is not None:
                pytest.fail(f"worker exited early: {proc.stderr.read().decode()[-2000:]}")
            if time.time() > deadline:
                pytest.fail("worker made no progress")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done = _shards_listed(store_dir)
    assert 3 <= done < 20
    assert (store_dir / ".lock").exists()  # left behind by the killed writer
    with pytest.raises(PersistenceError, match=r"is incomplete \(\d+ of 400 rows written"):
        EmbeddingStore(store_dir)
    partial = EmbeddingStore(store_dir, allow_incomplete=True)
    assert len(partial) == 20 * done

    sys.path.insert(0, str(tmp_path))
    try:
        import resume_worker
    finally:
        sys.path.remove(str(tmp_path))
    X, ids = resume_worker.inputs()
    enc = resume_worker.build()
    resumed = embed(enc, X, ids, store_dir=store_dir, shard_size=20, batch_size=10, progress=False)
    assert enc.preprocess.rows == 400 - 20 * done  # finished shards were not recomputed
    assert resumed.ids == ids and len(set(resumed.ids)) == 400
    clean = embed(
        resume_worker.build(), X, ids, store_dir=tmp_path / "clean", shard_size=20, batch_size=10, progress=False
    )
    np.testing.assert_array_equal(resumed.to_numpy(), clean.to_numpy())
    resumed.verify()
    assert not (store_dir / ".lock").exists()
    assert not [p for p in store_dir.rglob(".*.tmp")]
    assert len(list((store_dir / "embeddings").glob("*.npy"))) == 20


def test_live_lock_blocks_a_second_writer_and_stale_lock_is_taken_over(tmp_path):
    import socket

    X, ids = data(5)
    d = tmp_path / "s"
    d.mkdir()
    (d / ".lock").write_text(f"{socket.gethostname()} {os.getppid()}")  # a live process
    with pytest.raises(RuntimeError, match="another process .* is writing the store"):
        embed(linear_encoder(), X, ids, store_dir=d, progress=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (d / ".lock").write_text(f"{socket.gethostname()} {dead.pid}")
    assert len(embed(linear_encoder(), X, ids, store_dir=d, progress=False)) == 5


# ------------------------------------------------------------------------------------------ corruption
def test_truncated_shard_is_detected(tmp_path):
    X, ids = data(30)
    store = write_embeddings(tmp_path / "s", X, ids, shard_size=10)
    shard = store.path / "embeddings" / "emb_00001.npy"
    shard.write_bytes(shard.read_bytes()[:-7])
    with pytest.raises(
        PersistenceError, match=r"emb_00001.npy' is truncated or corrupt: \d+ bytes, the manifest records"
    ):
        EmbeddingStore(store.path)
    with pytest.raises(PersistenceError, match="cannot be read|has shape"):
        EmbeddingStore(store.path, verify=None).shard(1)


def test_flipped_byte_is_detected_by_checksum(tmp_path):
    X, ids = data(30)
    store = write_embeddings(tmp_path / "s", X, ids, shard_size=10)
    shard = store.path / "embeddings" / "emb_00002.npy"
    raw = bytearray(shard.read_bytes())
    raw[-3] ^= 0xFF
    shard.write_bytes(bytes(raw))
    EmbeddingStore(store.path)  # same size: the cheap check passes
    with pytest.raises(PersistenceError, match="emb_00002.npy' is corrupt: its sha256 differs"):
        EmbeddingStore(store.path, verify="checksum")
    with pytest.raises(PersistenceError, match="sha256 differs"):
        EmbeddingStore(store.path).verify()


def test_embed_refuses_a_corrupt_cached_store(tmp_path):
    X, ids = data(20)
    store = embed(linear_encoder(), X, ids, shard_size=5, progress=False)
    (store.path / "metadata" / "metadata_00003.parquet").unlink()
    with pytest.raises(PersistenceError, match="metadata_00003.parquet' is missing"):
        embed(linear_encoder(), X, ids, shard_size=5, progress=False)
    fixed = embed(linear_encoder(), X, ids, shard_size=5, progress=False, overwrite=True)
    assert fixed.ids == ids


def test_not_a_store_and_bad_manifest(tmp_path):
    with pytest.raises(PersistenceError, match="is not an embedding store: it has no manifest.json"):
        EmbeddingStore(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(PersistenceError, match="cannot be parsed"):
        EmbeddingStore(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(PersistenceError, match="not a latentalign embedding manifest"):
        EmbeddingStore(tmp_path)
    with pytest.raises(ValueError, match="verify must be"):
        EmbeddingStore(tmp_path, verify="sometimes")


# ------------------------------------------------------------------------------------------ pairing by id
def test_pair_stores_aligns_by_id_not_position(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"x{i}" for i in range(12)]
    A = rng.standard_normal((12, 4)).astype(np.float32)
    B = rng.standard_normal((12, 6)).astype(np.float32)
    perm = rng.permutation(12)
    sa = write_embeddings(tmp_path / "a", A, ids, shard_size=5)
    sb = write_embeddings(tmp_path / "b", B[perm], [ids[i] for i in perm], shard_size=4)
    got_ids, Xa, Xb = pair_stores(sa, tmp_path / "b")
    assert got_ids == ids
    np.testing.assert_array_equal(Xa, A)
    np.testing.assert_array_equal(Xb, B)
    assert sb.ids != ids  # stored in another order: only the ids tie the rows together


def test_pair_stores_mismatched_ids_error_and_intersect(tmp_path):
    A = np.eye(4, dtype=np.float32)
    write_embeddings(tmp_path / "a", A, ["a", "b", "c", "d"])
    write_embeddings(tmp_path / "b", A[:3], ["b", "c", "e"])
    with pytest.raises(ValueError, match=r"2 only in .* \(e\.g\. \['a', 'd'\]\), 1 only in .* \(e\.g\. \['e'\]\)"):
        pair_stores(tmp_path / "a", tmp_path / "b")
    ids, Xa, Xb = pair_stores(tmp_path / "a", tmp_path / "b", on_missing="intersect")
    assert ids == ["b", "c"]
    np.testing.assert_array_equal(Xa, A[[1, 2]])
    np.testing.assert_array_equal(Xb, A[[0, 1]])
    write_embeddings(tmp_path / "c", A[:1], ["zzz"])
    with pytest.raises(ValueError, match="have no id in common"):
        pair_stores(tmp_path / "a", tmp_path / "c", on_missing="intersect")
    write_embeddings(tmp_path / "i", A, [1, 2, 3, 4])
    with pytest.raises(TypeError, match="different id types"):
        pair_stores(tmp_path / "a", tmp_path / "i")
    with pytest.raises(ValueError, match="on_missing must be"):
        pair_stores(tmp_path / "a", tmp_path / "b", on_missing="drop")
    with pytest.raises(KeyError, match=r"1 of 2 ids are not in the store"):
        EmbeddingStore(tmp_path / "a").get(["a", "nope"])


def test_align_by_id_arrays():
    ids, A, B = align_by_id(
        ["p", "q", "r"], np.array([[1.0], [2.0], [3.0]]), ["r", "p", "q"], np.array([[30.0], [10.0], [20.0]])
    )
    assert ids == ["p", "q", "r"]
    np.testing.assert_array_equal(B.ravel(), [10.0, 20.0, 30.0])
    with pytest.raises(ValueError, match=r"1 only in the first \(e\.g\. \['r'\]\), 0 only in the second"):
        align_by_id(["p", "r"], np.zeros((2, 1)), ["p"], np.zeros((1, 1)))
    with pytest.raises(ValueError, match="X_a has 2 rows for 3 ids"):
        align_by_id(["p", "q", "r"], np.zeros((2, 1)), ["p"], np.zeros((1, 1)))


def test_more_store_error_messages(tmp_path):
    X, ids = data(6)
    store = write_embeddings(tmp_path / "s", X, ids, shard_size=4)
    with pytest.raises(IndexError, match="shard index 7 is out of range: the store has 2 shards"):
        store.shard(7)
    with pytest.raises(TypeError, match="ids must be a sequence of str or int"):
        write_embeddings(tmp_path / "t", X, 5)
    with pytest.raises(ValueError, match=r"embeddings must be 2-D \(n, dim\)"):
        write_embeddings(tmp_path / "t", X[0], ids)
    with pytest.raises(ValueError, match="embeddings have 6 rows but 5 ids"):
        write_embeddings(tmp_path / "t", X, ids[:5])
    with pytest.raises(ValueError, match="on_missing must be"):
        align_by_id(["a"], np.zeros((1, 1)), ["a"], np.zeros((1, 1)), on_missing="drop")
    with pytest.raises(ValueError, match="no id in common"):
        align_by_id(["a"], np.zeros((1, 1)), ["b"], np.zeros((1, 1)), on_missing="intersect")
    # an id file that lost rows (same manifest): detected when the ids are read
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = store.path / "metadata" / "metadata_00001.parquet"
    pq.write_table(pa.table({"id": ["only-one"]}), meta)
    with pytest.raises(PersistenceError, match="holds 1 ids but the shard has 2 rows"):
        _ = EmbeddingStore(store.path, verify=None).ids
    meta.write_bytes(b"not parquet")
    with pytest.raises(PersistenceError, match="the id file of shard 1 .* cannot be read"):
        EmbeddingStore(store.path, verify=None).shard_ids(1)
    manifest = json.loads((store.path / "manifest.json").read_text())
    manifest["version"] = 99
    (store.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PersistenceError, match="written by a newer latentalign"):
        EmbeddingStore(store.path)
