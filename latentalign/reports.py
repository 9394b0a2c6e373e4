"""Run records and reports: one JSON record per run, turned into markdown/CSV tables and PNG plots.

A record is a flat, self-describing JSON document::

    {"kind": "demo", "created": "...", "seed": 0, "settings": {...}, "inputs": {...},
     "versions": {"latentalign": ..., "torch": ..., ...}, "rows": [{"pair": ..., "method": ..., "recall@1": ...}]}

``rows`` holds the results table: one dict per row, the same keys in every row.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from latentalign._optional import library_versions

__all__ = [
    "make_record",
    "write_record",
    "read_records",
    "rows_to_markdown",
    "rows_to_csv",
    "write_report",
    "RECORDED_LIBRARIES",
]


#: Distributions whose versions a run record lists (those installed), besides Python.
RECORDED_LIBRARIES = (
    "latentalign",
    "torch",
    "numpy",
    "scipy",
    "scikit-learn",
    "pot",
    "faiss-cpu",
    "sentence-transformers",
    "transformers",
    "onnxruntime",
)


def make_record(
    kind: str,
    rows: Sequence[dict[str, Any]],
    *,
    settings: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a run record (see the module docstring)."""
    return {
        "kind": kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seed": seed,
        "settings": settings or {},
        "inputs": inputs or {},
        "versions": {"python": platform.python_version(), **library_versions(*RECORDED_LIBRARIES)},
        "rows": [dict(r) for r in rows],
        **(extra or {}),
    }


def write_record(record: dict[str, Any], out_dir: str | os.PathLike[str], name: str | None = None) -> Path:
    """Write ``record`` as ``<out_dir>/<name>.json`` atomically; return the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name or record['kind']}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read_records(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Read run records from JSON files or directories of them (sorted by file name)."""
    records = []
    for p in paths:
        p = Path(p)
        files = sorted(p.glob("*.json")) if p.is_dir() else [p]
        for f in files:
            try:
                record = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"{str(f)!r} is not a readable run record ({exc}).") from None
            if not isinstance(record, dict) or "rows" not in record:
                raise ValueError(f"{str(f)!r} is JSON but not a latentalign run record (no 'rows').")
            records.append(record)
    return records


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    return cols


def rows_to_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub markdown table of ``rows`` (floats with 3 decimals; missing values as "–")."""
    cols = list(columns or _columns(rows))
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def rows_to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """``rows`` as CSV text with a header line."""
    cols = list(columns or _columns(rows))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_report(
    records: Sequence[dict[str, Any]],
    out_dir: str | os.PathLike[str],
    *,
    metric: str = "recall@1",
    group: str = "pair",
    series: str = "method",
) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv`` and a bar plot of ``metric`` per ``group`` and ``series``.

    Returns the paths written (``{"markdown": ..., "csv": ..., "plot": ...}``; no plot when matplotlib is
    missing or no row has ``metric``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [row for record in records for row in record["rows"]]
    paths = {"markdown": out / "report.md", "csv": out / "report.csv"}
    body = [f"# latentalign report\n\n{len(records)} run record(s).\n"]
    for record in records:
        body.append(f"## {record.get('kind', 'run')} ({record.get('created', '')}, seed {record.get('seed')})\n")
        body.append(rows_to_markdown(record["rows"]) + "\n")
    paths["markdown"].write_text("\n".join(body))
    paths["csv"].write_text(rows_to_csv(rows))
    plotted = [r for r in rows if isinstance(r.get(metric), (int, float))]
    if plotted:
        plot = plot_metric(
            plotted, out / f"{metric.replace('@', '_at_')}.png", metric=metric, group=group, series=series
        )
        if plot is not None:
            paths["plot"] = plot
    return paths


def plot_metric(rows: Sequence[dict[str, Any]], path: Path, *, metric: str, group: str, series: str) -> Path | None:
    """Grouped bar chart of ``metric``: one group per ``group`` value, one bar per ``series`` value."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    groups = list(dict.fromkeys(str(r.get(group)) for r in rows))
    names = list(dict.fromkeys(str(r.get(series)) for r in rows))
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups)), 4.0))
    for i, name in enumerate(names):
        values = []
        for g in groups:
            match = [r[metric] for r in rows if str(r.get(group)) == g and str(r.get(series)) == name]
            values.append(match[0] if match else float("nan"))
        ax.bar([j + i * width for j in range(len(groups))], values, width=width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))])
    ax.set_xticklabels(groups, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.0 if all(0 <= r[metric] <= 1 for r in rows) else None)
    ax.legend(fontsize=8, ncol=min(len(names), 5))
    ax.set_title(f"{metric} by {group} and {series}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
