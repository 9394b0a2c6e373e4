"""The run record every computing command writes: one call, the same fields for every command."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["save_run_record"]


def save_run_record(
    kind: str,
    rows: Sequence[dict[str, Any]],
    out_dir: Path,
    *,
    started: float,
    echo: Callable[[str], Any],
    settings: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    seed: int | None = None,
    outputs: Sequence[str | os.PathLike[str]] = (),
    extra: dict[str, Any] | None = None,
    name: str | None = None,
) -> Path:
    """Write the run record of one command (unique name in ``out_dir``), say where, return its path.

    ``inputs`` maps names to paths (described by size and sha256, or a store's manifest digest) or to
    plain values; the record also holds ``sys.argv``, the library versions and the wall time since
    ``started`` (a ``time.perf_counter()`` value).

    Examples
    --------
    >>> import json, tempfile, time
    >>> out = Path(tempfile.mkdtemp())
    >>> path = save_run_record("fit", [{"pair": "a -> b", "method": "procrustes"}], out,
    ...                        started=time.perf_counter(), echo=lambda line: None)
    >>> path.name.startswith("fit-"), json.loads(path.read_text())["rows"][0]["method"]
    (True, 'procrustes')
    """
    from latentalign.reports import make_record, write_record

    record = make_record(
        kind, rows, settings=settings, inputs=inputs, seed=seed, extra=extra, started=started, outputs=outputs
    )
    path = write_record(record, out_dir, name)
    echo(f"wrote run record {path}")
    return path
