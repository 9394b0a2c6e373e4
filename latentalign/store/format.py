"""The store format: layout constants, ids, the content key and the manifest.

Everything that decides what a store directory holds and what its key is lives here, so that every
writer (:func:`latentalign.store.embed`, :func:`latentalign.store.write_embeddings` and
:func:`latentalign.dist.embed_distributed`) produces the same format under the same key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import time
from collections.abc import Hashable, Iterator, Sequence
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
    "SHARD_FILE",
    "arrays_key",
    "cache_key",
    "canonical_json",
    "content_key",
    "ids_digest",
    "import_pyarrow",
    "inputs_digest",
    "new_manifest",
    "normalize_ids",
    "shard_names",
    "slug",
]

FORMAT = "latentalign.embeddings"
# 2: the key hashes the inputs as well as the ids, both length-prefixed (version 1 hashed NUL-joined ids
# only); stores of an older version are recomputed by ``embed``, never reused.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
LOCK = ".lock"
EMB_DIR = "embeddings"
META_DIR = "metadata"
DEFAULT_SHARD_SIZE = 4096
#: The relative paths of a store's shard files; a manifest listing any other path is refused.
SHARD_FILE = re.compile(rf"^({EMB_DIR}/emb_\d{{5,}}\.npy|{META_DIR}/metadata_\d{{5,}}\.parquet)$")


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


def _framed(tag: bytes, data: bytes) -> bytes:
    """``tag`` + 8-byte length + ``data``: concatenations of framed items are unambiguous."""
    return tag + struct.pack("<Q", len(data)) + data


def _update_chunked(h: Any, parts: Iterator[bytes], chunk: int = 65536) -> None:
    buf: list[bytes] = []
    for part in parts:
        buf.append(part)
        if len(buf) == chunk:
            h.update(b"".join(buf))
            buf = []
    h.update(b"".join(buf))


def ids_digest(ids: list[Any], kind: str) -> str:
    r"""sha256 of normalised ids (see :func:`normalize_ids`); order matters.

    Every str id is length-prefixed, so no two different id lists share a digest (a NUL or any other
    character inside an id cannot shift an id boundary).

    Examples
    --------
    >>> ids_digest(["a", "b"], "str") == ids_digest(["b", "a"], "str")
    False
    >>> ids_digest(["a\x00b", "c"], "str") == ids_digest(["a", "b\x00c"], "str")
    False
    """
    h = hashlib.sha256(_framed(b"K", kind.encode()))
    h.update(struct.pack("<Q", len(ids)))
    if kind == "int":
        h.update(np.asarray(ids, dtype="<i8").tobytes())
    else:
        _update_chunked(h, (_framed(b"s", i.encode("utf-8", "surrogatepass")) for i in ids))
    return h.hexdigest()


def _array_bytes(arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr)
    if arr.dtype.hasobject:
        raise TypeError("object array")
    header = f"{arr.dtype.str}{arr.shape}".encode()
    return _framed(b"A", header) + _framed(b"d", arr.tobytes())


def _item_bytes(item: Any) -> bytes:
    """The framed bytes that identify one input (see :func:`inputs_digest`)."""
    if isinstance(item, str):
        return _framed(b"s", item.encode("utf-8", "surrogatepass"))
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _framed(b"b", bytes(item))
    if isinstance(item, os.PathLike):
        path = os.fspath(item)
        try:
            st = os.stat(path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        return _framed(b"p", f"{path}\x00{stamp}".encode("utf-8", "surrogatepass"))
    if item is None or isinstance(item, (bool, int, float, complex, np.generic)):
        return _framed(b"n", f"{type(item).__name__}:{item!r}".encode())
    if isinstance(item, np.ndarray) and not item.dtype.hasobject:
        return _array_bytes(item)
    if type(item).__module__.startswith("torch") and hasattr(item, "detach"):
        t = item.detach().cpu().contiguous()
        try:
            arr = t.numpy()
        except TypeError:  # dtypes numpy lacks (bfloat16): their raw bits identify them as well
            arr = t.view(-1).view(dtype=__import__("torch").uint8).numpy()
        return _framed(b"t", str(t.dtype).encode()) + _framed(b"A", str(tuple(t.shape)).encode()) + _array_bytes(arr)
    if hasattr(item, "tobytes") and hasattr(item, "mode") and hasattr(item, "size"):  # a PIL image
        return _framed(b"I", f"{item.mode}{tuple(item.size)}".encode()) + _framed(b"d", item.tobytes())
    if isinstance(item, (list, tuple)) or (isinstance(item, np.ndarray) and item.dtype.hasobject):
        return _framed(b"L", struct.pack("<Q", len(item))) + b"".join(_item_bytes(x) for x in item)
    if isinstance(item, dict):
        return _framed(b"D", canonical_json(item).encode())
    raise TypeError(
        f"inputs hold a {type(item).__module__}.{type(item).__name__}, which the store cannot key by content "
        "(supported: str, bytes, os.PathLike, numbers, numpy arrays, torch tensors, PIL images, and lists, "
        "tuples or dicts of these). Convert the inputs to one of these types."
    )


def inputs_digest(inputs: Any) -> str:
    r"""sha256 naming the content of ``inputs`` (what an encoder reads), item by item and length-prefixed.

    What identifies an item: a str by its text (a path given as str is keyed by the path text only;
    pass a :class:`pathlib.Path` to key by the file as well), bytes by their bytes, an
    :class:`os.PathLike` by its path, size and modification time (cheap, and any rewrite of the file
    changes it), a numpy array or torch tensor by dtype, shape and bytes, a PIL image by mode, size and
    pixels. A whole numpy array or tensor is hashed in one pass.

    Raises
    ------
    TypeError
        An item of a type not listed above.

    Examples
    --------
    >>> import numpy as np
    >>> inputs_digest(["a\x00b", "c"]) == inputs_digest(["a", "b\x00c"])
    False
    >>> X = np.zeros((2, 3), dtype=np.float32)
    >>> inputs_digest(X) == inputs_digest(X.astype(np.float64)), inputs_digest(X) == inputs_digest(X.copy())
    (False, True)
    """
    h = hashlib.sha256()
    if isinstance(inputs, np.ndarray) and not inputs.dtype.hasobject:
        h.update(_array_bytes(inputs))
    elif type(inputs).__module__.startswith("torch") and hasattr(inputs, "detach"):
        h.update(_item_bytes(inputs))
    else:
        h.update(struct.pack("<Q", len(inputs)))
        _update_chunked(h, (_item_bytes(x) for x in inputs))
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
    encoder_metadata: dict[str, Any],
    dataset: str | None,
    n: int,
    ids_sha256: str,
    inputs_sha256: str,
    settings: dict[str, Any],
) -> str:
    """The store key from already digested ids and inputs: what :func:`cache_key` computes, for writers
    that hold the digests anyway (it is also recorded in the manifest).

    Examples
    --------
    >>> ids, kind = normalize_ids(["x", "y"])
    >>> texts = ["first text", "second text"]
    >>> k = content_key({"model_id": "m"}, "d", 2, ids_digest(ids, kind), inputs_digest(texts), {"normalize": False})
    >>> k == cache_key({"model_id": "m"}, "d", ["x", "y"], {"normalize": False}, inputs=texts)
    True
    """
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "encoder": encoder_metadata,
        "dataset": dataset,
        "n": int(n),
        "ids_sha256": ids_sha256,
        "inputs_sha256": inputs_sha256,
        "settings": settings,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def cache_key(
    encoder_metadata: dict[str, Any],
    dataset: str | None,
    ids: Sequence[Hashable],
    settings: dict[str, Any],
    *,
    inputs: Any,
) -> str:
    """sha256 naming the content of a store: encoder metadata + dataset + ids + inputs + settings.

    Ids and inputs are both hashed (see :func:`ids_digest` and :func:`inputs_digest`), so new inputs
    under the same ids never reuse the rows of old ones.

    Examples
    --------
    >>> texts = ["x text", "y text"]
    >>> a = cache_key({"model_id": "m"}, "d", ["x", "y"], {"normalize": False}, inputs=texts)
    >>> a == cache_key({"model_id": "m"}, "d", ["x", "y"], {"normalize": False}, inputs=list(texts))
    True
    >>> a == cache_key({"model_id": "m"}, "d", ["y", "x"], {"normalize": False}, inputs=texts)
    False
    >>> a == cache_key({"model_id": "m"}, "d", ["x", "y"], {"normalize": False}, inputs=["x text", "new"])
    False
    """
    ids_list, kind = normalize_ids(ids)
    return content_key(
        encoder_metadata, dataset, len(ids_list), ids_digest(ids_list, kind), inputs_digest(inputs), settings
    )


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
