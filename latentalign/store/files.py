"""File primitives of the store: checksums, durable atomic writes and the writer lock."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from latentalign.store.format import LOCK

__all__ = ["atomic_write_bytes", "fsync_dir", "fsync_file", "sha256_file", "write_lock"]


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "f"
    >>> _ = p.write_bytes(b"")
    >>> sha256_file(p)[:16]
    'e3b0c44298fc1c14'
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (renames into it) to disk; a no-op where directories cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file written by another library (e.g. a parquet writer) to disk."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a hidden temporary file (fsynced, then renamed over ``path``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "manifest.json"
    >>> atomic_write_bytes(p, b"{}")
    >>> p.read_bytes(), sorted(x.name for x in p.parent.iterdir())
    (b'{}', ['manifest.json'])
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _lock_owner(path: Path) -> tuple[str, int] | str:
    """The ``(host, pid)`` a writer lock names, or, when it is not a lock latentalign wrote, its text."""
    try:
        raw = path.read_bytes()[:200]
    except FileNotFoundError:
        return "", 0  # released meanwhile: taking it is safe
    except OSError as exc:
        return f"<unreadable: {exc.strerror or exc}>"
    text = raw.decode("utf-8", errors="replace")
    parts = text.split()
    if len(parts) == 2 and parts[1].isascii() and parts[1].isdigit() and 0 < int(parts[1]) < 2**31:
        return parts[0], int(parts[1])
    return text


@contextlib.contextmanager
def write_lock(directory: Path) -> Iterator[None]:
    """Exclusive writer lock (a file holding host and pid); a lock left by a dead process is taken over.

    A lock file that does not hold ``HOST PID`` (damaged, or written by something else) is never taken
    over, since nothing tells whether its writer is alive: the error names the file and when deleting it
    is safe.
    """
    path = directory / LOCK
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(path)
            if isinstance(owner, str):
                held = (
                    f"it holds {owner[:60]!r}"
                    if owner.strip()
                    else "it is empty: a writer just starting, or one that crashed before writing it"
                )
                raise RuntimeError(
                    f"the store {str(directory)!r} is locked by {str(path)!r}, which does not name its writer as "
                    f"'HOST PID' ({held}), so latentalign cannot tell whether that writer is still running. If "
                    f"no process is writing this store, delete {str(path)!r} and run again (finished shards are "
                    "kept); if one may be, wait for it to finish first."
                ) from None
            host, pid = owner
            alive = bool(host)
            if host == socket.gethostname():
                try:
                    os.kill(pid, 0)
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
