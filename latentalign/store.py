"""Sharded, resumable, content-keyed embedding store; rows are keyed by id, never by position.

Layout of one store directory::

    manifest.json                       what is in the store (the commit point, rewritten atomically)
    embeddings/emb_00000.npy            float32 (rows, dim), one file per shard
    metadata/metadata_00000.parquet     column ``id``: the ids of those rows, same shard number

The two folders follow the ``parquet_npy`` layout of embedding-reader (and clip-retrieval's
``*_emb/*.npy`` + ``metadata/*.parquet``): files pair up by sorted name and hold the same rows, so
``EmbeddingReader(embeddings_folder=".../embeddings", metadata_folder=".../metadata",
file_format="parquet_npy", meta_columns=["id"])`` reads a finished store directly. Temporary files
are hidden (``.name.tmp``) and never match ``*.npy`` / ``*.parquet``.

Writing (:func:`embed`) is shard by shard: each shard's ``.npy`` and ``.parquet`` are written to
temporary files, fsynced and renamed into place, then ``manifest.json`` is rewritten (temp + rename)
with the shard's row count, byte size and sha256. A job killed at any point resumes from the last
shard the manifest lists: rows are never duplicated or lost. A store is keyed by the encoder's
``metadata``, the dataset name, a hash of the ids and the settings; with ``store_dir=None`` that key
picks the directory under :func:`latentalign._paths.embeddings_dir`, so calling :func:`embed` twice
with the same arguments reads the first result back instead of running the model again.

Reading memory-maps the shards (``np.load(mmap_mode="r")``); :meth:`EmbeddingStore.iter_batches`
streams in bounded memory; :func:`pair_stores` aligns two stores by id.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentalign._optional import import_optional
from latentalign._paths import embeddings_dir
from latentalign.exceptions import PersistenceError

__all__ = [
    "EmbeddingStore",
    "embed",
    "write_embeddings",
    "pair_stores",
    "align_by_id",
    "cache_key",
    "FORMAT",
    "FORMAT_VERSION",
]

FORMAT = "latentalign.embeddings"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".lock"
EMB_DIR = "embeddings"
META_DIR = "metadata"
DEFAULT_SHARD_SIZE = 4096


# ---------------------------------------------------------------------------------------------- ids
def _normalize_ids(ids: Any, name: str = "ids") -> tuple[list[Any], str]:
    """Return ``ids`` as a list of str or of int, and its type name; reject mixes and duplicates."""
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


def _ids_digest(ids: list[Any], kind: str) -> str:
    h = hashlib.sha256(kind.encode())
    if kind == "int":
        h.update(np.asarray(ids, dtype=np.int64).tobytes())
    else:
        for chunk_start in range(0, len(ids), 65536):
            h.update("\x00".join(ids[chunk_start : chunk_start + 65536]).encode("utf-8", "surrogatepass"))
            h.update(b"\x01")
    return h.hexdigest()


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def cache_key(encoder_metadata: dict[str, Any], dataset: str | None, ids: Sequence[Hashable], settings: dict[str, Any]) -> str:
    """sha256 naming the content of a store: encoder metadata + dataset + ids + settings.

    Examples
    --------
    >>> a = cache_key({"model_id": "m"}, "d", ["x", "y"], {"normalize": False})
    >>> a == cache_key({"model_id": "m"}, "d", ["x", "y"], {"normalize": False})
    True
    >>> a == cache_key({"model_id": "m"}, "d", ["y", "x"], {"normalize": False})
    False
    """
    ids_list, kind = _normalize_ids(ids)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "encoder": encoder_metadata,
        "dataset": dataset,
        "n": len(ids_list),
        "ids_sha256": _ids_digest(ids_list, kind),
        "settings": settings,
    }
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- files
def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _shard_names(index: int) -> tuple[str, str]:
    return f"{EMB_DIR}/emb_{index:05d}.npy", f"{META_DIR}/metadata_{index:05d}.parquet"


def _pa() -> tuple[Any, Any]:
    pa = import_optional("pyarrow", "data", purpose="the embedding store's id files (parquet)")
    pq = import_optional("pyarrow.parquet", "data", purpose="the embedding store's id files (parquet)")
    return pa, pq


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:60] or "x"


# ---------------------------------------------------------------------------------------------- lock
@contextlib.contextmanager
def _write_lock(directory: Path) -> Iterator[None]:
    """Exclusive writer lock (a file holding host and pid); a lock left by a dead process is taken over."""
    path = directory / LOCK
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                host, pid = path.read_text().split()
            except (OSError, ValueError):
                host, pid = "", "0"
            alive = True
            if host == socket.gethostname():
                try:
                    os.kill(int(pid), 0)
                except ProcessLookupError:
                    alive = False
                except PermissionError:
                    alive = True
            if alive:
                raise RuntimeError(
                    f"another process ({host} pid {pid}) is writing the store {str(directory)!r}. Wait for it, "
                    f"or delete {str(path)!r} if that process is gone."
                ) from None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        break
    else:  # pragma: no cover - lost a race twice
        raise RuntimeError(f"could not take the writer lock {str(path)!r}.")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            if path.read_text() == me:
                path.unlink()


# ---------------------------------------------------------------------------------------------- store
class EmbeddingStore:
    """Read access to a store directory written by :func:`embed` or :func:`write_embeddings`.

    Parameters
    ----------
    path : str or pathlib.Path
        The store directory (holding ``manifest.json``).
    verify : {"size", "checksum", None}
        On opening, check every listed shard's file size (cheap, catches truncation) or its sha256
        (reads everything, catches any corruption), or nothing. :meth:`verify` runs the full check later.
    allow_incomplete : bool
        Open a store whose writing job has not finished (only the finished shards are visible).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> d = tempfile.mkdtemp()
    >>> s = write_embeddings(d, np.eye(3, dtype=np.float32), ["a", "b", "c"], shard_size=2)
    >>> len(s), s.dim, s.n_shards
    (3, 3, 2)
    >>> s.get(["c", "a"]).tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """

    def __init__(self, path: str | Path, *, verify: str | None = "size", allow_incomplete: bool = False) -> None:
        if verify not in ("size", "checksum", None):
            raise ValueError(f"verify must be 'size', 'checksum' or None, got {verify!r}.")
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        if not self.manifest["complete"] and not allow_incomplete:
            done = sum(s["rows"] for s in self.manifest["shards"])
            raise PersistenceError(
                f"the store {str(self.path)!r} is incomplete ({done} of {self.manifest['n_total']} rows written; "
                "its writing job stopped or is still running). Re-run the same embed(...) call to resume it, "
                "or open it with allow_incomplete=True to read the finished shards."
            )
        self._ids: list[Any] | None = None
        self._index: dict[Any, int] | None = None
        self._offsets = np.cumsum([0] + [s["rows"] for s in self.manifest["shards"]])
        if verify is not None:
            self.verify(checksum=verify == "checksum")

    # ------------------------------------------------------------------ description
    @property
    def dim(self) -> int:
        """Embedding width."""
        return int(self.manifest["dim"])

    @property
    def n_shards(self) -> int:
        """Number of finished shards."""
        return len(self.manifest["shards"])

    @property
    def complete(self) -> bool:
        """True when the writing job finished."""
        return bool(self.manifest["complete"])

    @property
    def metadata(self) -> dict[str, Any]:
        """The encoder metadata the store was written with."""
        return dict(self.manifest.get("encoder") or {})

    @property
    def key(self) -> str | None:
        """The content key (see :func:`cache_key`)."""
        return self.manifest.get("key")

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __repr__(self) -> str:
        state = "" if self.complete else ", incomplete"
        return f"EmbeddingStore({str(self.path)!r}, n={len(self)}, dim={self.dim}, shards={self.n_shards}{state})"

    # ------------------------------------------------------------------ integrity
    def verify(self, *, checksum: bool = True) -> None:
        """Raise :class:`PersistenceError` if a shard file is missing, truncated or (with ``checksum``)
        its bytes differ from the sha256 recorded when it was written."""
        for entry in self.manifest["shards"]:
            _check_shard_files(self.path, entry, checksum=checksum)

    # ------------------------------------------------------------------ reading
    def shard(self, index: int) -> np.ndarray:
        """Memory-mapped, read-only ``(rows, dim)`` array of shard ``index``."""
        if not 0 <= index < self.n_shards:
            raise IndexError(f"shard index {index} is out of range: the store has {self.n_shards} shards.")
        entry = self.manifest["shards"][index]
        path = self.path / entry["embeddings"]
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise PersistenceError(
                f"shard {index} ({str(path)!r}) cannot be read ({exc}); it is corrupt or truncated. Recompute it: "
                "embed(..., overwrite=True)."
            ) from exc
        if arr.shape != (entry["rows"], self.dim) or arr.dtype != np.dtype(self.manifest["dtype"]):
            raise PersistenceError(
                f"shard {index} ({str(path)!r}) has shape {arr.shape} and dtype {arr.dtype}, but the manifest "
                f"records ({entry['rows']}, {self.dim}) {self.manifest['dtype']}; it is corrupt. Recompute it: "
                "embed(..., overwrite=True)."
            )
        return arr

    def shard_ids(self, index: int) -> list[Any]:
        """The ids of shard ``index``, in row order."""
        _, pq = _pa()
        entry = self.manifest["shards"][index]
        path = self.path / entry["metadata"]
        try:
            ids = pq.read_table(path, columns=["id"]).column("id").to_pylist()
        except Exception as exc:
            raise PersistenceError(
                f"the id file of shard {index} ({str(path)!r}) cannot be read ({exc}); recompute the store: "
                "embed(..., overwrite=True)."
            ) from exc
        if len(ids) != entry["rows"]:
            raise PersistenceError(
                f"the id file of shard {index} ({str(path)!r}) holds {len(ids)} ids but the shard has "
                f"{entry['rows']} rows; recompute the store: embed(..., overwrite=True)."
            )
        return ids

    @property
    def ids(self) -> list[Any]:
        """All ids, in row order (read once, then cached)."""
        if self._ids is None:
            out: list[Any] = []
            for i in range(self.n_shards):
                out.extend(self.shard_ids(i))
            self._ids = out
        return list(self._ids)

    def _row_index(self) -> dict[Any, int]:
        if self._index is None:
            self._index = {key: i for i, key in enumerate(self.ids)}
        return self._index

    def iter_batches(self, batch_size: int = 65536) -> Iterator[tuple[list[Any], np.ndarray]]:
        """Yield ``(ids, embeddings)`` blocks of at most ``batch_size`` rows, in store order.

        Memory stays bounded by one block: shards are memory-mapped and copied slice by slice.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        buf_ids: list[Any] = []
        buf: list[np.ndarray] = []
        filled = 0
        for i in range(self.n_shards):
            X = self.shard(i)
            ids = self.shard_ids(i)
            start = 0
            while start < X.shape[0]:
                take = min(batch_size - filled, X.shape[0] - start)
                buf.append(np.array(X[start : start + take]))
                buf_ids.extend(ids[start : start + take])
                filled += take
                start += take
                if filled == batch_size:
                    yield buf_ids, np.concatenate(buf) if len(buf) > 1 else buf[0]
                    buf_ids, buf, filled = [], [], 0
        if filled:
            yield buf_ids, np.concatenate(buf) if len(buf) > 1 else buf[0]

    def to_numpy(self) -> np.ndarray:
        """All embeddings as one in-memory ``(n, dim)`` array, in store order."""
        out = np.empty((len(self), self.dim), dtype=self.manifest["dtype"])
        for i in range(self.n_shards):
            out[self._offsets[i] : self._offsets[i + 1]] = self.shard(i)
        return out

    def get(self, ids: Sequence[Hashable]) -> np.ndarray:
        """Rows for ``ids``, in the given order; unknown ids raise ``KeyError`` listing them."""
        wanted, _ = _normalize_ids(ids)
        index = self._row_index()
        missing = [i for i in wanted if i not in index]
        if missing:
            raise KeyError(
                f"{len(missing)} of {len(wanted)} ids are not in the store {str(self.path)!r}: "
                f"{missing[:10]}{' ...' if len(missing) > 10 else ''}."
            )
        rows = np.fromiter((index[i] for i in wanted), dtype=np.int64, count=len(wanted))
        return self._gather(rows)

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((rows.size, self.dim), dtype=self.manifest["dtype"])
        shard_of = np.searchsorted(self._offsets, rows, side="right") - 1
        for s in np.unique(shard_of):
            sel = np.flatnonzero(shard_of == s)
            local = rows[sel] - self._offsets[s]
            order = np.argsort(local, kind="stable")  # sorted reads from the memory map
            out[sel[order]] = self.shard(int(s))[local[order]]
        return out


def _read_manifest(path: Path) -> dict[str, Any]:
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise PersistenceError(
            f"{str(path)!r} is not an embedding store: it has no {MANIFEST}. Create one with "
            "latentalign.store.embed(...) or write_embeddings(...)."
        )
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise PersistenceError(f"{str(mpath)!r} cannot be parsed ({exc}); the store is corrupt.") from exc
    if manifest.get("format") != FORMAT:
        raise PersistenceError(f"{str(mpath)!r} is not a latentalign embedding manifest (format={manifest.get('format')!r}).")
    if manifest.get("version", 0) > FORMAT_VERSION:
        raise PersistenceError(
            f"{str(mpath)!r} was written by a newer latentalign (format version {manifest['version']} > "
            f"{FORMAT_VERSION}); upgrade latentalign."
        )
    return manifest


def _check_shard_files(root: Path, entry: dict[str, Any], *, checksum: bool) -> None:
    for field, size_key, sha_key in (("embeddings", "bytes", "sha256"), ("metadata", "meta_bytes", "meta_sha256")):
        path = root / entry[field]
        fix = "Recompute it with embed(..., overwrite=True), or delete the store directory."
        if not path.is_file():
            raise PersistenceError(f"shard {entry['index']} file {str(path)!r} is missing. {fix}")
        size = path.stat().st_size
        if size != entry[size_key]:
            raise PersistenceError(
                f"shard {entry['index']} file {str(path)!r} is truncated or corrupt: {size} bytes, the manifest "
                f"records {entry[size_key]}. {fix}"
            )
        if checksum and _sha256_file(path) != entry[sha_key]:
            raise PersistenceError(
                f"shard {entry['index']} file {str(path)!r} is corrupt: its sha256 differs from the one recorded "
                f"when it was written. {fix}"
            )


# ---------------------------------------------------------------------------------------------- writing
class _StoreWriter:
    """Appends shards to a store directory; the manifest is rewritten after every shard."""

    def __init__(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.dir = directory
        self.manifest = manifest
        (directory / EMB_DIR).mkdir(parents=True, exist_ok=True)
        (directory / META_DIR).mkdir(parents=True, exist_ok=True)

    @property
    def rows_done(self) -> int:
        return sum(s["rows"] for s in self.manifest["shards"])

    def write_manifest(self) -> None:
        _atomic_write_bytes(self.dir / MANIFEST, json.dumps(self.manifest, indent=1, default=str).encode())

    def append(self, X: np.ndarray, ids: list[Any]) -> None:
        pa, pq = _pa()
        index = len(self.manifest["shards"])
        emb_name, meta_name = _shard_names(index)
        X = np.ascontiguousarray(X, dtype=self.manifest["dtype"])
        buf = io.BytesIO()
        np.save(buf, X, allow_pickle=False)
        data = buf.getvalue()
        _atomic_write_bytes(self.dir / emb_name, data)
        id_type = pa.int64() if self.manifest["id_type"] == "int" else pa.string()
        table = pa.table({"id": pa.array(ids, type=id_type)})
        meta_path = self.dir / meta_name
        meta_tmp = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
        pq.write_table(table, meta_tmp)
        with open(meta_tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(meta_tmp, meta_path)
        _fsync_dir(self.dir / EMB_DIR)
        _fsync_dir(self.dir / META_DIR)
        self.manifest["shards"].append(
            {
                "index": index,
                "start": self.rows_done,
                "rows": int(X.shape[0]),
                "embeddings": emb_name,
                "metadata": meta_name,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "meta_bytes": meta_path.stat().st_size,
                "meta_sha256": _sha256_file(meta_path),
            }
        )
        self.write_manifest()

    def finish(self) -> None:
        self.manifest["complete"] = True
        self.manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.write_manifest()


def _new_manifest(
    *, key: str, dim: int, n_total: int, id_kind: str, encoder_meta: dict[str, Any], dataset: str | None,
    ids_sha: str, settings: dict[str, Any], shard_size: int,
) -> dict[str, Any]:
    import latentalign

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
        "latentalign": getattr(latentalign, "__version__", "?"),
        "shards": [],
    }


def _remove_temp_files(directory: Path) -> None:
    """Delete temporary files a killed writer left behind (only called while holding the lock)."""
    for sub in (directory, directory / EMB_DIR, directory / META_DIR):
        if sub.is_dir():
            for tmp in sub.glob(".*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()


def _clear_store(directory: Path) -> None:
    """Remove the files a store consists of (and nothing else)."""
    for name in (MANIFEST,):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    for sub in (EMB_DIR, META_DIR):
        shutil.rmtree(directory / sub, ignore_errors=True)


def _check_positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def embed(
    encoder: Any,
    inputs: Any,
    ids: Sequence[Hashable],
    *,
    dataset: str | None = None,
    store_dir: str | Path | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    batch_size: int = 64,
    normalize: bool = False,
    settings: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> EmbeddingStore:
    """Encode ``inputs`` into a store keyed by ``ids``; reuse or resume a previous run with the same key.

    Parameters
    ----------
    encoder : Encoder
        Anything with ``name``, ``dim``, ``metadata`` and ``encode`` (see :mod:`latentalign.encoders`).
    inputs : sequence
        What ``encoder.encode`` takes (texts, images, arrays, words); needs ``len`` and slicing.
    ids : sequence of str or int
        One unique id per input; they identify the content (the cache key hashes them, not the inputs).
    dataset : str, optional
        Dataset name, part of the cache key and of the directory name.
    store_dir : str or pathlib.Path, optional
        Where to write. Default: ``embeddings_dir() / "<encoder>__<dataset>__<key[:16]>"``.
    shard_size : int
        Rows per shard (the unit of resumption).
    batch_size : int
        Inputs per forward pass. Not part of the cache key (it can change results only by padding-level
        float noise).
    normalize : bool
        L2-normalise rows (part of the key).
    settings : dict, optional
        Extra JSON-serialisable settings that change the result (part of the key).
    overwrite : bool
        Discard what ``store_dir`` holds and recompute.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    EmbeddingStore

    Raises
    ------
    ValueError
        ``store_dir`` holds a store with another key (other encoder, data or settings), unless ``overwrite``.
    PersistenceError
        A finished shard is truncated or corrupt (re-run with ``overwrite=True``).
    """
    shard_size = _check_positive(shard_size, "shard_size")
    batch_size = _check_positive(batch_size, "batch_size")
    for attr in ("encode", "dim", "metadata", "name"):
        if not hasattr(encoder, attr):
            raise TypeError(f"encoder must follow the Encoder protocol (missing {attr!r}); got {type(encoder).__name__}.")
    if not hasattr(inputs, "__len__") or not hasattr(inputs, "__getitem__"):
        raise TypeError(
            f"inputs must be a sequence with len() and slicing (list, array, tensor), got {type(inputs).__name__}; "
            "wrap an iterator in list(...)."
        )
    id_list, id_kind = _normalize_ids(ids)
    if len(id_list) != len(inputs):
        raise ValueError(f"got {len(inputs)} inputs but {len(id_list)} ids; pass exactly one id per input.")
    settings = {"normalize": bool(normalize), **(settings or {})}
    encoder_meta = encoder.metadata
    ids_sha = _ids_digest(id_list, id_kind)
    key = hashlib.sha256(
        _canonical(
            {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "encoder": encoder_meta,
                "dataset": dataset,
                "n": len(id_list),
                "ids_sha256": ids_sha,
                "settings": settings,
            }
        ).encode()
    ).hexdigest()
    if store_dir is None:
        directory = embeddings_dir() / f"{_slug(str(encoder.name))}__{_slug(dataset or 'data')}__{key[:16]}"
    else:
        directory = Path(store_dir)
    finished = _finished_store(directory, key, overwrite=overwrite)
    if finished is not None:
        return finished
    directory.mkdir(parents=True, exist_ok=True)

    with _write_lock(directory):
        manifest, finished = _open_for_writing(directory, key, overwrite=overwrite)
        if finished is not None:
            return finished
        if manifest is None:
            manifest = _new_manifest(
                key=key, dim=encoder.dim, n_total=len(id_list), id_kind=id_kind, encoder_meta=encoder_meta,
                dataset=dataset, ids_sha=ids_sha, settings=settings, shard_size=shard_size,
            )
        writer = _StoreWriter(directory, manifest)
        writer.write_manifest()
        _run(encoder, inputs, id_list, writer, shard_size=shard_size, batch_size=batch_size,
             normalize=normalize, progress=progress)
        writer.finish()
    return EmbeddingStore(directory, verify=None)


def _finished_store(directory: Path, key: str, *, overwrite: bool) -> EmbeddingStore | None:
    """The store at ``directory`` if it is complete and written under ``key`` (fast path, no lock)."""
    if overwrite or not (directory / MANIFEST).is_file():
        return None
    existing = _read_manifest(directory)
    if existing.get("key") == key and existing["complete"]:
        return EmbeddingStore(directory, verify="size")
    return None


def _open_for_writing(
    directory: Path, key: str, *, overwrite: bool, mismatch_hint: str = ""
) -> tuple[dict[str, Any] | None, EmbeddingStore | None]:
    """Prepare ``directory`` for a writer holding its lock.

    Removes temporary files left by a killed writer, then: clears the store (``overwrite``), or reads the
    manifest of the store being resumed (its key must be ``key``; finished shards are checked). Returns
    ``(manifest to resume, None)``, ``(None, None)`` for a new store, or ``(None, store)`` when another
    writer finished it meanwhile.
    """
    _remove_temp_files(directory)
    if not (directory / MANIFEST).exists():
        return None, None
    if overwrite:
        _clear_store(directory)
        return None, None
    manifest = _read_manifest(directory)
    if manifest.get("key") != key:
        raise ValueError(
            f"store_dir {str(directory)!r} holds embeddings with another key ({str(manifest.get('key'))[:16]} "
            f"vs {key[:16]}): a different encoder, dataset, ids or settings{mismatch_hint}. Pass overwrite=True "
            "to replace them, or another store_dir."
        )
    if manifest["complete"]:
        return None, EmbeddingStore(directory, verify="size")
    for entry in manifest["shards"]:  # resuming: finished shards must be intact
        _check_shard_files(directory, entry, checksum=True)
    return manifest, None


def _run(
    encoder: Any, inputs: Any, ids: list[Any], writer: _StoreWriter, *, shard_size: int, batch_size: int,
    normalize: bool, progress: bool,
) -> None:
    from tqdm.auto import tqdm

    n = len(ids)
    start = writer.rows_done
    with tqdm(total=n, initial=start, disable=not progress, desc=f"embed {encoder.name}", unit="item") as bar:
        while start < n:
            stop = min(start + shard_size, n)
            parts = []
            for b in range(start, stop, batch_size):
                e = min(b + batch_size, stop)
                parts.append(encoder.encode(inputs[b:e], batch_size=batch_size, normalize=normalize, progress=False))
                bar.update(e - b)
            X = np.concatenate(parts) if len(parts) > 1 else parts[0]
            if X.shape != (stop - start, writer.manifest["dim"]):
                raise ValueError(
                    f"the encoder returned shape {X.shape} for {stop - start} inputs; expected "
                    f"({stop - start}, {writer.manifest['dim']})."
                )
            writer.append(X, ids[start:stop])
            start = stop


def write_embeddings(
    path: str | Path,
    embeddings: Any,
    ids: Sequence[Hashable],
    *,
    metadata: dict[str, Any] | None = None,
    dataset: str | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    overwrite: bool = False,
) -> EmbeddingStore:
    """Write precomputed ``(n, dim)`` embeddings with their ids as a store at ``path``."""
    X = np.asarray(embeddings)
    if X.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, dim), got shape {X.shape}.")
    if not np.isfinite(X).all():
        raise ValueError("embeddings contain NaN or infinite values; clean them before storing.")
    shard_size = _check_positive(shard_size, "shard_size")
    id_list, id_kind = _normalize_ids(ids)
    if len(id_list) != X.shape[0]:
        raise ValueError(f"embeddings have {X.shape[0]} rows but {len(id_list)} ids were given; pass one id per row.")
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    with _write_lock(directory):
        if (directory / MANIFEST).exists():
            if not overwrite:
                raise ValueError(f"{str(directory)!r} already holds a store; pass overwrite=True to replace it.")
            _clear_store(directory)
        ids_sha = _ids_digest(id_list, id_kind)
        meta = dict(metadata or {})
        key = hashlib.sha256(_canonical({"arrays": ids_sha, "meta": meta, "dataset": dataset}).encode()).hexdigest()
        writer = _StoreWriter(
            directory,
            _new_manifest(key=key, dim=X.shape[1], n_total=len(id_list), id_kind=id_kind, encoder_meta=meta,
                          dataset=dataset, ids_sha=ids_sha, settings={}, shard_size=shard_size),
        )
        for start in range(0, X.shape[0], shard_size):
            writer.append(X[start : start + shard_size], id_list[start : start + shard_size])
        writer.finish()
    return EmbeddingStore(directory, verify=None)


# ---------------------------------------------------------------------------------------------- pairing
def _describe(ids: list[Any]) -> str:
    return f"{ids[:10]}{' ...' if len(ids) > 10 else ''}"


def align_by_id(
    ids_a: Sequence[Hashable], X_a: Any, ids_b: Sequence[Hashable], X_b: Any, *, on_missing: str = "error"
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Pair the rows of two arrays by id (never by position).

    Returns ``(ids, A, B)`` where row ``i`` of ``A`` and of ``B`` both belong to ``ids[i]``, in the
    order of ``ids_a``. ``on_missing="error"`` raises when the id sets differ (listing the ids missing
    from each side); ``"intersect"`` keeps the common ids.

    Examples
    --------
    >>> import numpy as np
    >>> ids, A, B = align_by_id(["x", "y"], np.array([[1.0], [2.0]]), ["y", "x"], np.array([[20.0], [10.0]]))
    >>> ids, A.ravel().tolist(), B.ravel().tolist()
    (['x', 'y'], [1.0, 2.0], [10.0, 20.0])
    """
    if on_missing not in ("error", "intersect"):
        raise ValueError(f"on_missing must be 'error' or 'intersect', got {on_missing!r}.")
    ia, _ = _normalize_ids(ids_a, "ids_a")
    ib, _ = _normalize_ids(ids_b, "ids_b")
    A, B = np.asarray(X_a), np.asarray(X_b)
    if A.shape[0] != len(ia) or B.shape[0] != len(ib):
        raise ValueError(
            f"X_a has {A.shape[0]} rows for {len(ia)} ids and X_b has {B.shape[0]} rows for {len(ib)} ids; "
            "pass one id per row."
        )
    pos_b = {k: i for i, k in enumerate(ib)}
    set_a = set(ia)
    only_a = [k for k in ia if k not in pos_b]
    only_b = [k for k in ib if k not in set_a]
    if (only_a or only_b) and on_missing == "error":
        raise ValueError(
            f"the two sides have different ids: {len(only_a)} only in the first (e.g. {_describe(only_a)}), "
            f"{len(only_b)} only in the second (e.g. {_describe(only_b)}). Embed the same items on both sides, "
            "or pass on_missing='intersect' to keep the common ids."
        )
    common = [k for k in ia if k in pos_b]
    if not common:
        raise ValueError("the two sides have no id in common; nothing can be paired.")
    pos_a = {k: i for i, k in enumerate(ia)}
    ra = np.fromiter((pos_a[k] for k in common), dtype=np.int64, count=len(common))
    rb = np.fromiter((pos_b[k] for k in common), dtype=np.int64, count=len(common))
    return common, A[ra], B[rb]


def pair_stores(
    a: EmbeddingStore | str | Path, b: EmbeddingStore | str | Path, *, on_missing: str = "error"
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Load two stores and pair their rows by id: ``(ids, X_a, X_b)`` in the order of ``a``.

    ``on_missing="error"`` raises (listing the ids missing on each side) when the id sets differ;
    ``"intersect"`` keeps the common ids.
    """
    if on_missing not in ("error", "intersect"):
        raise ValueError(f"on_missing must be 'error' or 'intersect', got {on_missing!r}.")
    sa = a if isinstance(a, EmbeddingStore) else EmbeddingStore(a)
    sb = b if isinstance(b, EmbeddingStore) else EmbeddingStore(b)
    if sa.manifest["id_type"] != sb.manifest["id_type"]:
        raise TypeError(
            f"the stores key their rows by different id types ({sa.manifest['id_type']} vs "
            f"{sb.manifest['id_type']}); ids of one item must be equal on both sides."
        )
    ids_a, ids_b = sa.ids, sb.ids
    set_b = set(ids_b)
    set_a = set(ids_a)
    only_a = [k for k in ids_a if k not in set_b]
    only_b = [k for k in ids_b if k not in set_a]
    if (only_a or only_b) and on_missing == "error":
        raise ValueError(
            f"the stores have different ids: {len(only_a)} only in {str(sa.path)!r} (e.g. {_describe(only_a)}), "
            f"{len(only_b)} only in {str(sb.path)!r} (e.g. {_describe(only_b)}). Embed the same items in both, "
            "or pass on_missing='intersect' to keep the common ids."
        )
    common = [k for k in ids_a if k in set_b]
    if not common:
        raise ValueError(f"the stores {str(sa.path)!r} and {str(sb.path)!r} have no id in common.")
    return common, sa.get(common), sb.get(common)
