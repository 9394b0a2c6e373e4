"""Reading a store: :class:`EmbeddingStore` (memory-mapped shards, ids, integrity checks)."""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentalign.exceptions import PersistenceError
from latentalign.store.format import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    import_pyarrow,
    normalize_ids,
)
from latentalign.store.integrity import check_manifest, verify_files, verify_once

_VERIFY_MODES = ("read", "size", "checksum", None)

__all__ = ["EmbeddingStore", "check_shard_files", "read_manifest"]


class EmbeddingStore:
    """Read access to a store directory written by :func:`~latentalign.store.embed` or
    :func:`~latentalign.store.write_embeddings`.

    Parameters
    ----------
    path : str or pathlib.Path
        The store directory (holding ``manifest.json``).
    verify : {"read", "size", "checksum", None}
        ``"read"`` (default): on opening, check every listed shard's file size (catches truncation), then
        each shard file's sha256 the first time this process reads it (catches any flipped byte and swapped
        shards before a row is returned; a file already verified in this process is not hashed again).
        ``"size"``: the size check only. ``"checksum"``: hash every shard on opening. ``None``: no check.
        :meth:`verify` runs the full check later.
    allow_incomplete : bool
        Open a store whose writing job has not finished (only the finished shards are visible).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from latentalign.store import write_embeddings
    >>> d = tempfile.mkdtemp()
    >>> s = write_embeddings(d, np.eye(3, dtype=np.float32), ["a", "b", "c"], shard_size=2)
    >>> len(s), s.dim, s.n_shards
    (3, 3, 2)
    >>> s.get(["c", "a"]).tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """

    def __init__(self, path: str | Path, *, verify: str | None = "read", allow_incomplete: bool = False) -> None:
        if verify not in _VERIFY_MODES:
            raise ValueError(
                f"verify must be one of 'read', 'size', 'checksum' or None, got {verify!r}. 'read' (the default) "
                "checks each shard's sha256 on its first read."
            )
        self._verify_on_read = verify == "read"
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
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
            check_shard_files(self.path, entry, checksum=False)
        if checksum:
            verify_files(self._checks(range(self.n_shards), ("embeddings", "metadata")))

    def _checks(self, indices: Iterable[int], fields: Sequence[str]) -> list[tuple[Path, str, str]]:
        sha_of = {"embeddings": "sha256", "metadata": "meta_sha256"}
        shards = self.manifest["shards"]
        return [
            (self.path / shards[i][field], shards[i][sha_of[field]], f"shard {i} {field} file")
            for i in indices
            for field in fields
        ]

    def _verify_read(self, indices: Iterable[int], field: str) -> None:
        """Checksums of the shards about to be read (first read in this process only), in parallel."""
        if self._verify_on_read:
            verify_files(self._checks(indices, (field,)))

    # ------------------------------------------------------------------ reading
    def shard(self, index: int) -> np.ndarray:
        """Memory-mapped, read-only ``(rows, dim)`` array of shard ``index``."""
        if not 0 <= index < self.n_shards:
            raise IndexError(f"shard index {index} is out of range: the store has {self.n_shards} shards.")
        entry = self.manifest["shards"][index]
        path = self.path / entry["embeddings"]
        self._verify_read([index], "embeddings")
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
        _, pq = import_pyarrow()
        if not 0 <= index < self.n_shards:
            raise IndexError(f"shard index {index} is out of range: the store has {self.n_shards} shards.")
        entry = self.manifest["shards"][index]
        path = self.path / entry["metadata"]
        self._verify_read([index], "metadata")
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
            self._verify_read(range(self.n_shards), "metadata")
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
        self._verify_read(range(self.n_shards), "embeddings")
        for i in range(self.n_shards):
            out[self._offsets[i] : self._offsets[i + 1]] = self.shard(i)
        return out

    def get(self, ids: Sequence[Hashable]) -> np.ndarray:
        """Rows for ``ids``, in the given order; unknown ids raise ``KeyError`` listing them."""
        wanted, _ = normalize_ids(ids)
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
        self._verify_read((int(i) for i in np.unique(shard_of)), "embeddings")
        for s in np.unique(shard_of):
            sel = np.flatnonzero(shard_of == s)
            local = rows[sel] - self._offsets[s]
            order = np.argsort(local, kind="stable")  # sorted reads from the memory map
            out[sel[order]] = self.shard(int(s))[local[order]]
        return out


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the store directory ``path``; raise :class:`PersistenceError` if it is not one."""
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise PersistenceError(
            f"{str(path)!r} is not an embedding store: it has no {MANIFEST}. Create one with "
            "latentalign.store.embed(...) or write_embeddings(...)."
        )
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or text; RecursionError is a RuntimeError
        raise PersistenceError(f"{str(mpath)!r} cannot be parsed ({exc}); the store is corrupt.") from exc
    except RecursionError as exc:
        raise PersistenceError(f"{str(mpath)!r} is nested too deeply to be a store manifest.") from exc
    if not isinstance(manifest, dict):
        raise PersistenceError(
            f"{str(mpath)!r} is not a latentalign embedding manifest (a JSON {type(manifest).__name__}, "
            "expected an object)."
        )
    if manifest.get("format") != FORMAT:
        raise PersistenceError(
            f"{str(mpath)!r} is not a latentalign embedding manifest (format={manifest.get('format')!r})."
        )
    version = manifest.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise PersistenceError(f"{str(mpath)!r} has a version of the wrong type ({version!r}); the store is corrupt.")
    if version > FORMAT_VERSION:
        raise PersistenceError(
            f"{str(mpath)!r} was written by a newer latentalign (format version {manifest['version']} > "
            f"{FORMAT_VERSION}); upgrade latentalign."
        )
    return check_manifest(manifest, mpath)


def check_shard_files(root: Path, entry: dict[str, Any], *, checksum: bool) -> None:
    """Raise :class:`PersistenceError` if a shard's files are missing, of the wrong size or (with
    ``checksum``) of other bytes than the manifest entry ``entry`` records."""
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
        if checksum:
            verify_once(path, entry[sha_key], f"shard {entry['index']} {field} file")
