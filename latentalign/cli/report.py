"""``latentalign report``: run records to a Markdown table, a CSV and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latentalign.cli.application import command, typer
from latentalign.cli.options import check_output

__all__ = ["report", "check_metric"]


@command()
def report(
    records: list[Path] = typer.Argument(..., help="run record JSON files or directories of them"),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="output directory"),
    metric: str = typer.Option("recall@1", help="metric to plot"),
) -> None:
    """Turn run records into report.md, report.csv and a bar plot of --metric (PNG and SVG).

    Reads the records of every command (older record files and the report.json of `latentalign
    diagnose` included); bars are labelled by pair and method.

    **Examples**

    ```
    latentalign report runs/ -o report/
    latentalign report runs/stitch.json --metric accuracy -o report/
    ```
    """
    from latentalign.reports import read_records, write_report

    check_output(out, "--out", directory=True)
    found = read_records(records)
    if not found:
        raise ValueError(
            f"RECORDS {[str(p) for p in records]} hold no run records (*.json files); pass the directory a "
            "command wrote its record to (e.g. `latentalign evaluate ... -o runs/`, then `latentalign report runs/`)."
        )
    check_metric(metric, found)
    paths = write_report(found, out, metric=metric)
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")


def check_metric(metric: str, records: list[dict[str, Any]]) -> str:
    """Raise ``ValueError`` unless some row of ``records`` has a numeric ``metric``; return it.

    Examples
    --------
    >>> check_metric("recall@1", [{"rows": [{"pair": "a -> b", "recall@1": 0.5}]}])
    'recall@1'
    >>> check_metric("accuracy", [{"rows": [{"pair": "a -> b", "recall@1": 0.5}]}])
    Traceback (most recent call last):
    ...
    ValueError: --metric 'accuracy' is not a score of these run records; they hold ['recall@1']. ...
    """
    numeric = sorted(
        {
            key
            for record in records
            for row in record["rows"]
            for key, value in row.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
    )
    if metric not in numeric:
        raise ValueError(
            f"--metric {metric!r} is not a score of these run records; they hold {numeric}. Pick one of those "
            f"(e.g. --metric {numeric[0]})."
            if numeric
            else f"--metric {metric!r}: these run records hold no numeric scores to plot."
        )
    return metric
