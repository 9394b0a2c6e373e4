"""Fetch the offline datasets from Debian packages and verify them against a checksum manifest.

A *source* is one Debian package reduced to the files a loader needs. The manifest
(``latentalign/datasets/checksums.json``) records, per source, the package's pool path in the Debian
archive with the SHA-256 of the ``.deb``, and the SHA-256 of every file kept from it. :func:`fetch`
downloads the ``.deb`` with pooch from the first mirror that answers (:func:`debian_mirrors`:
``$LATENTALIGN_DEBIAN_MIRRORS``, else :data:`DEFAULT_MIRRORS`), checks its SHA-256, unpacks it in pure
Python (:mod:`latentalign.datasets._deb`: no apt, dpkg or tar program, so it works on any OS), keeps the
members under ``prefix`` whose name matches one of ``patterns``, checks every kept file and only then
renames the prepared directory to ``data_dir()/<source>/``. A second call finds the directory and only
re-verifies it. Each request waits at most ``LATENTALIGN_NETWORK_TIMEOUT`` for a connection or for data;
a download lands in a temporary file that pooch renames only once complete and verified. Where every
mirror fails and ``apt-get`` exists (Debian and derivatives), ``apt-get download`` is tried last
(:func:`apt_timeout_options`). Offline: copy the ``.deb`` into :func:`debs_dir` by hand.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

import pooch

from latentalign._network import network_timeouts, short_cause
from latentalign._paths import data_dir
from latentalign._progress import progress_enabled
from latentalign.datasets._deb import deb_control, extract_deb
from latentalign.exceptions import DataUnavailableError, PersistenceError

__all__ = [
    "SOURCES",
    "DebianSource",
    "MIRRORS_ENV",
    "DEFAULT_MIRRORS",
    "debian_mirrors",
    "debs_dir",
    "fetch",
    "ensure",
    "verify",
    "manifest_path",
    "sha256",
    "apt_timeout_options",
]

logger = logging.getLogger(__name__)

#: The environment variable listing the Debian mirrors to try, in order.
MIRRORS_ENV = "LATENTALIGN_DEBIAN_MIRRORS"
#: Base URLs of Debian archives tried in turn (a package's URL is ``<base>/<pool path>``). The snapshot
#: archive keeps every package version ever published, so the pinned versions stay fetchable after they
#: leave the current releases.
DEFAULT_MIRRORS = (
    "https://deb.debian.org/debian",
    "https://ftp.debian.org/debian",
    "https://snapshot.debian.org/archive/debian/20240101T000000Z",
)

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


def debian_mirrors() -> tuple[str, ...]:
    """Base URLs of the Debian archives to download packages from, tried in order.

    ``$LATENTALIGN_DEBIAN_MIRRORS`` (URLs separated by commas or spaces) replaces
    :data:`DEFAULT_MIRRORS` when set and not empty.

    Raises
    ------
    ValueError
        An entry is not an ``http://`` or ``https://`` URL.

    Examples
    --------
    >>> import os
    >>> os.environ["LATENTALIGN_DEBIAN_MIRRORS"] = "http://mirror.example/debian/, https://deb.debian.org/debian"
    >>> debian_mirrors()
    ('http://mirror.example/debian', 'https://deb.debian.org/debian')
    >>> del os.environ["LATENTALIGN_DEBIAN_MIRRORS"]
    >>> debian_mirrors() == DEFAULT_MIRRORS
    True
    """
    raw = os.environ.get(MIRRORS_ENV, "").strip()
    if not raw:
        return DEFAULT_MIRRORS
    mirrors = tuple(m.rstrip("/") for m in re.split(r"[,\s]+", raw) if m)
    bad = [m for m in mirrors if not re.match(r"https?://[^/]+", m)]
    if bad:
        raise ValueError(
            f"{MIRRORS_ENV} must list http:// or https:// base URLs of Debian archives (the folder holding "
            f"pool/), separated by commas or spaces; got {bad[0]!r}. Fix it, e.g. "
            f"{MIRRORS_ENV}=https://deb.debian.org/debian, or unset it for the defaults."
        )
    return mirrors


def debs_dir() -> Path:
    """Where downloaded ``.deb`` files wait to be unpacked (``data_dir() / "debs"``).

    A package placed there by hand, under its file name in the manifest, is used instead of a
    download (its SHA-256 is checked). It is deleted once unpacked and verified.
    """
    return data_dir() / "debs"


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


def _apt_download(src: DebianSource, workdir: Path) -> Path:
    """``apt-get download`` the package into ``workdir`` (``apt-get update`` once if that fails)."""
    package = src.package
    bounded = apt_timeout_options()
    result = _run(["apt-get", *bounded, "download", package], workdir)
    if result.returncode != 0:  # empty package lists on a fresh machine: refresh them once
        _run(["apt-get", *bounded, "update"], workdir)
        result = _run(["apt-get", *bounded, "download", package], workdir)
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not debs:
        raise DataUnavailableError(f"exit {result.returncode}: {' '.join(result.stderr.strip()[-300:].split())}")
    return debs[0]


def _deb_entry(name: str) -> dict:
    entry = _manifest().get(name, {}).get("deb")
    if not entry:
        raise PersistenceError(
            f"{manifest_path()} has no package file for {name!r} (its 'deb' entry: pool path, size, sha256). "
            "Reinstall latentalign, or add the entry from the package's page on https://packages.debian.org."
        )
    return entry


def _download_deb(name: str, src: DebianSource, workdir: Path, *, pinned: bool = True) -> Path:
    """The verified ``.deb`` of source ``name``: from :func:`debs_dir`, a mirror, or apt-get as a last resort.

    ``pinned=False`` (recording new checksums) accepts whatever file the mirror serves.
    """
    entry = _deb_entry(name)
    fname = PurePosixPath(entry["path"]).name
    known = f"sha256:{entry['sha256']}" if pinned else None
    timeouts = network_timeouts()
    # pooch draws a tqdm bar on stderr; --no-progress (LATENTALIGN_PROGRESS=0) turns it off
    downloader = pooch.HTTPDownloader(timeout=(timeouts.connect, timeouts.read), progressbar=progress_enabled())
    failures = []
    for mirror in debian_mirrors():
        url = f"{mirror}/{entry['path']}"
        try:
            started = time.perf_counter()
            path = Path(pooch.retrieve(url, known, fname=fname, path=debs_dir(), downloader=downloader))
            logger.info("%s for %r ready (%s) in %.1f s", fname, name, url, time.perf_counter() - started)
            return path
        except (OSError, ValueError) as exc:  # requests' errors are OSErrors; a wrong hash is a ValueError
            failures.append(f"{mirror}: {short_cause(exc)}")
    if shutil.which("apt-get") is not None:
        try:
            return _apt_download(src, workdir)
        except DataUnavailableError as exc:
            failures.append(f"apt-get download {src.package}: {exc}")
    size = entry.get("size", 0) / 2**20
    raise DataUnavailableError(
        f"Could not download {fname} ({size:.1f} MiB) for {name!r}: {'; '.join(failures)} "
        f"({timeouts.describe()}). Set {MIRRORS_ENV} to a reachable Debian mirror, or offline: download "
        f"{DEFAULT_MIRRORS[0]}/{entry['path']} elsewhere, copy it to {debs_dir() / fname} and run "
        f"`{fetch_command(name)}` again."
    )


def _extract(deb: Path, src: DebianSource, dest: Path) -> None:
    """Unpack the package's data tarball, writing only the kept members under ``dest``."""
    extract_deb(deb, lambda member: _kept(member, src), dest)


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
        Record the package's and the kept files' SHA-256 in ``latentalign/datasets/checksums.json``
        instead of checking them (maintainers: to move to another package version, write its pool path,
        from https://packages.debian.org, into the source's ``deb.path`` first).

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
    logger.info("fetching %r (Debian package %s) into %s", name, src.package, target)
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=target.parent) as tmp:
            work, staged = Path(tmp) / "deb", Path(tmp) / name
            work.mkdir()
            deb = _download_deb(name, src, work, pinned=not update_checksums)
            staged.mkdir()
            _extract(deb, src, staged)
            if update_checksums:
                _write_manifest_entry(name, src, deb, staged)
            verify(name, staged)
            if target.is_dir():  # replaced on purpose (update_checksums) or by a concurrent fetch
                shutil.rmtree(target)
            staged.rename(target)
        deb.unlink(missing_ok=True)  # unpacked and verified: the files are what is kept
    finally:
        try:  # the download folder goes once empty; a verified .deb kept by a failed unpack stays for a retry
            debs_dir().rmdir()
        except OSError:
            pass
    logger.info("fetched %r in %.1f s", name, time.perf_counter() - started)
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


def _write_manifest_entry(name: str, src: DebianSource, deb: Path, root: Path) -> None:
    data = json.loads(_MANIFEST.read_text(encoding="utf-8")) if _MANIFEST.is_file() else {}
    previous = data.get(name, {}).get("deb", {})
    data[name] = {
        "package": src.package,
        "version": deb_control(deb).get("Version", ""),
        "deb": {"path": previous.get("path", ""), "size": deb.stat().st_size, "sha256": sha256(deb)},
        "files": {rel: sha256(path) for rel, path in _listed(root).items()},
    }
    _MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    tmp = _MANIFEST.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(sorted(data.items())), indent=1, sort_keys=False) + "\n")
    tmp.replace(_MANIFEST)
    _manifest.cache_clear()
