"""Writing a store: shard files staged then committed, the manifest rewritten after every shard.

A shard is written in two steps. :func:`stage_shard` writes its ``.npy`` and ``.parquet`` under unique
hidden temporary names (fsynced) and returns a :class:`StagedShard`; :meth:`StoreWriter.commit` renames
both into place and rewrites ``manifest.json`` (temp + rename). Only the process holding the store's
writer lock commits, so the manifest has one writer; staging may happen anywhere that sees the directory
(the distributed writer stages on its workers). A killed job leaves only hidden ``.tmp`` files, which
:func:`open_for_writing` removes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
import uuid
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentalign._validation import check_number
from latentalign.exceptions import PersistenceError
from latentalign.store.files import (
    atomic_write_bytes,
    fsync_dir,
    fsync_file,
    sha256_file,
    write_lock,
)
from latentalign.store.format import (
    DEFAULT_SHARD_SIZE,
    EMB_DIR,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    META_DIR,
    SHARD_FILE,
    arrays_key,
    ids_digest,
    import_pyarrow,
    new_manifest,
    normalize_ids,
    shard_names,
)
from latentalign.store.integrity import DIGEST_FIELD, manifest_digest, mark_verified
from latentalign.store.reader import EmbeddingStore, check_shard_files, read_manifest

__all__ = [
    "PrecisionLossWarning",
    "StagedShard",
    "StoreWriter",
    "finished_store",
    "check_no_foreign_shards",
    "check_storable",
    "clear_store",
    "open_for_writing",
    "stage_shard",
    "store_files",
    "write_embeddings",
]


class PrecisionLossWarning(UserWarning):
    """Nonzero values became 0 when embeddings were cast to the store's float32 (their magnitude is
    below float32's smallest subnormal, about 1.4e-45)."""


@dataclass(frozen=True)
class StagedShard:
    """A shard's two files written under temporary names, not yet part of the store.

    ``emb_tmp`` and ``meta_tmp`` are relative to the store directory; ``bytes`` / ``sha256`` and
    ``meta_bytes`` / ``meta_sha256`` describe them as written (the manifest records these).
    """

    rows: int
    emb_tmp: str
    meta_tmp: str
    bytes: int
    sha256: str
    meta_bytes: int
    meta_sha256: str

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return asdict(self)


def stage_shard(directory: Path, X: np.ndarray, ids: list[Any], id_kind: str) -> StagedShard:
    """Write one shard's rows ``X`` (cast to float32) and ``ids`` under hidden temporary names.

    Parameters
    ----------
    directory : pathlib.Path
        The store directory (its ``embeddings/`` and ``metadata/`` folders must exist).
    X : numpy.ndarray of shape (rows, dim)
    ids : list of str or int
        Normalised ids (see :func:`~latentalign.store.format.normalize_ids`), one per row.
    id_kind : {"str", "int"}

    Returns
    -------
    StagedShard

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "embeddings").mkdir(); (d / "metadata").mkdir()
    >>> staged = stage_shard(d, np.ones((2, 3)), ["a", "b"], "str")
    >>> staged.rows, staged.emb_tmp.startswith("embeddings/.stage-"), staged.emb_tmp.endswith(".tmp")
    (2, True, True)
    """
    pa, pq = import_pyarrow()
    X = np.ascontiguousarray(X, dtype=np.float32)
    buf = io.BytesIO()
    np.save(buf, X, allow_pickle=False)
    data = buf.getvalue()
    token = uuid.uuid4().hex
    emb_tmp = f"{EMB_DIR}/.stage-{token}.npy.tmp"
    meta_tmp = f"{META_DIR}/.stage-{token}.parquet.tmp"
    with open(directory / emb_tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    id_type = pa.int64() if id_kind == "int" else pa.string()
    pq.write_table(pa.table({"id": pa.array(ids, type=id_type)}), directory / meta_tmp)
    fsync_file(directory / meta_tmp)
    return StagedShard(
        rows=int(X.shape[0]),
        emb_tmp=emb_tmp,
        meta_tmp=meta_tmp,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        meta_bytes=(directory / meta_tmp).stat().st_size,
        meta_sha256=sha256_file(directory / meta_tmp),
    )


class StoreWriter:
    """Appends shards to a store directory; the manifest is rewritten after every shard.

    The caller holds the directory's writer lock (:func:`~latentalign.store.files.write_lock`).

    Parameters
    ----------
    directory : pathlib.Path
        The store directory.
    manifest : dict
        A new manifest (:func:`~latentalign.store.format.new_manifest`) or the one of the store being
        resumed; it is updated in place.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from latentalign.store.format import new_manifest
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> m = new_manifest(key="k", dim=2, n_total=3, id_kind="int", encoder_meta={}, dataset=None,
    ...                  ids_sha="", settings={}, shard_size=2)
    >>> w = StoreWriter(d, m)
    >>> w.append(np.zeros((2, 2)), [0, 1]); w.append(np.ones((1, 2)), [2]); w.finish()
    >>> w.rows_done, EmbeddingStore(d).get([2]).tolist()
    (3, [[1.0, 1.0]])
    """

    def __init__(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.dir = directory
        self.manifest = manifest
        (directory / EMB_DIR).mkdir(parents=True, exist_ok=True)
        (directory / META_DIR).mkdir(parents=True, exist_ok=True)

    @property
    def rows_done(self) -> int:
        """Rows in the committed shards."""
        return sum(s["rows"] for s in self.manifest["shards"])

    def write_manifest(self) -> None:
        """Rewrite ``manifest.json`` atomically, with the digest of its content."""
        self.manifest[DIGEST_FIELD] = manifest_digest(self.manifest)
        atomic_write_bytes(self.dir / MANIFEST, json.dumps(self.manifest, indent=1, default=str).encode())

    def append(self, X: np.ndarray, ids: list[Any]) -> None:
        """Stage and commit one shard of rows ``X`` with their ``ids``."""
        self.commit(stage_shard(self.dir, X, ids, self.manifest["id_type"]))

    def commit(self, staged: StagedShard) -> None:
        """Rename a staged shard's files to the next shard's names and record it in the manifest."""
        index = len(self.manifest["shards"])
        emb_name, meta_name = shard_names(index)
        os.replace(self.dir / staged.emb_tmp, self.dir / emb_name)
        os.replace(self.dir / staged.meta_tmp, self.dir / meta_name)
        fsync_dir(self.dir / EMB_DIR)
        fsync_dir(self.dir / META_DIR)
        mark_verified(self.dir / emb_name, staged.sha256)  # hashed from the bytes written: no re-read here
        mark_verified(self.dir / meta_name, staged.meta_sha256)
        self.manifest["shards"].append(
            {
                "index": index,
                "start": self.rows_done,
                "rows": int(staged.rows),
                "embeddings": emb_name,
                "metadata": meta_name,
                "bytes": int(staged.bytes),
                "sha256": staged.sha256,
                "meta_bytes": int(staged.meta_bytes),
                "meta_sha256": staged.meta_sha256,
            }
        )
        self.write_manifest()

    def finish(self) -> None:
        """Mark the store complete."""
        self.manifest["complete"] = True
        self.manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.write_manifest()


# files a store writes, by name; anything else in its folders belongs to someone else and is left alone
_TEMP_PATTERNS = (
    (".", f".{MANIFEST}.*.tmp"),
    (EMB_DIR, ".stage-*.tmp"),
    (EMB_DIR, ".emb_*.tmp"),
    (META_DIR, ".stage-*.tmp"),
    (META_DIR, ".metadata_*.tmp"),
)


def remove_temp_files(directory: Path) -> None:
    """Delete temporary files a killed writer left behind (only called while holding the lock)."""
    for sub, pattern in _TEMP_PATTERNS:
        if (directory / sub).is_dir():
            for tmp in (directory / sub).glob(pattern):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()


def _unlisted_shard_files(directory: Path, listed: set[str]) -> list[str]:
    found = []
    for sub in (EMB_DIR, META_DIR):
        if (directory / sub).is_dir():
            found += [f"{sub}/{p.name}" for p in (directory / sub).iterdir() if SHARD_FILE.match(f"{sub}/{p.name}")]
    return sorted(set(found) - listed)


def check_no_foreign_shards(directory: Path, listed: set[str] | frozenset[str] = frozenset()) -> None:
    """Raise :class:`PersistenceError` if ``directory`` holds shard-named files (``embeddings/emb_NNNNN.npy``,
    ``metadata/metadata_NNNNN.parquet``) that no manifest lists: writing a store there would replace them."""
    foreign = _unlisted_shard_files(directory, set(listed))
    if foreign:
        raise PersistenceError(
            f"{str(directory)!r} holds {len(foreign)} shard-named files that its manifest does not list "
            f"(e.g. {foreign[:3]}); writing a store there would replace them. Move them away, or use another "
            "directory."
        )


def store_files(directory: Path) -> list[str]:
    """The files the store at ``directory`` wrote, as its manifest lists them (relative paths, shards first).

    Raises :class:`PersistenceError`, naming what was found, if ``manifest.json`` is not a latentalign
    embedding manifest or lists a path that is not one of the store's own shard files.
    """
    mpath = directory / MANIFEST
    fix = "Nothing was deleted. Move the directory's contents away, or write the store to another directory."
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise PersistenceError(f"{str(mpath)!r} is not a latentalign embedding manifest ({exc}). {fix}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise PersistenceError(
            f"{str(mpath)!r} is not a latentalign embedding manifest (format={found!r}, expected {FORMAT!r}), so "
            f"overwrite will not delete anything it did not write. {fix}"
        )
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not all(isinstance(e, dict) for e in shards):
        raise PersistenceError(f"{str(mpath)!r} has no valid 'shards' list, so the store's files are unknown. {fix}")
    files = []
    for entry in shards:
        for field in ("embeddings", "metadata"):
            rel = entry.get(field)
            if not isinstance(rel, str) or not SHARD_FILE.match(rel):
                raise PersistenceError(
                    f"{str(mpath)!r} lists {rel!r} as a shard file, which is not a path the store writes "
                    f"(embeddings/emb_NNNNN.npy or metadata/metadata_NNNNN.parquet). {fix}"
                )
            files.append(rel)
    return files


def clear_store(directory: Path) -> None:
    """Delete the files a latentalign store wrote: those its manifest lists, then the manifest.

    Other files (a user's notes in ``embeddings/``, say) are left in place; the store's folders are
    removed only when empty. Refuses (:class:`PersistenceError`, nothing deleted) a ``manifest.json`` that
    is not latentalign's, or shard-named files the manifest does not list.
    """
    if not (directory / MANIFEST).exists():
        check_no_foreign_shards(directory)
        return
    files = store_files(directory)
    check_no_foreign_shards(directory, set(files))
    for rel in files:
        with contextlib.suppress(FileNotFoundError):
            (directory / rel).unlink()
    (directory / MANIFEST).unlink()
    for sub in (EMB_DIR, META_DIR):
        with contextlib.suppress(OSError):
            (directory / sub).rmdir()


def _is_stale_cache(manifest: dict[str, Any]) -> bool:
    """True for a store ``embed`` wrote under an older format version (its key cannot be compared)."""
    settings = manifest.get("settings")
    return manifest.get("version", 0) < FORMAT_VERSION and isinstance(settings, dict) and "normalize" in settings


def finished_store(directory: Path, key: str, *, overwrite: bool) -> EmbeddingStore | None:
    """The store at ``directory`` if it is complete and written under ``key`` (fast path, no lock)."""
    if overwrite or not (directory / MANIFEST).is_file():
        return None
    existing = read_manifest(directory)
    if existing.get("version") == FORMAT_VERSION and existing.get("key") == key and existing["complete"]:
        return EmbeddingStore(directory)
    return None


def open_for_writing(
    directory: Path, key: str, *, overwrite: bool, mismatch_hint: str = ""
) -> tuple[dict[str, Any] | None, EmbeddingStore | None]:
    """Prepare ``directory`` for a writer holding its lock.

    Removes temporary files left by a killed writer, then: clears the store (``overwrite``), or reads the
    manifest of the store being resumed (its key must be ``key``; finished shards are checked). Returns
    ``(manifest to resume, None)``, ``(None, None)`` for a new store, or ``(None, store)`` when another
    writer finished it meanwhile.
    """
    remove_temp_files(directory)
    if not (directory / MANIFEST).exists():
        check_no_foreign_shards(directory)
        return None, None
    if overwrite:
        clear_store(directory)
        return None, None
    manifest = read_manifest(directory)
    if _is_stale_cache(manifest):  # an encoder's output under an older key scheme: recompute, never reuse
        clear_store(directory)
        return None, None
    if manifest.get("key") != key:
        raise ValueError(
            f"store_dir {str(directory)!r} holds embeddings with another key ({str(manifest.get('key'))[:16]} "
            f"vs {key[:16]}): a different encoder, dataset, ids, inputs or settings{mismatch_hint}. Pass "
            "overwrite=True to replace them, or another store_dir."
        )
    if manifest["complete"]:
        return None, EmbeddingStore(directory)
    for entry in manifest["shards"]:  # resuming: finished shards must be intact
        check_shard_files(directory, entry, checksum=True)
    return manifest, None


def check_storable(X: np.ndarray, name: str = "embeddings", block_rows: int = 65536) -> None:
    """Check that ``X`` survives the cast to the store's float32: finite after the cast, warn if nonzero
    values flush to 0.

    Checked block by block (bounded extra memory). A finite float64 beyond float32's range (about
    3.4e38) becomes inf in the cast, so finiteness is checked on the cast values.

    Raises
    ------
    ValueError
        A value is NaN or infinite once cast; the message names its row and column.

    Warns
    -----
    PrecisionLossWarning
        Nonzero values whose magnitude is below float32's smallest subnormal (about 1.4e-45) became 0.

    Examples
    --------
    >>> import numpy as np, warnings
    >>> check_storable(np.ones((2, 2)))
    >>> try:
    ...     check_storable(np.array([[1.0, 1e39]]))
    ... except ValueError as e:
    ...     print(str(e)[:54])
    embeddings[0, 1] = 1e+39 is NaN or infinite as float32
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     check_storable(np.array([[1.0, 1e-50]]))
    >>> w[0].category.__name__
    'PrecisionLossWarning'
    """
    if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}; convert them to float32.")
    flushed = 0
    for start in range(0, X.shape[0], block_rows):
        block = X[start : start + block_rows]
        with np.errstate(over="ignore"):  # overflow is reported below, with its row and column
            cast = block.astype(np.float32)
        bad = ~np.isfinite(cast)
        if bad.any():
            r, c = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(
                f"{name}[{start + r}, {c}] = {block[r, c].item()!r} is NaN or infinite as float32 (the store's "
                f"dtype; {int(bad.sum())} such values in rows {start}..{start + block.shape[0] - 1}; finite values "
                "beyond float32's range, |x| > 3.4e38, become inf). Clean or rescale them before storing."
            )
        flushed += int(np.count_nonzero((cast == 0) & (block != 0)))
    if flushed:
        warnings.warn(
            f"{flushed} nonzero values of {name} are below float32's smallest magnitude (1.4e-45) and are stored "
            "as 0. Rescale the embeddings first if these values matter.",
            PrecisionLossWarning,
            stacklevel=3,
        )


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
    """Write precomputed ``(n, dim)`` embeddings with their ids as a store at ``path``.

    Values are stored as float32: a value that is not finite after that cast raises ``ValueError``
    (naming its row and column), and nonzero values that flush to 0 warn (:class:`PrecisionLossWarning`).
    With ``overwrite=True`` an existing store at ``path`` is replaced: only the files its manifest lists
    and the manifest are deleted; a ``manifest.json`` that is not latentalign's, or shard-named files the
    manifest does not list, make it refuse with :class:`~latentalign.exceptions.PersistenceError`.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> s = write_embeddings(tempfile.mkdtemp(), np.eye(3, dtype=np.float32), [7, 8, 9], shard_size=2)
    >>> len(s), s.n_shards, s.ids
    (3, 2, [7, 8, 9])
    """
    X = np.asarray(embeddings)
    if X.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, dim), got shape {X.shape}.")
    check_storable(X)
    shard_size = check_number(shard_size, "shard_size", integer=True, low=1)
    id_list, id_kind = normalize_ids(ids)
    if len(id_list) != X.shape[0]:
        raise ValueError(f"embeddings have {X.shape[0]} rows but {len(id_list)} ids were given; pass one id per row.")
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    with write_lock(directory):
        remove_temp_files(directory)
        if (directory / MANIFEST).exists() and not overwrite:
            raise ValueError(f"{str(directory)!r} already holds a store; pass overwrite=True to replace it.")
        clear_store(directory)
        ids_sha = ids_digest(id_list, id_kind)
        meta = dict(metadata or {})
        writer = StoreWriter(
            directory,
            new_manifest(
                key=arrays_key(meta, dataset, ids_sha),
                dim=X.shape[1],
                n_total=len(id_list),
                id_kind=id_kind,
                encoder_meta=meta,
                dataset=dataset,
                ids_sha=ids_sha,
                settings={},
                shard_size=shard_size,
            ),
        )
        for start in range(0, X.shape[0], shard_size):
            writer.append(X[start : start + shard_size], id_list[start : start + shard_size])
        writer.finish()
    return EmbeddingStore(directory)
