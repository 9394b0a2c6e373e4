"""A disk cache for the results of an experiment's expensive fits, so that a long run can be resumed.

An experiment such as ``few_and_no_pairs`` spends most of an hour in fits whose results are small JSON
records. This module stores each job's records under ``<home>/experiments/<experiment>/<key>.json``
(:func:`latentalign._paths.home_dir`). The key is a SHA-256 of everything the records depend on:

* the input arrays (shape, dtype and bytes),
* the job's settings (any JSON value: budgets, methods, seed...),
* the code of the installed ``latentalign`` package (every ``.py`` file, without its comments and
  docstrings: :func:`behaviour_source`),

so a cached record is reused only when rerunning would compute the same thing. Any change of library code
(a default, a bug fix) invalidates every entry; a change of a comment, a docstring or a config's page
text (its notes) does not.
An interrupted run keeps the jobs it finished, and writing the notes of a page after its run costs
nothing to render. A job of many fits can also keep each fit as it finishes (:func:`journaled_job`): its
journal, ``<key>.partial.jsonl`` beside the entry, lets a run stopped in the middle of an hours-long job
resume at the first fit it had not finished; the journal is removed once the job's entry is written.

Each file holds the SHA-256 of its payload; a file that does not match (truncated write, edited by
hand) is reported in the log, ignored and overwritten, never read as a result.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> os.environ["LATENTALIGN_HOME"] = tempfile.mkdtemp()
>>> X = np.ones((2, 3), dtype=np.float32)
>>> key = job_key([X], {"seed": 0})
>>> calls = []
>>> def fit():
...     calls.append(1)
...     return [{"r1": 0.5}]
>>> cached_job("demo", key, fit), cached_job("demo", key, fit), len(calls)
(([{'r1': 0.5}], False), ([{'r1': 0.5}], True), 1)
>>> _ = os.environ.pop("LATENTALIGN_HOME")
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentalign._paths import home_dir
from latentalign.store.files import atomic_write_bytes

__all__ = [
    "behaviour_source",
    "source_fingerprint",
    "code_fingerprint",
    "job_key",
    "array_digest",
    "cache_path",
    "journal_path",
    "cached_job",
    "journaled_job",
]

logger = logging.getLogger(__name__)

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]
_FORMAT = 1


def behaviour_source(source: str | bytes, filename: str = "<source>") -> str:
    r"""A module's syntax tree without its docstrings, as text: what the module does, not how it reads.

    Comments, docstrings and layout do not change what a fit computes, so they are left out of
    :func:`code_fingerprint`; editing a comment or a docstring after a long run keeps its cached fits.

    Parameters
    ----------
    source : str or bytes
        Python source of one module.
    filename : str, default "<source>"
        Named in the ``SyntaxError`` of a file that does not parse.

    Returns
    -------
    str
        ``ast.dump`` of the tree with every module, class and function docstring removed.

    Examples
    --------
    >>> behaviour_source("def f(x):\n    'Twice x.'\n    return 2 * x  # doubled") == behaviour_source(
    ...     "def f(x): return 2 * x"
    ... )
    True
    >>> behaviour_source("def f(x): return 2 * x") == behaviour_source("def f(x): return 3 * x")
    False
    """
    tree = ast.parse(source, filename=filename)
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and ast.get_docstring(node, clean=False) is not None
        ):
            node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False)


def source_fingerprint(root: Path) -> str:
    """SHA-256 of every ``.py`` file under ``root``: relative paths and :func:`behaviour_source` texts."""
    digest = hashlib.sha256()
    for path in sorted(Path(root).rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(behaviour_source(path.read_bytes(), str(path)).encode())
        digest.update(b"\0")
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """:func:`source_fingerprint` of the installed ``latentalign`` package (computed once per process)."""
    return source_fingerprint(_PACKAGE_ROOT)


def job_key(arrays: Sequence[np.ndarray], settings: Any) -> str:
    """The cache key of one job: its input arrays, its settings (JSON) and :func:`code_fingerprint`.

    Parameters
    ----------
    arrays : sequence of numpy.ndarray
        The job's inputs; their shapes, dtypes and bytes enter the key.
    settings : JSON-serialisable
        Everything else the job's result depends on (seed, budgets, method names...).

    Returns
    -------
    str
        A 64-character hexadecimal SHA-256.
    """
    digest = hashlib.sha256(f"format {_FORMAT}\0code {code_fingerprint()}\0".encode())
    _hash_arrays(digest, arrays)
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def array_digest(arrays: Sequence[np.ndarray]) -> str:
    """SHA-256 of arrays' dtypes, shapes and bytes, in order: a checksum a record can keep of its inputs.

    Two records whose inputs have the same digest were computed on the same numbers; the fit cache keys
    (:func:`job_key`) hash the arrays the same way.

    Examples
    --------
    >>> import numpy as np
    >>> array_digest([np.zeros(3)]) == array_digest([np.zeros(3)])
    True
    >>> array_digest([np.zeros(3)]) == array_digest([np.zeros(3, dtype=np.float32)])
    False
    """
    digest = hashlib.sha256()
    _hash_arrays(digest, arrays)
    return digest.hexdigest()


def _hash_arrays(digest: Any, arrays: Sequence[np.ndarray]) -> None:
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str} {array.shape}\0".encode())
        digest.update(array.data)


def cache_path(experiment: str, key: str) -> Path:
    """Where the records of job ``key`` of ``experiment`` are kept."""
    return home_dir() / "experiments" / experiment / f"{key}.json"


def journal_path(experiment: str, key: str) -> Path:
    """Where the fits of job ``key`` finished so far are kept while the job runs (:func:`journaled_job`)."""
    return home_dir() / "experiments" / experiment / f"{key}.partial.jsonl"


def _payload_digest(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()


def _sealed(payload: str) -> str:
    """``payload`` (JSON text) in the stored envelope: the format and the payload's SHA-256 beside it."""
    return json.dumps({"format": _FORMAT, "sha256": _payload_digest(payload), "payload": payload})


def _unsealed(text: str) -> Any:
    """The value :func:`_sealed` stored in ``text``; ``ValueError``/``KeyError``/``TypeError`` when unsound."""
    stored = json.loads(text)
    payload = stored["payload"]
    if stored.get("format") != _FORMAT or stored.get("sha256") != _payload_digest(payload):
        raise ValueError("checksum mismatch")
    return json.loads(payload)


def _read(path: Path) -> Any | None:
    """The records kept at ``path``; None when there are none or the file fails its checksum."""
    try:
        return _unsealed(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring the corrupt fit cache entry %s (%s); the job runs again and replaces it", path, exc)
        return None


def _write(path: Path, payload: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, _sealed(payload).encode("utf-8"))  # a reader sees the old file or the whole new one


def cached_job(experiment: str, key: str, compute: Callable[[], Any]) -> tuple[Any, bool]:
    """The records of job ``key`` and whether they came from the cache (else ``compute()`` ran; stored).

    Both ways return the records as JSON gives them back (tuples become lists, numpy scalars plain
    numbers), so a cached run and a fresh one build the same page.

    Parameters
    ----------
    experiment : str
        The experiment's name (a folder of the cache).
    key : str
        From :func:`job_key`.
    compute : callable
        Runs the job; its result must be JSON-serialisable (numpy scalars and arrays are converted).

    Returns
    -------
    records : Any
        The job's records.
    reused : bool
        True when they were read from the cache.
    """
    return journaled_job(experiment, key, lambda done, keep: compute())


def journaled_job(
    experiment: str, key: str, compute: Callable[[list[Any], Callable[[Any], None]], Any]
) -> tuple[Any, bool]:
    """Like :func:`cached_job`, for a job of many fits that keeps each fit as it finishes.

    ``compute(done, keep)`` receives the fit records a stopped run of the same job journaled (``done``,
    oldest first, each as JSON gives it back; empty on a first run) and a function ``keep(record)`` to
    call with each record it finishes: that record is appended to the job's journal
    (:func:`journal_path`) and flushed to disk before ``keep`` returns. The job's result is stored as
    :func:`cached_job` stores it, and the journal is then removed.

    Each journal line carries the SHA-256 of its record: a line that does not match (a write cut short
    when the run was killed, an edit) is reported in the log and dropped, so that fit runs again; it is
    never read as a result.

    Parameters
    ----------
    experiment, key : str
        As for :func:`cached_job`.
    compute : callable
        ``compute(done, keep)`` runs the fits missing from ``done`` and returns the job's records
        (JSON-serialisable, numpy scalars and arrays converted).

    Returns
    -------
    records : Any
        The job's records.
    reused : bool
        True when the whole job was read from the cache (``compute`` did not run).

    Examples
    --------
    >>> import os, tempfile
    >>> os.environ["LATENTALIGN_HOME"] = tempfile.mkdtemp()
    >>> def three_fits(done, keep):
    ...     records = list(done)
    ...     for i in range(len(done), 3):
    ...         records.append({"fit": i})
    ...         keep(records[-1])
    ...         if i == 1 and not done:
    ...             raise RuntimeError("the run is stopped after its second fit")
    ...     return records
    >>> try:
    ...     journaled_job("demo", "k", three_fits)
    ... except RuntimeError:
    ...     pass
    >>> journaled_job("demo", "k", three_fits)  # the two kept fits are not computed again
    ([{'fit': 0}, {'fit': 1}, {'fit': 2}], False)
    >>> journal_path("demo", "k").exists()
    False
    >>> _ = os.environ.pop("LATENTALIGN_HOME")
    """
    path = cache_path(experiment, key)
    cached = _read(path)
    if cached is not None:
        logger.info("%s: read a finished job from the fit cache (%s)", experiment, path.name[:12])
        return cached, True
    journal = journal_path(experiment, key)
    done = _read_journal(journal)
    if done:
        logger.info("%s: resuming a job after its %d journaled fits (%s)", experiment, len(done), journal.name[:12])
    _rewrite_journal(journal, done)  # drops a line cut short, so that new lines start on a line of their own

    def keep(record: Any) -> None:
        journal.parent.mkdir(parents=True, exist_ok=True)
        with journal.open("a", encoding="utf-8") as stream:
            stream.write(_journal_line(record) + "\n")
            stream.flush()
            os.fsync(stream.fileno())

    payload = json.dumps(compute(done, keep), default=_to_json)
    _write(path, payload)
    journal.unlink(missing_ok=True)
    return json.loads(payload), False


def _read_journal(journal: Path) -> list[Any]:
    """The sound records of a job's journal, in order; unsound lines are reported and left out."""
    try:
        lines = journal.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        logger.warning("ignoring the unreadable fit journal %s (%s); its fits run again", journal, exc)
        return []
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(_unsealed(line))
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring line %d of the fit journal %s (%s); that fit runs again", number, journal, exc)
    return records


def _rewrite_journal(journal: Path, records: list[Any]) -> None:
    if not records:
        journal.unlink(missing_ok=True)
        return
    text = "".join(_journal_line(record) + "\n" for record in records)
    atomic_write_bytes(journal, text.encode("utf-8"))


def _journal_line(record: Any) -> str:
    return _sealed(json.dumps(record, default=_to_json))


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"a fit record holds {type(value).__name__}, which JSON cannot store")
