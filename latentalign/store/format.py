"""The store format: layout constants, ids, the content key and the manifest.

Everything that decides what a store directory holds and what its key is lives here, so that every
writer (:func:`latentalign.store.embed`, :func:`latentalign.store.write_embeddings` and
:func:`latentalign.dist.embed_distributed`) produces the same format under the same key.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from latentalign._optional import import_optional
from latentalign._version import __version__

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "EMB_DIR",
    "FORMAT",
    "FORMAT_VERSION",
    "LOCK",
    "MANIFEST",
    "META_DIR",
    "arrays_key",
    "cache_key",
    "canonical_json",
    "content_key",
    "ids_digest",
    "import_pyarrow",
    "new_manifest",
    "normalize_ids",
    "shard_names",
    "slug",
]

FORMAT = "latentalign.embeddings"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".lock"
EMB_DIR = "embeddings"
META_DIR = "metadata"
DEFAULT_SHARD_SIZE = 4096


def normalize_ids(ids: Any, name: str = "ids") -> tuple[list[Any], str]:
    """Return ``ids`` as a list of str or of int, and its type name; reject mixes and duplicates.

    Examples
    --------
    >>> import numpy as np
    >>> normalize_ids(np.array([3, 1]))
    ([3, 1], 'int')
    """
    if isinstance(ids, np.ndarray):
        ids = ids.tolist()
    try:
        out = list(ids)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of str or int, got {type(ids).__name__}.") from None
    if all(isinstance(i, str) for i in out):
        kind = "str"
    elif all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in out):
        out = [int(i) for i in out]
        kind = "int"
    else:
        bad = next(i for i in out if not isinstance(i, type(out[0])) or isinstance(i, bool))
        raise TypeError(
            f"{name} must be all str or all int (one type), got {type(out[0]).__name__} and "
            f"{type(bad).__name__} (e.g. {bad!r}). Convert them, e.g. [str(i) for i in {name}]."
        )
    if len(set(out)) != len(out):
        seen: set[Any] = set()
        dups = [i for i in out if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
        raise ValueError(
            f"{name} must be unique (rows are keyed by id), but {len(dups)} are repeated, e.g. {dups[:5]}."
        )
    return out, kind


def ids_digest(ids: list[Any], kind: str) -> str:
    """sha256 of normalised ids (see :func:`normalize_ids`); order matters.

    Examples
    --------
    >>> ids_digest(["a", "b"], "str") == ids_digest(["b", "a"], "str")
    False
    """
    h = hashlib.sha256(kind.encode())
    if kind == "int":
        h.update(np.asarray(ids, dtype=np.int64).tobytes())
    else:
        for chunk_start in range(0, len(ids), 65536):
            h.update("\x00".join(ids[chunk_start : chunk_start + 65536]).encode("utf-8", "surrogatepass"))
            h.update(b"\x01")
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text (sorted keys, no spaces) used for hashing and comparing metadata.

    Examples
    --------
    >>> canonical_json({"b": 1, "a": [1, 2]})
    '{"a":[1,2],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_key(
    encoder_metadata: dict[str, Any], dataset: str | None, n: int, ids_sha256: str, settings: dict[str, Any]
) -> str:
    """The store key from already digested ids: what :func:`cache_key` computes, for writers that hold
    the digest anyway (it is also recorded in the manifest).

    Examples
    --------
    >>> ids, kind = normalize_ids(["x", "y"])
    >>> k = content_key({"model_id": "m"}, "d", 2, ids_digest(ids, kind), {"normalize": False})
    >>> k == cache_key({"model_id": "m"}, "d", ["x", "y"], {"normalize": False})
    True
    """
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "encoder": encoder_metadata,
        "dataset": dataset,
        "n": int(n),
        "ids_sha256": ids_sha256,
        "settings": settings,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def cache_key(
    encoder_metadata: dict[str, Any], dataset: str | None, ids: Sequence[Hashable], settings: dict[str, Any]
) -> str:
    """sha256 naming the content of a store: encoder metadata + dataset + ids + settings.

    Examples
    --------
    >>> a = cache_key({"model_id": "m"}, "d", ["x", "y"], {"normalize": False})
    >>> a == cache_key({"model_id": "m"}, "d", ["x", "y"], {"normalize": False})
    True
    >>> a == cache_key({"model_id": "m"}, "d", ["y", "x"], {"normalize": False})
    False
    """
    ids_list, kind = normalize_ids(ids)
    return content_key(encoder_metadata, dataset, len(ids_list), ids_digest(ids_list, kind), settings)


def arrays_key(metadata: dict[str, Any], dataset: str | None, ids_sha256: str) -> str:
    """Key of a store of precomputed arrays (:func:`latentalign.store.write_embeddings`): no encoder ran,
    so it never equals a :func:`cache_key` and :func:`latentalign.store.embed` never reuses such a store.

    Examples
    --------
    >>> len(arrays_key({}, None, ids_digest([1, 2], "int")))
    64
    """
    return hashlib.sha256(
        canonical_json({"arrays": ids_sha256, "meta": metadata, "dataset": dataset}).encode()
    ).hexdigest()


def shard_names(index: int) -> tuple[str, str]:
    """Relative paths of shard ``index``'s embedding and id files.

    Examples
    --------
    >>> shard_names(3)
    ('embeddings/emb_00003.npy', 'metadata/metadata_00003.parquet')
    """
    return f"{EMB_DIR}/emb_{index:05d}.npy", f"{META_DIR}/metadata_{index:05d}.parquet"


def new_manifest(
    *,
    key: str,
    dim: int,
    n_total: int,
    id_kind: str,
    encoder_meta: dict[str, Any],
    dataset: str | None,
    ids_sha: str,
    settings: dict[str, Any],
    shard_size: int,
) -> dict[str, Any]:
    """The manifest of a store with no shard written yet.

    Examples
    --------
    >>> m = new_manifest(key="k", dim=4, n_total=10, id_kind="str", encoder_meta={}, dataset=None,
    ...                  ids_sha="s", settings={}, shard_size=5)
    >>> m["format"], m["complete"], m["shards"]
    ('latentalign.embeddings', False, [])
    """
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "key": key,
        "complete": False,
        "dim": int(dim),
        "dtype": "float32",
        "n_total": int(n_total),
        "id_type": id_kind,
        "ids_sha256": ids_sha,
        "shard_size": int(shard_size),
        "dataset": dataset,
        "settings": settings,
        "encoder": encoder_meta,
        "layout": {"embeddings": f"{EMB_DIR}/emb_NNNNN.npy", "metadata": f"{META_DIR}/metadata_NNNNN.parquet"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "latentalign": __version__,
        "shards": [],
    }


def import_pyarrow() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, or an error naming the ``data`` extra."""
    pa = import_optional("pyarrow", "data", purpose="the embedding store's id files (parquet)")
    pq = import_optional("pyarrow.parquet", "data", purpose="the embedding store's id files (parquet)")
    return pa, pq


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` (at most 60 characters).

    Examples
    --------
    >>> slug("sentence-transformers/all MiniLM")
    'sentence-transformers-all-MiniLM'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:60] or "x"
