"""Run records and reports: one JSON record per run, turned into markdown/CSV tables and PNG/SVG plots.

A record is a flat, self-describing JSON document::

    {"kind": "evaluate", "created": "2026-01-31T12:00:00Z", "command": ["latentalign", "evaluate", ...],
     "seed": 0, "settings": {...}, "wall_s": 1.2,
     "inputs": {"queries": {"path": "a.npy", "bytes": 1234, "sha256": "..."}, ...},
     "versions": {"python": ..., "latentalign": ..., "torch": ..., "numpy": ..., <optional libraries used>},
     "rows": [{"pair": "a -> b", "method": ..., "recall@1": ...}], "outputs": [...]}

``rows`` holds the results table: one dict per row, the same keys in every row, labelled by ``pair`` and
``method``. Records are written atomically under a unique name (:func:`record_name`), so two runs into one
folder never overwrite each other. :func:`read_records` also reads the records of older versions (fixed
names, no labels) and the ``report.json`` of ``latentalign diagnose``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import re
import secrets
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from latentalign._optional import library_versions

__all__ = [
    "make_record",
    "write_record",
    "record_name",
    "read_records",
    "describe_input",
    "file_sha256",
    "diagnosis_rows",
    "rows_to_markdown",
    "rows_to_csv",
    "write_report",
    "plot_metric",
    "plot_reliability",
    "plot_layer_similarity",
    "RECORDED_LIBRARIES",
    "OPTIONAL_LIBRARIES",
]


#: Distributions whose versions every run record lists (besides Python).
RECORDED_LIBRARIES = ("latentalign", "torch", "numpy")
#: Optional distributions and the module each is imported as: a record lists those the run imported.
OPTIONAL_LIBRARIES = {
    "scipy": "scipy",
    "scikit-learn": "sklearn",
    "safetensors": "safetensors",
    "pot": "ot",
    "faiss-cpu": "faiss",
    "sentence-transformers": "sentence_transformers",
    "transformers": "transformers",
    "tokenizers": "tokenizers",
    "onnxruntime": "onnxruntime",
    "open_clip_torch": "open_clip",
    "timm": "timm",
    "matplotlib": "matplotlib",
    "pyarrow": "pyarrow",
    "ray": "ray",
    "typer": "typer",
}
_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks (constant memory for any file size).

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "x.txt"
    >>> _ = path.write_bytes(b"abc")
    >>> file_sha256(path)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_input(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a run read from ``path``: its size and content hash, so a record says exactly which data it saw.

    A file: ``bytes`` and ``sha256`` (streamed). An embedding store directory: its manifest's digest
    (``manifest_sha256``, which covers every shard's checksum) and row count. Another directory: the file
    count, total bytes and one ``sha256`` over every file's relative path and content.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "x.txt"
    >>> _ = path.write_bytes(b"abc")
    >>> info = describe_input(path)
    >>> info["kind"], info["bytes"], info["sha256"][:8]
    ('file', 3, 'ba7816bf')
    >>> describe_input(path.parent / "missing.npy")["kind"]
    'missing'
    """
    p = Path(path)
    info: dict[str, Any] = {"path": str(p)}
    if p.is_file():
        return {**info, "kind": "file", "bytes": p.stat().st_size, "sha256": file_sha256(p)}
    if p.is_dir() and (p / "manifest.json").is_file():
        from latentalign.store.integrity import manifest_digest

        try:
            manifest = json.loads((p / "manifest.json").read_text())
            rows = sum(int(s["rows"]) for s in manifest.get("shards", []))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {**info, "kind": "store", "manifest_sha256": None, "note": "unreadable manifest"}
        return {**info, "kind": "store", "rows": rows, "manifest_sha256": manifest_digest(manifest)}
    if p.is_dir():
        digest, total, count = hashlib.sha256(), 0, 0
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            digest.update(f.relative_to(p).as_posix().encode("utf-8", "surrogatepass") + b"\x00")
            digest.update(file_sha256(f).encode() + b"\x01")
            total, count = total + f.stat().st_size, count + 1
        return {**info, "kind": "directory", "files": count, "bytes": total, "sha256": digest.hexdigest()}
    return {**info, "kind": "missing"}


def _versions() -> dict[str, str]:
    used = [dist for dist, module in OPTIONAL_LIBRARIES.items() if module in sys.modules]
    return {"python": platform.python_version(), **library_versions(*RECORDED_LIBRARIES, *used)}


def make_record(
    kind: str,
    rows: Sequence[dict[str, Any]],
    *,
    settings: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
    command: Sequence[str] | None = None,
    started: float | None = None,
    outputs: Sequence[str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """Assemble a run record (see the module docstring).

    Parameters
    ----------
    kind : str
        What ran (``"evaluate"``, ``"experiment:NAME"``, ...); the start of the file name.
    rows : sequence of dict
        The results table.
    settings : dict, optional
        The run's parameters.
    inputs : dict, optional
        ``{name: value}``; paths (``os.PathLike``) are replaced by :func:`describe_input` of them.
    seed : int, optional
    extra : dict, optional
        More top-level keys.
    command : sequence of str, optional
        The exact command line (default ``sys.argv``).
    started : float, optional
        ``time.perf_counter()`` when the run began; gives ``wall_s``.
    outputs : sequence of paths, optional
        Files the run wrote besides the record.

    Returns
    -------
    dict

    Examples
    --------
    >>> record = make_record("evaluate", [{"pair": "a -> b", "method": "procrustes", "recall@1": 1.0}], seed=0,
    ...                      command=["latentalign", "evaluate", "a.npy", "b.npy"])
    >>> record["kind"], record["command"][1], {"python", "latentalign", "numpy", "torch"} <= set(record["versions"])
    ('evaluate', 'evaluate', True)
    """
    return {
        "kind": kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": list(sys.argv if command is None else command),
        "seed": seed,
        "settings": settings or {},
        "inputs": {k: describe_input(v) if isinstance(v, os.PathLike) else v for k, v in (inputs or {}).items()},
        "versions": _versions(),
        "wall_s": None if started is None else round(time.perf_counter() - started, 3),
        "rows": [dict(r) for r in rows],
        "outputs": [str(p) for p in outputs or ()],
        **(extra or {}),
    }


def record_name(record: dict[str, Any], name: str | None = None) -> str:
    """``<name or kind>-<UTC timestamp>-<short hash>.json``: unique per run, sortable by time.

    The hash covers the record and a random nonce, so two runs started in the same second differ.

    Examples
    --------
    >>> name = record_name({"kind": "experiment:mutual_knn", "created": "2026-01-31T12:00:00Z"})
    >>> name.startswith("experiment-mutual_knn-20260131T120000Z-"), name.endswith(".json"), len(name)
    (True, True, 52)
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name or str(record.get("kind", "run"))).strip("-") or "run"
    created = str(record.get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    stamp = created.replace("-", "").replace(":", "")
    body = json.dumps(record, sort_keys=True, default=_json_default).encode() + secrets.token_bytes(8)
    return f"{stem}-{stamp}-{hashlib.sha256(body).hexdigest()[:8]}.json"


def write_record(
    record: dict[str, Any], out_dir: str | os.PathLike[str], name: str | None = None, *, unique: bool = True
) -> Path:
    """Write ``record`` into ``out_dir`` atomically (temp file + ``os.replace``); return the path.

    Parameters
    ----------
    record : dict
    out_dir : path
    name : str, optional
        The file name's start (default the record's ``kind``).
    unique : bool
        ``True``: the :func:`record_name` of the run, never an existing file. ``False``: ``<name>.json``,
        replaced by the next run (the result records behind the pages of ``latentalign run``).

    Examples
    --------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> first = write_record({"kind": "fit", "rows": []}, out)
    >>> second = write_record({"kind": "fit", "rows": []}, out)
    >>> first != second, first.exists() and second.exists()
    (True, True)
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / (record_name(record, name) if unique else f"{name or record['kind']}.json")
    while unique and path.exists():  # practically never: a fresh nonce gives another hash
        path = out / record_name(record, name)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


_DIAGNOSIS_KEYS = {"verdict", "curve", "linear_cka", "mutual_knn"}


def diagnosis_rows(report: dict[str, Any], pair: str) -> list[dict[str, Any]]:
    """The rows of an alignability report (``latentalign diagnose``): one per aligner and anchor budget.

    Examples
    --------
    >>> report = {"curve": [{"aligner": "procrustes", "budget": 10, "recall@1": 0.5, "mrr": 0.6}],
    ...           "linear_cka": 0.9, "mutual_knn": 0.4, "verdict": "partial"}
    >>> diagnosis_rows(report, "a -> b")[0]["method"]
    'procrustes, 10 anchors'
    """
    return [
        {
            "pair": pair,
            "method": f"{row['aligner']}, {row['budget']} anchors",
            "aligner": row["aligner"],
            "budget": row["budget"],
            **{k: v for k, v in row.items() if k not in ("aligner", "budget")},
            "linear_cka": report.get("linear_cka"),
            "mutual_knn": report.get("mutual_knn"),
            "verdict": report.get("verdict"),
        }
        for row in report.get("curve", [])
    ]


def _label_rows(record: dict[str, Any]) -> dict[str, Any]:
    """Give every row a ``pair`` and a ``method`` (older records had neither on some rows)."""
    kind = str(record.get("kind", "run"))
    rows = []
    for row in record["rows"]:
        row = dict(row)
        if row.get("pair") is None:
            if row.get("queries") and row.get("keys"):  # evaluate records before labels
                row["pair"] = f"{Path(str(row['queries'])).stem} -> {Path(str(row['keys'])).stem}"
            else:
                row["pair"] = kind
        if row.get("method") is None:
            if "map" in row or "csls" in row:
                row["method"] = (Path(str(row["map"])).stem if row.get("map") else "no map") + (
                    " + CSLS" if row.get("csls") else ""
                )
            else:
                texts = [str(v) for k, v in row.items() if isinstance(v, str) and k != "pair"]
                row["method"] = texts[0] if texts else kind
        rows.append(row)
    return {**record, "rows": rows}


def _read_one(f: Path) -> dict[str, Any]:
    try:
        doc = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(f)!r} is not a readable run record ({exc}).") from None
    if isinstance(doc, dict) and "rows" in doc:
        return doc
    if isinstance(doc, dict) and _DIAGNOSIS_KEYS <= set(doc):  # a diagnose report.json
        pair = f"diagnosis {f.parent.name} ({doc.get('d_x')}-d -> {doc.get('d_y')}-d)"
        return {"kind": "diagnose", "created": None, "seed": doc.get("seed"), "rows": diagnosis_rows(doc, pair)}
    raise ValueError(
        f"{str(f)!r} is JSON but not a latentalign run record (no 'rows'); pass the records the commands "
        "wrote (e.g. runs/evaluate-*.json) or their directory."
    )


def read_records(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Read run records from JSON files or directories of them (sorted by file name).

    Reads every record kind, older ones included, and the ``report.json`` of ``latentalign diagnose``; a
    file that a record lists among its ``outputs`` is not read a second time. Every row gets a ``pair``
    and a ``method`` label.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> _ = (out / "evaluate.json").write_text(json.dumps(
    ...     {"kind": "evaluate", "rows": [{"queries": "x/a.npy", "keys": "x/b.npy", "map": None, "recall@1": 0.1}]}))
    >>> row = read_records([out])[0]["rows"][0]
    >>> row["pair"], row["method"]
    ('a -> b', 'no map')
    """
    found: list[tuple[Path, dict[str, Any]]] = []
    for p in paths:
        p = Path(p)
        files = sorted(p.glob("*.json")) if p.is_dir() else [p]
        found += [(f, _read_one(f)) for f in files]
    listed = {Path(o).resolve() for _, record in found for o in record.get("outputs") or ()}
    return [_label_rows(record) for f, record in found if f.resolve() not in listed]


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
    """Write ``report.md``, ``report.csv`` and a bar plot (PNG and SVG) of ``metric`` per ``group`` and ``series``.

    Returns the paths written (``{"markdown": ..., "csv": ..., "plot": ..., "plot_svg": ...}``; no plot
    when matplotlib is missing or no row has ``metric``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = [_label_rows(record) for record in records]  # every bar named by pair and method
    rows = [row for record in records for row in record["rows"]]
    paths = {"markdown": out / "report.md", "csv": out / "report.csv"}
    body = [f"# latentalign report\n\n{len(records)} run record(s).\n"]
    for record in records:
        body.append(
            f"## {record.get('kind', 'run')} ({record.get('created') or 'date not recorded'}, seed {record.get('seed')})\n"
        )
        body.append(rows_to_markdown(record["rows"]) + "\n")
    paths["markdown"].write_text("\n".join(body))
    paths["csv"].write_text(rows_to_csv(rows))
    plotted = [r for r in rows if isinstance(r.get(metric), (int, float))]
    if plotted:
        plot = plot_metric(
            plotted, out / f"{metric.replace('@', '_at_')}.png", metric=metric, group=group, series=series
        )
        if plot is not None:
            paths["plot"], paths["plot_svg"] = plot, plot.with_suffix(".svg")
    return paths


def _error_bar(row: dict[str, Any], metric: str) -> tuple[float, float]:
    """Distances from ``row[metric]`` down to ``<metric>_low`` and up to ``<metric>_high`` (NaN: no interval)."""
    found = [row.get(f"{metric}_low"), row.get(metric), row.get(f"{metric}_high")]
    numbers = [float(v) for v in found if isinstance(v, (int, float)) and math.isfinite(v)]
    if len(numbers) < 3:
        return float("nan"), float("nan")
    low, value, high = numbers
    return max(value - low, 0.0), max(high - value, 0.0)


def plot_metric(rows: Sequence[dict[str, Any]], path: Path, *, metric: str, group: str, series: str) -> Path | None:
    """Grouped bar chart of ``metric``: one group per ``group`` value, one bar per ``series`` value.

    Rows that carry an interval (``<metric>_low`` and ``<metric>_high``, e.g. from
    :meth:`latentalign.evaluation.BootstrapResult.as_row`) get it drawn as an error bar, and the title says
    what the bars are (``<metric>_interval``, e.g. "95 % bootstrap interval over pairs, n=200").
    Written to ``path`` (PNG) and beside it as SVG; returns ``path`` (``None`` without matplotlib).
    """
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
        values, errors = [], []
        for g in groups:
            match = [r for r in rows if str(r.get(group)) == g and str(r.get(series)) == name]
            values.append(match[0][metric] if match else float("nan"))
            errors.append(_error_bar(match[0], metric) if match else (float("nan"), float("nan")))
        has_bars = any(math.isfinite(e[0]) for e in errors)
        ax.bar(
            [j + i * width for j in range(len(groups))],
            values,
            width=width,
            label=name,
            yerr=list(zip(*errors)) if has_bars else None,
            capsize=3 if has_bars else 0,
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))])
    ax.set_xticklabels(groups, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.0 if all(0 <= r[metric] <= 1 for r in rows) else None)
    # beside the axes, one entry a line: long method names never cover the bars
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    intervals = sorted({str(r[f"{metric}_interval"]) for r in rows if r.get(f"{metric}_interval")})
    caption = f"\nerror bars: {'; '.join(intervals)}" if intervals else ""
    ax.set_title(f"{metric} by {group} and {series}{caption}", fontsize=10 if caption else None)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    fig.savefig(path.with_suffix(".svg"), bbox_inches="tight")
    plt.close(fig)
    return path


def plot_reliability(
    curves: dict[str, Any], path: str | os.PathLike[str], *, title: str = "Reliability of match confidence"
) -> Path | None:
    """Accuracy against confidence rank, one line per confidence score; PNG at ``path`` and SVG beside it.

    ``curves`` maps a label (e.g. ``"CSLS margin"``) to a
    :class:`~latentalign.evaluation.ReliabilityCurve` or its ``to_dict()``. Each bin is a point at its
    mean confidence rank (0: least confident query, 1: most) and its accuracy; a dotted line marks each
    score's overall accuracy. A second panel draws the curves with an ECE (probability-like scores)
    against their mean confidence, beside the diagonal of perfect calibration. Returns ``path``
    (``None`` without matplotlib).

    Examples
    --------
    >>> import tempfile
    >>> curve = {"bins": [{"mean_rank": 0.25, "accuracy": 0.2, "mean_confidence": 0.1},
    ...                   {"mean_rank": 0.75, "accuracy": 0.9, "mean_confidence": 0.8}],
    ...          "accuracy": 0.55, "auroc": 0.8, "ece": None, "n": 40}
    >>> out = plot_reliability({"margin": curve}, Path(tempfile.mkdtemp()) / "reliability.png")
    >>> out is None or (out.exists() and out.with_suffix(".svg").exists())
    True
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    out = Path(path)
    data = {label: c.to_dict() if hasattr(c, "to_dict") else dict(c) for label, c in curves.items()}
    calibrated = {label: c for label, c in data.items() if c.get("ece") is not None}
    fig, axes = plt.subplots(1, 2 if calibrated else 1, figsize=(11.0 if calibrated else 6.0, 4.2), squeeze=False)
    ax = axes[0, 0]
    for i, (label, c) in enumerate(data.items()):
        colour = f"C{i}"
        auroc = f", AUROC {c['auroc']:.2f}" if c.get("auroc") is not None else ""
        ax.plot(
            [b["mean_rank"] for b in c["bins"]],
            [b["accuracy"] for b in c["bins"]],
            "o-",
            color=colour,
            label=f"{label} ({c['n']} queries{auroc})",
        )
        ax.axhline(c["accuracy"], color=colour, ls=":", lw=0.9)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("confidence rank of the bin (0: least confident, 1: most)")
    ax.set_ylabel("accuracy of the matches in the bin")
    ax.set_title("accuracy by confidence rank (dotted: overall)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if calibrated:
        ax = axes[0, 1]
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfect calibration")
        for i, (label, c) in enumerate(data.items()):
            if label in calibrated:
                ax.plot(
                    [b["mean_confidence"] for b in c["bins"]],
                    [b["accuracy"] for b in c["bins"]],
                    "o-",
                    color=f"C{i}",
                    label=f"{label} (ECE {c['ece']:.3f})",
                )
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("mean confidence of the bin")
        ax.set_ylabel("accuracy of the matches in the bin")
        ax.set_title("calibration of probability-like scores", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")  # under- and over-confident curves sit on opposite sides
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=120, bbox_inches="tight")
    fig.savefig(out.with_suffix(".svg"), bbox_inches="tight")
    plt.close(fig)
    return out


def plot_layer_similarity(
    result: Any, path: str | os.PathLike[str], *, annotate: bool | None = None, title: str | None = None
) -> Path | None:
    """Heatmap of a layers x layers similarity table; PNG at ``path`` and SVG beside it.

    ``result`` is a :class:`~latentalign.evaluation.LayerSimilarity` (or any object with ``values``,
    ``layers_a``, ``layers_b``, ``metric``, ``name_a`` and ``name_b``): model A's layers run down the
    rows (first layer on top), model B's along the columns, the model names label the axes and a colour
    bar gives the scale (0 to 1 for scores in that range). ``annotate`` writes each value in its cell;
    by default only when the table has at most 16 x 16 cells. Returns ``path`` (``None`` without matplotlib).

    Examples
    --------
    >>> import tempfile
    >>> from types import SimpleNamespace
    >>> import numpy as np
    >>> table = SimpleNamespace(values=np.array([[1.0, 0.4], [0.3, 0.9]]), layers_a=["l0", "l1"],
    ...                         layers_b=["k0", "k1"], metric="linear_cka", name_a="M1", name_b="M2")
    >>> out = plot_layer_similarity(table, Path(tempfile.mkdtemp()) / "layers.png")
    >>> out is None or (out.exists() and out.with_suffix(".svg").exists())
    True
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import numpy as np

    out = Path(path)
    values = np.asarray(result.values, dtype=float)
    rows, cols = values.shape
    if annotate is None:
        annotate = rows <= 16 and cols <= 16
    unit = bool(np.nanmin(values) >= 0 and np.nanmax(values) <= 1)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.55 * cols + 2.5), max(3.5, 0.45 * rows + 1.8)))
    image = ax.imshow(values, cmap="viridis", vmin=0 if unit else None, vmax=1 if unit else None, aspect="auto")
    ax.set_xticks(range(cols))
    ax.set_xticklabels(result.layers_b, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(rows))
    ax.set_yticklabels(result.layers_a, fontsize=8)
    ax.set_xlabel(f"{result.name_b} layer")
    ax.set_ylabel(f"{result.name_a} layer")
    if annotate:
        middle = 0.5 if unit else float(np.nanmean(values))
        for i in range(rows):
            for j in range(cols):
                colour = "black" if values[i, j] > middle else "white"
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(image, ax=ax, label=result.metric)
    ax.set_title(title or f"{result.metric}: {result.name_a} vs {result.name_b}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120, bbox_inches="tight")
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # labels stay text: searchable, smaller files
        fig.savefig(out.with_suffix(".svg"), bbox_inches="tight")
    plt.close(fig)
    return out
