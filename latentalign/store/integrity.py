"""Integrity of a store: the manifest's schema and digest, and shard checksums verified once per process.

A manifest is trusted only after :func:`check_manifest` has checked its shape (every field of the right
type, shard entries numbered in order with consecutive row ranges, shard paths that are the store's own
file names, so never absolute and never ``..``) and, when it carries one, its ``manifest_sha256`` (a
digest of everything else in it, so an edited or reordered shard list is caught).

Shard files are checked against the sha256 their entry records the first time a process reads them
(:func:`verify_once`). A file is identified by device, inode, size and modification time, so a file
replaced or rewritten after its check is checked again; the writer registers what it has just hashed
(:func:`mark_verified`), so reading back a store in the process that wrote it costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from latentalign.exceptions import PersistenceError
from latentalign.store.format import SHARD_FILE, canonical_json

__all__ = [
    "DIGEST_FIELD",
    "check_manifest",
    "manifest_digest",
    "mark_verified",
    "verify_files",
    "verify_once",
]

#: The manifest field holding the digest of the rest of the manifest.
DIGEST_FIELD = "manifest_sha256"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FIX = "Recompute the store with embed(..., overwrite=True), or delete the store directory."

_verified: dict[tuple[int, int, int, int], str] = {}
_verified_lock = threading.Lock()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest as JSON would store it, without its :data:`DIGEST_FIELD`.

    Examples
    --------
    >>> d = manifest_digest({"format": "x", "shards": []})
    >>> d == manifest_digest({"shards": [], "format": "x", "manifest_sha256": "anything"})
    True
    """
    body = {k: v for k, v in manifest.items() if k != DIGEST_FIELD}
    as_stored = json.loads(json.dumps(body, default=str))  # what a reader parses back
    return hashlib.sha256(canonical_json(as_stored).encode()).hexdigest()


def _bad(mpath: Path, what: str) -> PersistenceError:
    return PersistenceError(f"{str(mpath)!r} is not a valid store manifest: {what}. {_FIX}")


def _int_field(entry: dict[str, Any], key: str, where: str, mpath: Path, *, low: int) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _bad(mpath, f"{where}{key!r} must be an integer >= {low}, got {value!r}")
    return value


def _check_shard_path(rel: Any, where: str, mpath: Path) -> None:
    if not isinstance(rel, str):
        raise _bad(mpath, f"{where}path must be a string, got {rel!r}")
    if os.path.isabs(rel) or ".." in Path(rel).parts:
        raise _bad(mpath, f"{where}path {rel!r} leaves the store directory (absolute or '..')")
    if not SHARD_FILE.match(rel):
        raise _bad(
            mpath,
            f"{where}path {rel!r} is not a shard file name (embeddings/emb_NNNNN.npy, metadata/metadata_NNNNN.parquet)",
        )


def _check_entry(entry: Any, position: int, start: int, mpath: Path) -> int:
    where = f"shard entry {position}: "
    if not isinstance(entry, dict):
        raise _bad(mpath, f"{where}must be an object, got {type(entry).__name__}")
    index = _int_field(entry, "index", where, mpath, low=0)
    if index != position:
        raise _bad(mpath, f"{where}is numbered {index}; shard entries must be listed in order 0, 1, 2, ...")
    if "start" in entry and _int_field(entry, "start", where, mpath, low=0) != start:
        raise _bad(mpath, f"{where}starts at row {entry['start']}, but the shards before it end at row {start}")
    rows = _int_field(entry, "rows", where, mpath, low=1)
    _int_field(entry, "bytes", where, mpath, low=0)
    _int_field(entry, "meta_bytes", where, mpath, low=0)
    for key in ("sha256", "meta_sha256"):
        if not isinstance(entry.get(key), str) or not _SHA256.match(entry[key]):
            raise _bad(mpath, f"{where}{key!r} must be 64 lowercase hex digits, got {entry.get(key)!r}")
    _check_shard_path(entry.get("embeddings"), where + "embeddings ", mpath)
    _check_shard_path(entry.get("metadata"), where + "metadata ", mpath)
    return rows


def check_manifest(manifest: Any, mpath: Path) -> dict[str, Any]:
    """Return ``manifest`` if it has the shape of a store manifest; raise :class:`PersistenceError` naming
    the first field that does not.

    The ``format`` and ``version`` fields are checked by the caller; this checks the rest.

    Examples
    --------
    >>> from pathlib import Path
    >>> check_manifest({"complete": True, "dim": 0, "dtype": "float32", "n_total": 0, "shards": []}, Path("m"))
    Traceback (most recent call last):
    ...
    latentalign.exceptions.PersistenceError: 'm' is not a valid store manifest: 'dim' must be an integer >= 1, got 0. ...
    """
    if not isinstance(manifest, dict):
        raise _bad(mpath, f"it must be a JSON object, got {type(manifest).__name__}")
    if not isinstance(manifest.get("complete"), bool):
        raise _bad(mpath, f"'complete' must be true or false, got {manifest.get('complete')!r}")
    _int_field(manifest, "dim", "", mpath, low=1)
    n_total = _int_field(manifest, "n_total", "", mpath, low=0)
    if manifest.get("dtype") != "float32":
        raise _bad(mpath, f"'dtype' must be 'float32', got {manifest.get('dtype')!r}")
    for key in ("encoder", "settings"):
        if manifest.get(key) is not None and not isinstance(manifest[key], dict):
            raise _bad(mpath, f"{key!r} must be an object, got {type(manifest[key]).__name__}")
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        raise _bad(mpath, f"'shards' must be a list, got {type(shards).__name__}")
    rows = 0
    for position, entry in enumerate(shards):
        rows += _check_entry(entry, position, rows, mpath)
    if rows > n_total or (manifest["complete"] and rows != n_total):
        state = "complete" if manifest["complete"] else "incomplete"
        raise _bad(mpath, f"its shards hold {rows} rows, but the {state} store records n_total={n_total}")
    recorded = manifest.get(DIGEST_FIELD)
    if recorded is not None and recorded != manifest_digest(manifest):
        raise _bad(
            mpath, f"its content differs from the {DIGEST_FIELD!r} recorded when it was written (edited or corrupt)"
        )
    return manifest


def _identity(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def mark_verified(path: Path, sha256: str) -> None:
    """Record that ``path``, as it is now, has the checksum ``sha256`` (its writer has just hashed it)."""
    with _verified_lock:
        _verified[_identity(path)] = sha256


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)  # releases the GIL: shards hash in parallel threads
    return h.hexdigest()


def verify_once(path: Path, sha256: str, what: str) -> None:
    """Raise :class:`PersistenceError` unless ``path``'s bytes hash to ``sha256``; a file already verified
    in this process (and not changed since) is not read again. ``what`` names the file in the message."""
    try:
        key = _identity(path)
    except OSError as exc:
        raise PersistenceError(f"{what} {str(path)!r} cannot be read ({exc}). {_FIX}") from exc
    with _verified_lock:
        if _verified.get(key) == sha256:
            return
    if _sha256_file(path) != sha256:
        raise PersistenceError(
            f"{what} {str(path)!r} is corrupt: its sha256 differs from the one recorded when it was written. {_FIX}"
        )
    with _verified_lock:
        _verified[key] = sha256


def verify_files(checks: Iterable[tuple[Path, str, str]], threads: int | None = None) -> None:
    """Run :func:`verify_once` on ``(path, sha256, what)`` triples, in up to ``threads`` threads (default:
    the CPU count, at most 8); the first failure is raised."""
    todo = list(checks)
    workers = min(len(todo), threads or min(os.cpu_count() or 1, 8))
    if workers <= 1:
        for check in todo:
            verify_once(*check)
        return
    call: Callable[[tuple[Path, str, str]], None] = lambda check: verify_once(*check)  # noqa: E731
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(call, todo))
