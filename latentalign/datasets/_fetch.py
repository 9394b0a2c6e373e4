"""Fetch the offline datasets from Debian packages and verify them against a checksum manifest.

A *source* is one Debian package reduced to the files a loader needs. :func:`fetch` downloads the
package with ``apt-get download`` into a temporary directory (it never installs anything), streams
the package's file system through ``dpkg-deb --fsys-tarfile``, keeps the members under ``prefix``
whose name matches one of ``patterns``, checks every kept file against ``latentalign/datasets/checksums.json`` and only
then renames the prepared directory to ``data_dir()/<source>/``. A second call finds the directory
and only re-verifies it. apt waits at most ``LATENTALIGN_NETWORK_TIMEOUT`` for a connection or for data
and does not retry (:func:`apt_timeout_options`); a failed or interrupted fetch removes its temporary
directory.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import IO, cast

from latentalign._network import network_timeouts
from latentalign._paths import data_dir
from latentalign.exceptions import DataUnavailableError, PersistenceError

__all__ = ["SOURCES", "DebianSource", "fetch", "ensure", "verify", "manifest_path", "sha256", "apt_timeout_options"]

#: The committed manifest: ``{source: {"package", "version", "files": {relpath: sha256}}}``.
_MANIFEST = Path(__file__).resolve().parent / "checksums.json"


@dataclass(frozen=True)
class DebianSource:
    """Where a dataset's files come from inside a Debian package.

    Attributes
    ----------
    package : str
        Debian binary package name.
    prefix : str
        Directory inside the package whose files are kept (relative paths are taken from here).
    patterns : tuple of str
        ``fnmatch`` patterns on the file name; a file is kept when one matches.
    """

    package: str
    prefix: str
    patterns: tuple[str, ...]


SOURCES: dict[str, DebianSource] = {
    "fashion_mnist": DebianSource("dataset-fashion-mnist", "usr/share/datasets/fashion-mnist", ("*.gz",)),
    "tuxpaint": DebianSource("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps", ("*.png", "*.svg", "*.txt")),
    "freedict_eng_fra": DebianSource("dict-freedict-eng-fra", "usr/share/dictd", ("*.index", "*.dict.dz")),
    "freedict_fra_eng": DebianSource("dict-freedict-fra-eng", "usr/share/dictd", ("*.index", "*.dict.dz")),
    "wordnet": DebianSource("wordnet-base", "usr/share/wordnet", ("data.noun", "data.verb", "data.adj", "data.adv")),
}


def manifest_path() -> Path:
    """Return the path of the committed checksum manifest (``latentalign/datasets/checksums.json``)."""
    return _MANIFEST


@lru_cache(maxsize=1)
def _manifest() -> dict:
    if not _MANIFEST.is_file():
        raise DataUnavailableError(
            f"The checksum manifest {_MANIFEST} is missing; it ships inside the latentalign package. "
            "Reinstall latentalign (pip install --force-reinstall latentalign)."
        )
    return json.loads(_MANIFEST.read_text(encoding="utf-8"))


def _source(name: str) -> DebianSource:
    if name not in SOURCES:
        raise ValueError(f"Unknown data source {name!r}. Available sources: {', '.join(sorted(SOURCES))}.")
    return SOURCES[name]


def fetch_command(name: str) -> str:
    """The shell command that fetches source ``name`` (used in error messages)."""
    return f"python data/fetch.py {name}"


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _kept(rel: str, src: DebianSource) -> str | None:
    """Path of a package member relative to ``src.prefix`` if it is kept, else None."""
    path = PurePosixPath(rel[2:] if rel.startswith("./") else rel)
    prefix = PurePosixPath(src.prefix)
    if prefix not in path.parents or ".." in path.parts:
        return None
    if not any(fnmatch.fnmatchcase(path.name, pattern) for pattern in src.patterns):
        return None
    return path.relative_to(prefix).as_posix()


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def apt_timeout_options() -> list[str]:
    """apt options bounding each connection and each wait for data by ``LATENTALIGN_NETWORK_TIMEOUT``, no retries.

    apt has one timeout for both, in whole seconds: the larger of the two, rounded up.

    Examples
    --------
    >>> import os
    >>> os.environ["LATENTALIGN_NETWORK_TIMEOUT"] = "2,7.5"
    >>> apt_timeout_options()
    ['-o', 'Acquire::http::Timeout=8', '-o', 'Acquire::https::Timeout=8', '-o', 'Acquire::Retries=0']
    >>> del os.environ["LATENTALIGN_NETWORK_TIMEOUT"]
    """
    timeouts = network_timeouts()
    seconds = math.ceil(max(timeouts.connect, timeouts.read))
    return [
        *("-o", f"Acquire::http::Timeout={seconds}"),
        *("-o", f"Acquire::https::Timeout={seconds}"),
        *("-o", "Acquire::Retries=0"),
    ]


def _apt_download(src: DebianSource, name: str, workdir: Path) -> Path:
    """``apt-get download`` the package into ``workdir`` (``apt-get update`` once if that fails)."""
    package = src.package
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise DataUnavailableError(
            f"Fetching the Debian package {package!r} needs apt-get and dpkg-deb, which are not on "
            f"PATH. Download the .deb from https://packages.debian.org/{package}, unpack it (e.g. "
            f"`ar x` then `tar xf data.tar.xz`) and copy the files under {src.prefix}/ matching "
            f"{list(src.patterns)} into {data_dir() / name}/."
        )
    bounded = apt_timeout_options()
    result = _run(["apt-get", *bounded, "download", package], workdir)
    if result.returncode != 0:  # empty package lists on a fresh machine: refresh them once
        _run(["apt-get", *bounded, "update"], workdir)
        result = _run(["apt-get", *bounded, "download", package], workdir)
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not debs:
        raise DataUnavailableError(
            f"`apt-get download {package}` failed (exit {result.returncode}): "
            f"{' '.join(result.stderr.strip()[-500:].split())}. Check the network access to the Debian archive "
            f"({network_timeouts().describe()}), or run `apt-get update` as root and try again."
        )
    return debs[0]


def _extract(deb: Path, src: DebianSource, dest: Path) -> None:
    """Stream the package's data tarball and write only the kept members under ``dest``."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    stdout = cast(IO[bytes], proc.stdout)  # stdout=PIPE: never None
    try:
        with tarfile.open(fileobj=stdout, mode="r|") as tar:
            for member in tar:
                rel = _kept(member.name, src) if member.isfile() else None
                if rel is None:
                    continue
                out = dest / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                # a regular file (isfile() above), so extractfile returns its stream, never None
                with cast(IO[bytes], tar.extractfile(member)) as fin, open(out, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
    finally:
        stdout.close()
        if proc.wait() != 0:
            raise DataUnavailableError(f"`dpkg-deb --fsys-tarfile {deb}` failed.")


def _deb_version(deb: Path) -> str:
    return _run(["dpkg-deb", "-f", str(deb), "Version"], deb.parent).stdout.strip()


def _listed(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def verify(name: str, root: Path | None = None) -> Path:
    """Check every file of source ``name`` under ``root`` against the manifest.

    Parameters
    ----------
    name : str
        Source name, one of :data:`SOURCES`.
    root : Path, optional
        Directory to check; defaults to ``data_dir() / name``.

    Returns
    -------
    Path
        ``root``.

    Raises
    ------
    PersistenceError
        A file is missing, unexpected, or has the wrong SHA-256; the message names it and how to
        re-fetch.
    """
    _source(name)
    root = data_dir() / name if root is None else root
    entry = _manifest().get(name)
    if entry is None:
        raise PersistenceError(
            f"{manifest_path()} has no entry for {name!r}; regenerate it with "
            f"`python data/fetch.py --update-checksums {name}`."
        )
    expected: dict[str, str] = entry["files"]
    present = _listed(root)
    refetch = f"Delete {data_dir() / name} and re-fetch it with `{fetch_command(name)}`."
    missing = sorted(set(expected) - set(present))
    extra = sorted(set(present) - set(expected))
    if missing or extra:
        raise PersistenceError(
            f"The files of {name!r} under {root} do not match {manifest_path().name} "
            f"(package {entry['package']} {entry['version']}): missing {missing[:5]}, "
            f"unexpected {extra[:5]}. {refetch}"
        )
    for rel, digest in expected.items():
        got = sha256(present[rel])
        if got != digest:
            raise PersistenceError(
                f"Checksum mismatch for {present[rel]}: expected SHA-256 {digest}, got {got} "
                f"(package {entry['package']} {entry['version']}). The file is corrupted or the "
                f"Debian package changed. {refetch}"
            )
    return root


def fetch(name: str, *, update_checksums: bool = False) -> Path:
    """Download, reduce and verify source ``name`` into ``data_dir() / name``; idempotent.

    Parameters
    ----------
    name : str
        Source name, one of :data:`SOURCES`.
    update_checksums : bool, default False
        Record the fetched files in ``latentalign/datasets/checksums.json`` instead of checking them (maintainers,
        when a Debian package version changes).

    Returns
    -------
    Path
        The dataset directory.
    """
    src = _source(name)
    target = data_dir() / name
    if target.is_dir() and not update_checksums:
        return verify(name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=target.parent) as tmp:
        work, staged = Path(tmp) / "deb", Path(tmp) / name
        work.mkdir()
        deb = _apt_download(src, name, work)
        staged.mkdir()
        _extract(deb, src, staged)
        if update_checksums:
            _write_manifest_entry(name, src, _deb_version(deb), staged)
        verify(name, staged)
        if target.is_dir():  # replaced on purpose (update_checksums) or by a concurrent fetch
            shutil.rmtree(target)
        staged.rename(target)
    return target


def ensure(name: str, *, download: bool = True) -> Path:
    """Return the verified directory of source ``name``, fetching it when missing.

    Raises
    ------
    DataUnavailableError
        The files are missing and ``download=False``; the message gives the command to fetch them.
    """
    _source(name)
    target = data_dir() / name
    if target.is_dir():
        return verify(name, target)
    if not download:
        raise DataUnavailableError(
            f"The {name!r} data is not in {target} and download=False. Fetch it with "
            f"`{fetch_command(name)}` (from the repository root), or call the loader with "
            "download=True."
        )
    return fetch(name)


def _write_manifest_entry(name: str, src: DebianSource, version: str, root: Path) -> None:
    data = json.loads(_MANIFEST.read_text(encoding="utf-8")) if _MANIFEST.is_file() else {}
    data[name] = {
        "package": src.package,
        "version": version,
        "files": {rel: sha256(path) for rel, path in _listed(root).items()},
    }
    _MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    tmp = _MANIFEST.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(sorted(data.items())), indent=1, sort_keys=False) + "\n")
    tmp.replace(_MANIFEST)
    _manifest.cache_clear()
