"""Read Debian packages (``.deb``) in pure Python: no ``dpkg``, ``ar`` or ``tar`` program needed.

A ``.deb`` is an ``ar`` archive (the ``!<arch>`` magic, then per member a 60-byte header: name,
mtime, uid, gid, mode, decimal size, the two bytes ``"`\\n"``; each member is padded to an even
offset) holding ``debian-binary``, ``control.tar.{xz,zst,gz}`` (the package's metadata) and
``data.tar.{xz,zst,gz,bz2}`` (its files). :mod:`tarfile` reads the xz, gz and bz2 tarballs; zstd
needs the ``zstandard`` package before Python 3.14.
"""

from __future__ import annotations

import gzip
import io
import lzma
import sys
import tarfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from latentalign.exceptions import DataUnavailableError, PersistenceError

__all__ = ["ArMember", "ar_members", "deb_control", "extract_deb", "write_ar"]

_AR_MAGIC = b"!<arch>\n"
_HEADER = 60


@dataclass(frozen=True)
class ArMember:
    """One member of an ``ar`` archive: its name and where its bytes lie in the file."""

    name: str
    offset: int
    size: int


def ar_members(path: str | Path) -> list[ArMember]:
    """List the members of the ``ar`` archive at ``path`` (a ``.deb``).

    Raises
    ------
    PersistenceError
        The file is not an ``ar`` archive or is cut short; the message names the file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> deb = Path(tempfile.mkdtemp()) / "x.deb"
    >>> write_ar(deb, {"debian-binary": b"2.0\\n", "data.tar": b"abc"})
    >>> [(m.name, m.size) for m in ar_members(deb)]
    [('debian-binary', 4), ('data.tar', 3)]
    """
    path = Path(path)
    total = path.stat().st_size
    members = []
    with open(path, "rb") as handle:
        if handle.read(len(_AR_MAGIC)) != _AR_MAGIC:
            raise PersistenceError(
                f"{path} is not a Debian package (no '!<arch>' ar header); the download is corrupted. Delete it "
                "and fetch it again."
            )
        while header := handle.read(_HEADER):
            if len(header) < _HEADER or header[58:60] != b"`\n":
                raise PersistenceError(f"{path}: malformed ar member header at byte {handle.tell() - len(header)}.")
            name = header[:16].decode("ascii", "replace").rstrip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip() or 0)
            offset = handle.tell()
            if offset + size > total:
                raise PersistenceError(
                    f"{path}: member {name!r} needs {size} bytes but the file ends at {total}; the download was "
                    "cut short. Delete it and fetch it again."
                )
            members.append(ArMember(name, offset, size))
            handle.seek(offset + size + size % 2)
    return members


def write_ar(path: str | Path, members: dict[str, bytes]) -> None:
    """Write ``members`` (name -> bytes) as an ``ar`` archive, the container format of ``.deb`` files.

    Meant for building small test packages; names must fit the 16-byte field.
    """
    with open(path, "wb") as out:
        out.write(_AR_MAGIC)
        for name, data in members.items():
            header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode("ascii")
            if len(header) != _HEADER:
                raise ValueError(f"ar member name must be at most 16 ASCII characters, got {name!r}.")
            out.write(header + data + (b"\n" if len(data) % 2 else b""))


class _Window(io.RawIOBase):
    """``size`` bytes of ``handle`` from ``offset``, read as a stream."""

    def __init__(self, handle: BinaryIO, offset: int, size: int) -> None:
        super().__init__()
        handle.seek(offset)
        self._handle, self._left = handle, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self._left)
        if count <= 0:
            return 0
        data = self._handle.read(count)
        buffer[: len(data)] = data
        self._left -= len(data)
        return len(data)


def _zstd_reader(stream: IO[bytes], where: str) -> IO[bytes]:
    try:
        import zstandard
    except ModuleNotFoundError as exc:
        raise DataUnavailableError(
            f"{where} is compressed with zstd, which Python reads only from 3.14 on (running "
            f"{sys.version_info.major}.{sys.version_info.minor}). Install the zstandard package "
            "(pip install zstandard) and fetch again."
        ) from exc
    return cast(IO[bytes], zstandard.ZstdDecompressor().stream_reader(stream))


@contextmanager
def _open_tar(deb: Path, stem: str) -> Iterator[tarfile.TarFile]:
    """Stream the ``<stem>.tar[.xz|.gz|.bz2|.zst]`` member of ``deb`` as a tar archive."""
    found = [m for m in ar_members(deb) if m.name == stem + ".tar" or m.name.startswith(stem + ".tar.")]
    if not found:
        raise PersistenceError(f"{deb} has no {stem}.tar.* member; it is not a Debian binary package.")
    member = found[0]
    suffix = member.name[len(stem) + len(".tar") :].lstrip(".")
    modes = {"": "r|", "xz": "r|xz", "gz": "r|gz", "bz2": "r|bz2"}
    with open(deb, "rb") as handle:
        stream: IO[bytes] = io.BufferedReader(_Window(handle, member.offset, member.size), 1 << 20)
        if suffix == "zst":
            mode = "r|zst" if sys.version_info >= (3, 14) else "r|"
            if mode == "r|":
                stream = _zstd_reader(stream, f"{deb.name}'s {member.name}")
        elif suffix in modes:
            mode = modes[suffix]
        else:
            raise DataUnavailableError(
                f"{deb.name}: {member.name} uses a compression latentalign cannot read (expected xz, gz, bz2 or zst)."
            )
        try:
            with tarfile.open(fileobj=stream, mode=cast(Any, mode)) as tar:
                yield tar
        except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, gzip.BadGzipFile) as exc:
            raise PersistenceError(
                f"{deb}: cannot read {member.name} ({exc}); the package is corrupted. Delete it and fetch it again."
            ) from exc


def deb_control(deb: str | Path) -> dict[str, str]:
    """The fields of the package's ``control`` file (``Package``, ``Version``, ...), continuation lines dropped."""
    fields: dict[str, str] = {}
    with _open_tar(Path(deb), "control") as tar:
        for member in tar:
            if member.isfile() and member.name.lstrip("./") == "control":
                text = cast(IO[bytes], tar.extractfile(member)).read().decode("utf-8")
                for line in text.splitlines():
                    key, sep, value = line.partition(":")
                    if sep and not line[:1].isspace():
                        fields[key.strip()] = value.strip()
                break
    return fields


def extract_deb(deb: str | Path, keep: Callable[[str], str | None], dest: str | Path) -> list[str]:
    """Write the regular files of ``deb``'s data tarball that ``keep`` selects under ``dest``.

    Parameters
    ----------
    deb : str or Path
        The ``.deb`` file.
    keep : callable
        Called with each member's name (``"./usr/share/..."``); returns the path relative to ``dest``
        to write it to, or None to skip it. It must not return paths leaving ``dest``.
    dest : str or Path
        The folder to write into (created when missing).

    Returns
    -------
    list of str
        The relative paths written, in archive order.

    Examples
    --------
    >>> import io, tarfile, tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> payload = io.BytesIO()
    >>> with tarfile.open(fileobj=payload, mode="w:gz") as tar:
    ...     info = tarfile.TarInfo("./usr/share/doc/hello.txt")
    ...     info.size = 5
    ...     tar.addfile(info, io.BytesIO(b"hello"))
    >>> write_ar(folder / "hello.deb", {"debian-binary": b"2.0\\n", "data.tar.gz": payload.getvalue()})
    >>> extract_deb(folder / "hello.deb", lambda name: name.rsplit("/", 1)[-1], folder / "out")
    ['hello.txt']
    >>> (folder / "out" / "hello.txt").read_text()
    'hello'
    """
    dest = Path(dest)
    written = []
    with _open_tar(Path(deb), "data") as tar:
        for member in tar:
            rel = keep(member.name) if member.isfile() else None
            if rel is None:
                continue
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            with cast(IO[bytes], tar.extractfile(member)) as fin, open(out, "wb") as fout:
                while block := fin.read(1 << 20):
                    fout.write(block)
            written.append(rel)
    return written
